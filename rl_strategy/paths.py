"""Paths given as globs (`checkpoints/rl_v2/model_final_*.pt`): the newest match is used."""

from __future__ import annotations

import glob
from pathlib import Path

from rl_strategy.errors import RLTraderError


def newest_match(pattern: str | Path, what: str = "file") -> Path:
    """`pattern` itself when it is a file, else its newest glob match (modification time, then name)."""
    path = Path(pattern)
    if path.is_file():
        return path
    matches = [Path(m) for m in glob.glob(str(pattern)) if Path(m).is_file()]
    if not matches:
        raise RLTraderError(f"no {what} matches {pattern}")
    return max(matches, key=lambda m: (m.stat().st_mtime, m.name))
