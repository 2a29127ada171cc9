"""A defect of several lobes (the Y of a hydrogenated vacancy in graphite STM) is one
defect at the lobes' centre; two defects further apart stay two."""

import numpy as np

from atomstat.defects import find_blobs


def lobes(image, centre, radius, width, height=10.0):
    yy, xx = np.mgrid[: image.shape[0], : image.shape[1]]
    for angle in (90, 210, 330):
        t = np.deg2rad(angle)
        x, y = centre[0] + radius * np.cos(t), centre[1] + radius * np.sin(t)
        image += height * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * width**2))
    return image


def test_three_lobes_are_one_defect_at_their_centre_and_apart_defects_stay_apart():
    rng = np.random.default_rng(0)
    image = rng.normal(0, 1, (400, 400))
    lobes(image, (100, 100), 12, 3.0)
    lobes(image, (300, 280), 12, 3.0)
    found = find_blobs(image, z=6, scales=(2.0, 8.0))
    bright = found[found["kind"] == "bright"]
    assert len(bright) == 2
    got = np.sort(bright[["x", "y"]].to_numpy(), axis=0)
    assert np.allclose(got, [[100, 100], [300, 280]], atol=3)


def test_single_round_defects_keep_their_own_position():
    rng = np.random.default_rng(1)
    image = rng.normal(0, 1, (200, 200))
    yy, xx = np.mgrid[:200, :200]
    for x, y in ((50, 60), (150, 140)):
        image += 12 * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * 3.0**2))
    found = find_blobs(image, z=6, scales=(2.0, 8.0))
    assert len(found) == 2
    got = np.sort(found[["x", "y"]].to_numpy(), axis=0)
    assert np.allclose(got, [[50, 60], [150, 140]], atol=1)
