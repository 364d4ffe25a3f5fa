"""Stage inputs that must exist before a run starts (checkpoints, reward model, data).

A missing input is reported as one line naming the path and the command that creates
it (`launch/train.py` prints it without a traceback), instead of a failure deep in a
checkpoint reader.
"""

from __future__ import annotations

from pathlib import Path


class MissingInput(FileNotFoundError):
    """A stage input does not exist; the message says which and how to make it."""


def require(path: str | Path, what: str, made_by: str) -> Path:
    """`path` as a Path if it exists, else `MissingInput` naming it and `made_by`."""
    if not str(path) or not Path(path).exists():
        raise MissingInput(f"{what} {str(path) or '(not set)'} does not exist; "
                           f"create it with: {made_by}")
    return Path(path)


class InputMismatch(ValueError):
    """A stage input disagrees with the config; the message names the field and file."""
