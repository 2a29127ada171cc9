"""Network definition: the paper's encoder-decoder FCN.

Only layers live here; training is in :mod:`atomstat.fcn.train` and
inference in :mod:`atomstat.fcn.predict`.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import layers

__all__ = ["build_fcn", "fold_batchnorm"]


def _block(x, filters, n, *, batchnorm, name):
    for i in range(n):
        x = layers.Conv2D(filters, 3, padding="same", name=f"{name}_conv{i}")(x)
        if batchnorm:
            x = layers.BatchNormalization(name=f"{name}_bn{i}")(x)
        x = layers.Activation("relu", name=f"{name}_relu{i}")(x)
    return x


def build_fcn(
    *, n_classes: int = 2, width: int = 20, dropout: float = 0.25, batchnorm: bool = False
) -> keras.Model:
    """Build the encoder-decoder FCN of the paper's Methods section.

    Encoder: two 3x3 convolutions with ``width`` kernels and 2x2 max-pooling,
    then three with ``2 * width`` kernels and max-pooling. The decoder mirrors
    it with upsampling, then dropout, a 3x3 and a 1x1 convolution with
    ``n_classes`` kernels, and softmax. With the defaults it has 94,468
    parameters, as in the paper.

    ``batchnorm=True`` adds batch normalisation after every hidden
    convolution. It speeds up training; :func:`fold_batchnorm` then folds it
    into the convolutions, which gives back exactly the paper's network.

    Parameters
    ----------
    n_classes : int
        Output classes; class 1 is "atom" for the two-class model.
    width : int
        Kernels in the first block.
    dropout : float
    batchnorm : bool

    Returns
    -------
    keras.Model
        Input (batch, H, W, 1) with H and W multiples of 4; output
        (batch, H, W, n_classes) softmax probabilities.

    Examples
    --------
    >>> build_fcn().count_params()
    94468
    """
    if n_classes < 2:
        raise ValueError(f"n_classes must be at least 2, got {n_classes}")
    if width < 1:
        raise ValueError(f"width must be a positive number of kernels, got {width}")
    bn = batchnorm
    inp = keras.Input((None, None, 1), name="image")
    x = _block(inp, width, 2, batchnorm=bn, name="enc1")
    x = layers.MaxPooling2D(2, name="pool1")(x)
    x = _block(x, 2 * width, 3, batchnorm=bn, name="enc2")
    x = layers.MaxPooling2D(2, name="pool2")(x)
    x = layers.UpSampling2D(2, name="up2")(x)
    x = _block(x, 2 * width, 3, batchnorm=bn, name="dec2")
    x = layers.UpSampling2D(2, name="up1")(x)
    x = _block(x, width, 2, batchnorm=bn, name="dec1")
    x = layers.Dropout(dropout, name="dropout")(x)
    x = layers.Conv2D(n_classes, 3, padding="same", name="head3x3")(x)
    x = layers.Conv2D(n_classes, 1, padding="same", name="head1x1")(x)
    out = layers.Softmax(name="softmax")(x)
    return keras.Model(inp, out, name="atomstat_fcn")


def fold_batchnorm(model: keras.Model) -> keras.Model:
    """Return the plain network with each batch normalisation folded into its convolution.

    For a convolution ``W, b`` followed by batch normalisation with
    ``gamma, beta, mean, var``: ``W' = W * s`` and ``b' = (b - mean) * s + beta``
    with ``s = gamma / sqrt(var + eps)``. Inference results are unchanged.
    """
    n_classes = model.output_shape[-1]
    width = model.get_layer("enc1_conv0").filters
    plain = build_fcn(n_classes=n_classes, width=width)
    for layer in plain.layers:
        if not layer.weights:
            continue
        w, b = model.get_layer(layer.name).get_weights()
        bn_name = layer.name.replace("_conv", "_bn")
        if bn_name != layer.name and any(x.name == bn_name for x in model.layers):
            bn = model.get_layer(bn_name)
            gamma, beta, mean, var = bn.get_weights()
            s = gamma / np.sqrt(var + bn.epsilon)
            w, b = w * s, (b - mean) * s + beta
        layer.set_weights([w, b])
    return plain
