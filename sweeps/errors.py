"""The sweep service's exceptions. The CLI maps `BadInput` to exit code 2, other errors to 1."""
from __future__ import annotations

# Error text is bounded: a line never echoes more than this much of what the user gave.
MAX_LINE = 500


def clip(text: object, limit: int = MAX_LINE) -> str:
    """str(text) on one line, cut to `limit` characters (error text never echoes unbounded
    input: a 100 KB value or a path must not become a 100 KB message)."""
    line = " ".join(str(text).split("\n"))
    return line if len(line) <= limit else line[:limit - 3] + "..."


class SweepError(Exception):
    """Base class for every error the sweep service raises on purpose."""


class BadInput(SweepError):
    """The user's input (space file, flags, data paths, tracking URI) cannot be run: exit 2."""


class SpaceError(BadInput):
    """A search-space file broke one or more rules; `problems` holds one line per violation."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


class TrackingError(BadInput):
    """The MLflow tracking store is unreachable or unusable."""


class ClusterError(BadInput):
    """The Ray cluster can never give one trial what it needs."""
