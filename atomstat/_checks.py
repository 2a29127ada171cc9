"""Argument checks shared by the public functions: each names the argument it refuses."""

from __future__ import annotations

import numbers

import numpy as np

__all__ = ["flag", "number"]


def number(
    name: str,
    value,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """``value`` as a finite float within [low, high] (open ends where asked).

    Raises
    ------
    ValueError
        Naming ``name``, when ``value`` is not a real number (a string, None,
        an array, a bool) or lies outside the range.

    Examples
    --------
    >>> number("sigma", 2, low=0, low_open=True)
    2.0
    >>> number("sigma", "2", low=0)
    Traceback (most recent call last):
    ...
    ValueError: sigma must be a number, got '2' (str)
    """
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a number, got {value!r} ({type(value).__name__})")
    out = float(value)
    below = low is not None and (out <= low if low_open else out < low)
    above = high is not None and (out >= high if high_open else out > high)
    if not np.isfinite(out) or below or above:
        left = "(" if low_open else "["
        right = ")" if high_open else "]"
        lo = "-inf" if low is None else f"{low:g}"
        hi = "inf" if high is None else f"{high:g}"
        raise ValueError(f"{name} must be in {left}{lo}, {hi}{right}, got {value!r}")
    return out


def flag(name: str, value) -> bool:
    """``value`` as a bool; a string such as "no" is refused, not read as True.

    Examples
    --------
    >>> flag("refine", False)
    False
    >>> flag("refine", "no")
    Traceback (most recent call last):
    ...
    ValueError: refine must be True or False, got 'no'
    """
    if not isinstance(value, bool | np.bool_):
        raise ValueError(f"{name} must be True or False, got {value!r}")
    return bool(value)
