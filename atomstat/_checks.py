"""Argument checks shared by the public functions: each names the argument it refuses."""

from __future__ import annotations

import math
import numbers

import numpy as np

__all__ = ["ArgumentTypeError", "flag", "number", "span"]


class ArgumentTypeError(TypeError, ValueError):
    """An argument of the wrong type (a string, None, an array where a number belongs).

    A TypeError, and a ValueError too, so that code catching the bad values of
    an argument (the CLI, batch loops) catches a bad type as well.
    """


def number(
    name: str,
    value,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    integer: bool = False,
    note: str = "",
):
    """``value`` unchanged, refused unless a finite number (an integer where asked) in range.

    Raises
    ------
    ArgumentTypeError
        Naming ``name``, when ``value`` is not a real number (a bool, a string, None, an
        array), or not an integer where ``integer`` is set.
    ValueError
        Naming ``name`` and the range (``note`` added), when ``value`` is NaN, infinite or
        outside [low, high] (an open end where ``low_open`` or ``high_open``).

    Examples
    --------
    >>> number("sigma", 2.0, low=0, low_open=True)
    2.0
    >>> number("Stem.dose", -1, low=0, low_open=True)
    Traceback (most recent call last):
    ...
    ValueError: Stem.dose must be a finite number > 0, got -1
    >>> number("sigma", "2")
    Traceback (most recent call last):
    ...
    atomstat._checks.ArgumentTypeError: sigma must be a finite number, got '2' (str)
    """
    kind = "an integer" if integer else "a finite number"
    wanted = numbers.Integral if integer else numbers.Real
    if isinstance(value, bool | np.bool_) or not isinstance(value, wanted):
        raise ArgumentTypeError(f"{name} must be {kind}, got {value!r} ({type(value).__name__})")
    below = low is not None and (value <= low if low_open else value < low)
    above = high is not None and (value >= high if high_open else value > high)
    if below or above or not (integer or math.isfinite(value)):
        if low is not None and high is not None:
            where = f" in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        elif low is not None:
            where = f" {'>' if low_open else '>='} {low:g}"
        else:
            where = "" if high is None else f" {'<' if high_open else '<='} {high:g}"
        raise ValueError(f"{name} must be {kind}{where}{note}, got {value!r}")
    return value


def span(name: str, value) -> tuple:
    """``value`` as a (low, high) pair of finite numbers with 0 < low <= high.

    Examples
    --------
    >>> span("dose", (8, 400))
    (8, 400)
    >>> span("dose", (5, -1))
    Traceback (most recent call last):
    ...
    ValueError: dose must be a (low, high) pair with 0 < low <= high, got (5, -1)
    """
    try:
        low, high = value
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a (low, high) pair, got {value!r}") from None
    try:
        number(name, low, low=0, low_open=True)
        number(name, high, low=low)
    except ValueError:
        raise ValueError(
            f"{name} must be a (low, high) pair with 0 < low <= high, got {value!r}"
        ) from None
    return low, high


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
