"""Tests for atomstat.fcn: the segment machinery (shapes, stacks, tiling, resampling,
input checks) and the network definition (parameter count, batch-norm folding).

The shipped model is not used here (tests/test_shipped_model.py covers it):
``tiny_fcn`` and ``threshold_model`` come from conftest.py.
"""

import hyperspy.api as hs
import numpy as np
import pytest

import atomstat.fcn.predict as predict
from atomstat.fcn.model import build_fcn, fold_batchnorm
from atomstat.fcn.normalize import normalize
from atomstat.fcn.predict import CANONICAL_SIGMA, NATIVE_SIGMA, resample_factor, segment
from atomstat.simulate import Defects, Stem, simulate_lattice


def _image(shape, rng, dose=100.0, sigma=2.0, spacing=10.0):
    return simulate_lattice(
        "hexagonal", shape=shape, spacing=spacing, sigma=sigma, imaging=Stem(dose=dose), rng=rng
    ).image


def test_tiny_model_output_has_structure(tiny_fcn):
    """Guard for the tests below: a flat output would make their comparisons vacuous."""
    prob = segment(_image((64, 64), rng=0), model=tiny_fcn, sigma=2.0)
    assert prob.std() > 1e-3


@pytest.mark.parametrize("shape", [(97, 131), (64, 64), (16, 16), (33, 18)])
def test_output_shape_equals_input_shape(tiny_fcn, shape):
    image = _image(shape, rng=1)
    prob = segment(image, model=tiny_fcn, sigma=2.0)
    assert prob.shape == shape
    assert prob.dtype == np.float32
    assert np.isfinite(prob).all() and prob.min() >= 0 and prob.max() <= 1


@pytest.mark.parametrize("sigma", [0.4, 0.6, 4.4, 7.0])
def test_output_shape_with_resampling(tiny_fcn, sigma):
    image = _image((97, 131), rng=2)
    assert resample_factor(sigma) != 1
    prob = segment(image, model=tiny_fcn, sigma=sigma)
    assert prob.shape == (97, 131) and prob.dtype == np.float32


def test_known_output_of_the_threshold_model(threshold_model):
    """segment = the network applied to the normalised image, cropped back to the input."""
    image = _image((61, 90), rng=3)
    prob = segment(image, model=threshold_model, sigma=2.0)
    expected = 1.0 / (1.0 + np.exp(-20.0 * (normalize(image).astype(np.float64) - 0.5)))
    np.testing.assert_allclose(prob, expected, atol=1e-5)


def test_resampled_output_follows_the_zoomed_image(threshold_model):
    """An image zoomed by 2 with sigma 4.4 is seen at sigma 2.2: the map is the
    map of the unzoomed image, zoomed back (up to interpolation)."""
    image = simulate_lattice(
        "square",
        shape=(64, 64),
        spacing=14.0,
        sigma=2.2,
        defects=Defects(vacancies=0.0, dopants=0.0),
        imaging=Stem(dose=5000.0),
        rng=4,
    ).clean
    big = np.kron(image, np.ones((2, 2)))  # 128x128, atoms of width 4.4
    small_map = segment(image, model=threshold_model, sigma=2.2)
    big_map = segment(big, model=threshold_model, sigma=4.4)
    assert big_map.shape == (128, 128)
    zoomed_back = big_map.reshape(64, 2, 64, 2).mean(axis=(1, 3))
    atoms = small_map > 0.5
    assert ((zoomed_back > 0.5) == atoms).mean() > 0.97


def test_stack_equals_each_frame_alone(tiny_fcn):
    frames = [_image((64, 80), rng=10 + i, dose=d) for i, d in enumerate((20.0, 100.0, 400.0))]
    frames[2] = frames[2] * 7.0 + 300.0  # frames are normalised one by one
    stack = np.stack(frames)
    prob = segment(stack, model=tiny_fcn, sigma=2.0)
    assert prob.shape == (3, 64, 80)
    for t, frame in enumerate(frames):
        np.testing.assert_allclose(prob[t], segment(frame, model=tiny_fcn, sigma=2.0), atol=1e-5)
    assert not np.allclose(prob[0], prob[1], atol=1e-3)


