"""Small helpers shared by the stages for array-like inputs."""

from __future__ import annotations

__all__ = ["as_array", "is_signal"]


def is_signal(data) -> bool:
    """True for a HyperSpy signal (anything with an ``axes_manager``)."""
    return hasattr(data, "axes_manager")


def as_array(data):
    """The array inside a HyperSpy signal, or ``data`` itself (never ndarray.data)."""
    return data.data if is_signal(data) else data
