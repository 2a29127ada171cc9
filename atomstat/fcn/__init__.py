"""The fully convolutional network: definition, training and inference."""

from .model import build_fcn, fold_batchnorm

__all__ = ["build_fcn", "fold_batchnorm"]