def test_stack_in_several_batches(tiny_fcn, monkeypatch):
    stack = np.stack([_image((32, 32), rng=20 + i) for i in range(5)])
    whole = segment(stack, model=tiny_fcn, sigma=2.0)
    monkeypatch.setattr(predict, "_BATCH_PIXELS", 2 * 32 * 32)  # two frames per batch
    np.testing.assert_allclose(segment(stack, model=tiny_fcn, sigma=2.0), whole, atol=1e-5)


def test_signal_input_equals_array_input(tiny_fcn):
    image = _image((48, 56), rng=5)
    a = segment(hs.signals.Signal2D(image), model=tiny_fcn, sigma=2.0)
    b = segment(image, model=tiny_fcn, sigma=2.0)
    np.testing.assert_array_equal(a, b)


def test_integer_input_equals_float_input(tiny_fcn):
    image = _image((48, 56), rng=6)
    a = segment(image.astype(np.uint16), model=tiny_fcn, sigma=2.0)
    b = segment(image, model=tiny_fcn, sigma=2.0)
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_sigma_is_estimated_when_not_given(tiny_fcn):
    image = _image((96, 96), rng=7, sigma=2.0, spacing=14.0)
    np.testing.assert_allclose(
        segment(image, model=tiny_fcn), segment(image, model=tiny_fcn, sigma=2.0), atol=1e-6
    )


def _tiled_and_untiled(model, monkeypatch, image):
    untiled = segment(image, model=model, sigma=2.0)
    # MARGIN stays at the library's 32 px: the network's receptive field reaches
    # about 20 px, so a 16 px margin would leave seams by construction.
    monkeypatch.setattr(predict, "TILE", 64)
    tiled = segment(image, model=model, sigma=2.0)
    return untiled, tiled


def test_tiling_leaves_no_seams(tiny_fcn, monkeypatch):
    image = _image((200, 150), rng=8)
    untiled, tiled = _tiled_and_untiled(tiny_fcn, monkeypatch, image)
    assert tiled.shape == (200, 150)
    # tile boundaries at rows/columns 64 and 128 lie in here
    inner = (slice(24, -24), slice(24, -24))
    assert np.abs(tiled[inner] - untiled[inner]).max() < 1e-4


def test_tiled_map_equals_untiled_map_everywhere(tiny_fcn, monkeypatch):
    """Whether an image is tiled must not change its map, at its border either."""
    image = _image((200, 150), rng=8)
    untiled, tiled = _tiled_and_untiled(tiny_fcn, monkeypatch, image)
    diff = np.abs(tiled - untiled)
    rows, cols = np.nonzero(diff >= 1e-4)
    depth = np.minimum.reduce([rows, 199 - rows, cols, 149 - cols]) if len(rows) else [0]
    assert diff.max() < 1e-4, (
        f"max diff {diff.max():.3g}, in a band up to {max(depth)} px from the image border"
    )


def test_tiling_of_a_stack(tiny_fcn, monkeypatch):
    stack = np.stack([_image((150, 100), rng=30 + i) for i in range(2)])
    monkeypatch.setattr(predict, "TILE", 64)
    prob = segment(stack, model=tiny_fcn, sigma=2.0)
    assert prob.shape == (2, 150, 100)
    for t in range(2):
        np.testing.assert_allclose(prob[t], segment(stack[t], model=tiny_fcn, sigma=2.0))


@pytest.mark.parametrize("sigma", [0.7, 1.0, 1.2, 1.8, 2.2, 3.6])
def test_resample_factor_native_range(sigma):
    assert resample_factor(sigma) == 1.0


@pytest.mark.parametrize("sigma", [0.4, 0.6, 0.69, 3.61, 4.4, 9.0])
def test_resample_factor_outside_brings_atoms_to_the_canonical_width(sigma):
    assert resample_factor(sigma) == pytest.approx(CANONICAL_SIGMA / sigma)
    assert CANONICAL_SIGMA == 2.2 and NATIVE_SIGMA == (0.7, 3.6)


def test_resample_factor_unknown_width():
    assert resample_factor(float("nan")) == 1.0


