"""Errors raised by the saliency package.

`DataError` is a `ValueError` so callers that only know the standard library can still catch it;
the sweep layer may map it to its own `SweepError` tree. Every message names the offending file
or directory and says what was expected there.
"""
from __future__ import annotations


class DataError(ValueError):
    """A dataset file or directory that cannot be used; the message names the path."""
