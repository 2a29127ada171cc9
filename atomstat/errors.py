"""Exceptions raised by atomstat.

Every error a user can provoke with bad input is one of these, with a message
that names the input and says what was wrong with it.
"""

__all__ = ["AtomstatError", "LoadError"]


class AtomstatError(Exception):
    """Base class for errors raised by atomstat."""


class LoadError(AtomstatError, ValueError):
    """A file could not be read as a microscope image or image stack.

    The message names the file, says what it is (as far as it could be read)
    and why it was refused.
    """