def test_nan_pixel_raises(tiny_fcn):
    image = _image((32, 32), rng=9)
    image[5, 7] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        segment(image, model=tiny_fcn)
    image[5, 7] = np.inf
    with pytest.raises(ValueError, match="infinite"):
        segment(image, model=tiny_fcn, sigma=2.0)


def test_nan_pixel_in_a_later_frame_raises(tiny_fcn):
    stack = np.stack([_image((32, 32), rng=9)] * 3)
    stack[2, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        segment(stack, model=tiny_fcn, sigma=2.0)


def test_too_small_image_raises(tiny_fcn):
    with pytest.raises(ValueError, match="8x8"):
        segment(np.ones((8, 8)), model=tiny_fcn)
    with pytest.raises(ValueError, match="16x16"):
        segment(np.ones((3, 40, 12)), model=tiny_fcn)


@pytest.mark.parametrize("shape", [(2, 3, 32, 32), (64,)])
def test_wrong_dimensions_raise(tiny_fcn, shape):
    with pytest.raises(ValueError, match="shape") as info:
        segment(np.ones(shape), model=tiny_fcn)
    assert str(shape) in str(info.value)


def test_complex_input_raises(tiny_fcn):
    image = _image((32, 32), rng=9).astype(np.complex64)
    with pytest.raises(ValueError, match="complex"):
        segment(image, model=tiny_fcn)


@pytest.mark.parametrize("sigma", [0.0, -2.0, np.nan])
def test_bad_sigma_raises(tiny_fcn, sigma):
    with pytest.raises(ValueError, match="sigma"):
        segment(_image((32, 32), rng=9), model=tiny_fcn, sigma=sigma)


def test_bad_model_argument_raises(tmp_path):
    with pytest.raises(TypeError, match="int"):
        segment(np.ones((32, 32)), model=42)
    with pytest.raises(FileNotFoundError, match="missing.keras"):
        segment(np.ones((32, 32)), model=str(tmp_path / "missing.keras"))


def test_paper_network_has_94468_parameters():
    model = build_fcn()
    assert model.count_params() == 94468
    assert model.output_shape == (None, None, None, 2)


def test_build_fcn_bad_arguments():
    with pytest.raises(ValueError, match="n_classes"):
        build_fcn(n_classes=1)
    with pytest.raises(ValueError, match="width"):
        build_fcn(width=0)


def test_fold_batchnorm_gives_the_same_outputs():
    import keras

    bn = _random_bn_model(seed=1)
    bn.compile(optimizer=keras.optimizers.SGD(0.01), loss="categorical_crossentropy")
    rng = np.random.default_rng(2)
    x = rng.random((4, 32, 32, 1)).astype(np.float32)
    y = np.zeros((4, 32, 32, 2), np.float32)
    y[..., 1] = x[..., 0] > 0.5
    y[..., 0] = 1 - y[..., 1]
    for _ in range(3):
        bn.train_on_batch(x, y)
    plain = fold_batchnorm(bn)
    assert not any(isinstance(layer, keras.layers.BatchNormalization) for layer in plain.layers)
    assert plain.count_params() == build_fcn(width=4).count_params()
    test = rng.random((2, 48, 40, 1)).astype(np.float32)
    expected = np.asarray(bn(test, training=False))
    got = np.asarray(plain(test, training=False))
    assert np.abs(expected[..., 1] - expected[..., 1].mean()).max() > 1e-3  # not flat
    assert np.abs(got - expected).max() < 1e-4


def _random_bn_model(seed):
    """A batch-norm FCN whose BN layers hold non-trivial statistics."""
    model = build_fcn(width=4, batchnorm=True)
    rng = np.random.default_rng(seed)
    weights = []
    for layer in model.layers:
        for w in layer.get_weights():
            if w.ndim == 4:
                fan_in = np.prod(w.shape[:3])
                weights.append(rng.normal(0.0, np.sqrt(2.0 / fan_in), w.shape))
            elif "bn" in layer.name:
                weights.append(rng.uniform(0.5, 1.5, w.shape))  # gamma, beta, mean, var > 0
            else:
                weights.append(rng.normal(0.0, 0.1, w.shape))
    model.set_weights([w.astype(np.float32) for w in weights])
    return model
