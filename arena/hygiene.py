"""Vote hygiene: which votes the boards count.

A vote carries ``flags``, a comma-separated, sorted set of names (``""`` when it has none).
Some are stored with the vote when it is cast (:meth:`arena.store.ArenaStore.record_vote`):

- ``fast``: sent sooner after its battle was served than the arena's minimum time-to-vote;
- ``burst``: from a voter created in a burst of new voters.

Two more are added when votes are read from a store (:meth:`ArenaStore.vote_records`), so that
an export says by itself which votes the default board leaves out:

- ``named``: cast with the model names shown (``anony`` false), e.g. a named side-by-side;
- ``excluded``: its voter is excluded by an admin (reversible; the vote itself stays).

The default board, in the studio and in ``qwenrl elo``, counts only votes without a flag;
``include_flagged`` (``--include-flagged``, ``?include_flagged=true``) counts every vote. Vote
files without a ``flags`` field (FastChat / GenAI-Arena logs, older exports) have no flagged
votes, so their tables do not change.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import numpy as np

from arena._quick import lazy_module

if TYPE_CHECKING:
    import pandas as pd
else:
    pd = lazy_module("pandas")  # imported on first use: see arena._quick

FAST, BURST, NAMED, EXCLUDED = "fast", "burst", "named", "excluded"
KNOWN_FLAGS: tuple[str, ...] = (BURST, EXCLUDED, FAST, NAMED)
_FLAG_RE = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
_FLAGS_TEXT_RE = re.compile(r"^([a-z][a-z0-9_-]{0,31}(,[a-z][a-z0-9_-]{0,31})*)?$")


def check_flag(name: Any) -> str:
    """``name`` if it is a valid flag name (lower-case letters, digits, ``-``, ``_``), else ValueError."""
    if not isinstance(name, str) or not _FLAG_RE.match(name):
        raise ValueError(f"flag {name!r} is not a flag name (lower-case letters, digits, '-' or '_', "
                         "starting with a letter)")
    return name


def join_flags(flags: Iterable[str] | str | None) -> str:
    """The stored form of a set of flags: sorted, comma-separated, each name checked."""
    if flags is None:
        return ""
    names = split_flags(flags) if isinstance(flags, str) else [check_flag(f) for f in flags]
    return ",".join(sorted(set(names)))


def split_flags(text: str | None) -> list[str]:
    """The flag names of a stored ``flags`` string (``""`` and None give none)."""
    if not text:
        return []
    if not isinstance(text, str) or not _FLAGS_TEXT_RE.match(text):
        raise ValueError(f"flags {text!r} is not a comma-separated list of flag names")
    return text.split(",")


def is_flags_text(value: Any) -> bool:
    """Whether ``value`` is a valid ``flags`` field: a string of comma-separated flag names."""
    return isinstance(value, str) and bool(_FLAGS_TEXT_RE.match(value))


def with_flags(text: str | None, *extra: str) -> str:
    """``text`` with the ``extra`` flags added."""
    if not extra:
        return text or ""
    return join_flags([*split_flags(text), *extra])


def flagged_mask(frame: pd.DataFrame) -> np.ndarray:
    """True for the rows of a vote table that carry a flag (no ``flags`` column: none do)."""
    if "flags" not in frame.columns or len(frame) == 0:
        return np.zeros(len(frame), dtype=bool)
    flags = frame["flags"]
    if isinstance(flags.dtype, pd.CategoricalDtype):  # a file read: look at the few distinct values only
        flagged = np.array([value != "" for value in flags.cat.categories], dtype=bool)
        codes = flags.cat.codes.to_numpy()
        return (codes >= 0) & np.append(flagged, False)[codes]
    return flags.notna().to_numpy() & (flags.astype(object).fillna("") != "").to_numpy()


def counted_votes(frame: pd.DataFrame, *, include_flagged: bool = False) -> pd.DataFrame:
    """The votes a board counts: without a flag, or every vote with ``include_flagged``.

    When votes are left out, the model columns become categoricals that keep the models'
    order of first appearance in ``frame``, as a vote file read whole and then filtered keeps
    it: the bootstrap draws follow that order, so the studio's board and ``qwenrl elo`` on its
    export give the same intervals."""
    if include_flagged:
        return frame
    mask = flagged_mask(frame)
    if not mask.any():
        return frame
    frame = frame.copy()
    if {"model_a", "model_b"} <= set(frame.columns) and not isinstance(frame["model_a"].dtype, pd.CategoricalDtype):
        order = pd.unique(pd.concat([frame["model_a"], frame["model_b"]], ignore_index=True).dropna())
        for name in ("model_a", "model_b"):
            frame[name] = pd.Categorical(frame[name], categories=order)
    return frame[~mask].reset_index(drop=True)


def flag_counts(frame: pd.DataFrame) -> dict[str, int]:
    """How many votes of a table carry each flag (a vote with two flags counts for both)."""
    mask = flagged_mask(frame)
    counts: dict[str, int] = {}
    if not mask.any():
        return counts
    for text, n in frame.loc[mask, "flags"].astype(object).value_counts().items():
        for name in split_flags(text):
            counts[name] = counts.get(name, 0) + int(n)
    return dict(sorted(counts.items()))


def left_out_message(frame: pd.DataFrame, switch: str = "--include-flagged") -> str | None:
    """The one line that says which flagged votes the default board left out (``frame`` being
    every vote), and how to count them (``switch``); None when no vote is flagged."""
    counts = flag_counts(frame)
    if not counts:
        return None
    total = int(flagged_mask(frame).sum())
    parts = ", ".join(f"{name} {n}" for name, n in counts.items())
    noun = "vote" if total == 1 else "votes"
    return f"left out {total} flagged {noun} ({parts}); {switch} counts them"
