"""The fully convolutional network: definition, training and inference.

TensorFlow is imported only when a network is built or run, so that
``import atomstat`` stays fast.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # keep TensorFlow's C++ start-up chatter quiet

__all__ = ["build_fcn", "fold_batchnorm"]


def __getattr__(name):
    if name in __all__:
        from . import model

        return getattr(model, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
