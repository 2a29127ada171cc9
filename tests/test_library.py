"""The library of atoms across images, tested on a simulated campaign with planted dopants.

Three "graphene" images (honeycomb, Si-like dopants 3x as bright as carbon)
and two "MoS2" images (hexagonal, heavier dopants too) are analysed into one
dataset with their material tags; the queries must return exactly the
planted dopants of the material asked for.
"""

import hashlib

import numpy as np
import pandas as pd
import pytest
from scipy.spatial import cKDTree

from atomstat import library
from atomstat.batch import analyze_files
from atomstat.dataset import read_atoms
from atomstat.library import Library
from atomstat.simulate import Defects, simulate_lattice

pytest.importorskip("duckdb")

MARGIN = 6  # px: dopants closer to the border than this are not counted either way
_DOPED = Defects(vacancies=0.0, dopants=0.05, dopant_ratio=3.0, jitter=0.1)
CAMPAIGN = {
    "graphene": [("honeycomb", 12.0, seed) for seed in (1, 2, 3)],
    "MoS2": [("hexagonal", 13.0, seed) for seed in (4, 5)],
}


@pytest.fixture(scope="module")
def campaign(tmp_path_factory):
    folder = tmp_path_factory.mktemp("campaign")
    truth = {}
    for material, scenes in CAMPAIGN.items():
        files = []
        for kind, spacing, seed in scenes:
            sim = simulate_lattice(
                kind, shape=(128, 128), spacing=spacing, sigma=1.8, defects=_DOPED, rng=seed
            )
            path = folder / f"{material}_{seed}.npy"
            np.save(path, sim.image)
            files.append(path)
            truth[path.name] = (sim, _interior(sim.atoms[sim.atoms.species == "dopant"]))
        report = analyze_files(files, folder / "ds", material=material, anomalies="ocsvm")
        assert report.failed == []
    return Library(folder / "ds"), truth, folder


def _interior(table, shape=(128, 128)):
    inside = table.x.between(MARGIN, shape[1] - 1 - MARGIN) & table.y.between(
        MARGIN, shape[0] - 1 - MARGIN
    )
    return table[inside]


def _planted_match(hits, truth, names):
    """(hits that are planted dopants, planted dopants found, all hits, all planted)."""
    good = found = n_hits = n_truth = 0
    for name in names:
        mine = _interior(hits[hits.name == name])
        planted = truth[name][1]
        n_hits, n_truth = n_hits + len(mine), n_truth + len(planted)
        if len(mine) and len(planted):
            d_hit, _ = cKDTree(planted[["x", "y"]]).query(mine[["x", "y"]])
            d_truth, _ = cKDTree(mine[["x", "y"]]).query(planted[["x", "y"]])
            good += int((d_hit < 1.0).sum())
            found += int((d_truth < 1.0).sum())
    return good, found, n_hits, n_truth


def test_the_query_returns_exactly_the_planted_dopants(campaign):
    lib, truth, _ = campaign
    graphene = [n for n in truth if n.startswith("graphene")]
    hits = lib.find(material="graphene", brighter=2.0)
    assert set(hits["material"]) == {"graphene"}
    good, found, n_hits, n_truth = _planted_match(hits, truth, graphene)
    assert n_truth >= 8  # the campaign plants enough to test
    assert good == n_hits == found == n_truth
    for hit in hits.head(4).itertuples():  # atom_id is the row of the file's atoms table
        atoms = read_atoms(lib.root, hit.source_id)
        assert (atoms.loc[hit.atom_id, "x"], atoms.loc[hit.atom_id, "y"]) == (hit.x, hit.y)
    other = lib.find(material="MoS2", brighter=2.0)
    assert set(other["name"]) <= {n for n in truth if n.startswith("MoS2")}
    good, found, n_hits, n_truth = _planted_match(other, truth, set(other["name"]))
    assert good == n_hits == found == n_truth


def test_si_like_anomalies_with_area_and_neighbour_distances(campaign):
    lib, truth, _ = campaign
    graphene = [n for n in truth if n.startswith("graphene")]
    hits = lib.find(
        material="graphene",
        anomaly=True,
        brighter=2.0,
        columns=("area", "nn_distance", "nnn_distance"),
    )
    assert {"area", "nn_distance", "nnn_distance"} <= set(hits.columns)
    good, found, n_hits, n_truth = _planted_match(hits, truth, graphene)
    assert good == n_hits  # every Si-like anomaly is a planted dopant
    assert found >= 0.8 * n_truth  # and the one-class SVM flags most of them
    # the honeycomb's neighbour distance (12 px) is measured around them
    assert np.allclose(hits["nn_distance"].median(), 12.0, rtol=0.1)


