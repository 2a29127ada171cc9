"""Shared fixtures: small stand-in networks, so that the machinery of segment and
analyze is tested without the shipped model.

Both models are deterministic: their weights come from ``np.random.default_rng``
with a fixed seed, and no global random state is touched.
"""

import numpy as np
import pytest


def _seeded_weights(model, seed):
    """He-scaled random kernels and small random biases from ``default_rng(seed)``."""
    rng = np.random.default_rng(seed)
    weights = []
    for w in model.get_weights():
        if w.ndim == 4:  # conv kernel (kh, kw, in, out)
            fan_in = np.prod(w.shape[:3])
            weights.append(rng.normal(0.0, np.sqrt(2.0 / fan_in), w.shape).astype(w.dtype))
        else:
            weights.append(rng.normal(0.0, 0.1, w.shape).astype(w.dtype))
    model.set_weights(weights)
    return model


@pytest.fixture(scope="session")
def tiny_fcn():
    """The paper's architecture with 4 kernels in the first block and seeded random weights.

    Its output is not an atom map, but it has the real network's receptive
    field, pooling and upsampling, which is what tiling and batching must respect.
    """
    from atomstat.fcn.model import build_fcn

    return _seeded_weights(build_fcn(width=4), seed=0)


@pytest.fixture(scope="session")
def threshold_model():
    """A 1x1-convolution network whose atom probability is a steep sigmoid of the
    normalised image: ``p = 1 / (1 + exp(-20 * (x - 0.5)))``.

    On a clean, high-dose image its blobs sit on the atoms, so the pipeline
    around the network can be tested against known positions.
    """
    import keras

    inp = keras.Input((None, None, 1), name="image")
    logits = keras.layers.Conv2D(2, 1, name="logits")(inp)
    model = keras.Model(inp, keras.layers.Softmax()(logits), name="threshold")
    kernel = np.array([0.0, 20.0], np.float32).reshape(1, 1, 1, 2)
    model.get_layer("logits").set_weights([kernel, np.array([0.0, -10.0], np.float32)])
    return model