def test_raw_sql_over_sources_and_atoms(campaign, monkeypatch):
    lib, truth, folder = campaign
    monkeypatch.setenv("ATOMSTAT_LIBRARY", str(folder / "ds"))
    counts = library.query(
        "select material, count(*) as files, sum(frames) as frames from sources "
        "group by material order by material"
    )
    assert counts.to_dict("list") == {"material": ["MoS2", "graphene"], "files": [2, 3],
                                      "frames": [2, 3]}  # fmt: skip
    hashes = lib.query("select name, sha256, model, pixel_size from sources")
    for row in hashes.itertuples():
        assert row.sha256 == hashlib.sha256((folder / row.name).read_bytes()).hexdigest()
        assert row.model == "universal" and row.pixel_size == 1.0
    per_image = lib.query(
        "select name, count(*) as n from atoms where not edge group by name order by name"
    )
    for row in per_image.itertuples():
        sim = truth[row.name][0]
        assert abs(row.n - len(_interior(sim.atoms, (128, 128)))) < 0.25 * row.n
    assert lib.materials() == ["MoS2", "graphene"]
    with pytest.raises(ValueError, match="library query failed"):
        lib.query("select nonsense from atoms")


def test_crops_around_the_hits(campaign):
    lib, truth, folder = campaign
    hits = library.find(folder / "ds", material="graphene", brighter=2.0)
    crops = library.crops(hits, folder / "ds", size=16)
    assert crops.shape == (len(hits), 16, 16) and crops.dtype == np.float32
    for hit, crop in zip(hits.head(5).itertuples(), crops[:5], strict=True):
        image = np.load(folder / hit.name)
        r, c = int(round(hit.y)) - 8, int(round(hit.x)) - 8
        assert np.array_equal(crop, image[r : r + 16, c : c + 16])
        assert crop[6:10, 6:10].max() > 2 * np.median(image)  # a bright dopant in the middle
    corner = pd.DataFrame({"source_id": hits.source_id[:1], "frame": [0], "x": [0.0], "y": [1.0]})
    cut = lib.crops(corner, size=8)[0]
    assert np.isnan(cut[:3]).all() and np.isnan(cut[:, :4]).all() and np.isfinite(cut[4:, 4:]).all()
    with pytest.raises(ValueError, match="lack column"):
        lib.crops(hits[["x", "y"]])


def test_material_tags_are_set_by_the_user(campaign, tmp_path, monkeypatch):
    lib, truth, folder = campaign
    name = next(n for n in truth if n.startswith("MoS2"))
    lib.tag(name, "MoS2-V")
    assert "MoS2-V" in lib.materials()
    assert set(lib.find(material="MoS2-V")["name"]) == {name}
    lib.tag(name, "MoS2")
    with pytest.raises(KeyError, match="no source"):
        lib.tag("missing.npy", "x")
    monkeypatch.delenv("ATOMSTAT_LIBRARY", raising=False)
    with pytest.raises(ValueError, match="ATOMSTAT_LIBRARY"):
        library.query("select 1")
    empty = Library(tmp_path)  # a library with nothing in it yet answers with no rows
    assert len(empty.find(material="graphene", anomaly=True, brighter=2.0)) == 0
    assert empty.materials() == []


def test_a_frame_of_a_stack_still_being_written_is_read_as_far_as_it_is(tmp_path):
    """A live .npy stack's header gives its final length; the file holds fewer frames."""
    from numpy.lib import format as npformat

    from atomstat.library import _frame

    stack = np.arange(3 * 8 * 6, dtype=">f8").reshape(3, 8, 6)  # big-endian, not float32
    path = tmp_path / "movie.npy"
    with path.open("wb") as sink:
        npformat.write_array_header_1_0(sink, npformat.header_data_from_array_1_0(stack))
        sink.write(stack[:2].tobytes())
        sink.write(stack[2].tobytes()[:100])  # the third frame half written
    for i in (0, 1):
        got = _frame(path, i)
        assert got.dtype == np.float32 and np.array_equal(got, stack[i])
    with pytest.raises(FileNotFoundError, match="frame 2 .* not written yet"):
        _frame(path, 2)
    with pytest.raises(FileNotFoundError, match="no frame 3"):
        _frame(path, 3)
    np.save(tmp_path / "one.npy", stack[1])
    assert np.array_equal(_frame(tmp_path / "one.npy", 0), stack[1])
    (tmp_path / "bad.npy").write_bytes(b"not a numpy file at all")
    with pytest.raises(FileNotFoundError, match="cannot read"):
        _frame(tmp_path / "bad.npy", 0)
