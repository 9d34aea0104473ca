"""What an arena image looks like, in numbers: the covariates of style control.

Each battle keeps, in its ``meta``, one object of numbers per image (in side order), so that
the leaderboard can separate what voters reward in looks from what they reward in
instruction-following (``arena.style``), and an export carries them:

- ``aesthetics``: the composite reward's aesthetics part (colour purity, clean background, no
  specks, sharp edges), from the gallery's stored judgement;
- ``objects``: how many objects the Shapes parser sees in the image.

Nothing here samples or imports torch; values are cached per sample.
"""

from __future__ import annotations

import threading
from typing import Any

AESTHETICS_PART = "aesthetics"


class Covariates:
    """Covariates of gallery samples, computed once per sample and kept."""

    def __init__(self, ws) -> None:
        self.ws = ws
        self._cache: dict[int, dict[str, float]] = {}
        self._lock = threading.Lock()

    def of(self, sample: dict[str, Any]) -> dict[str, float]:
        """``{"aesthetics": …, "objects": …}`` of one sample (a part is left out when unknown)."""
        sid = int(sample["id"])
        with self._lock:
            cached = self._cache.get(sid)
        if cached is not None:
            return cached
        values: dict[str, float] = {}
        for judgement in self.ws.store.judgements(sample_id=sid):
            part = judgement["parts"].get(AESTHETICS_PART)
            if isinstance(part, (int, float)):
                values["aesthetics"] = float(part)
                break
        try:
            from qwenrl.imageio import load_png
            from qwenrl.world.parse import parse

            values["objects"] = float(len(parse(load_png(self.ws.root / sample["image_path"])).objects))
        except (OSError, ValueError):
            pass  # not a Shapes image, or unreadable: no object count
        with self._lock:
            self._cache[sid] = values
        return values

    def battle_meta(self, samples: list[dict[str, Any]]) -> dict[str, Any] | None:
        """The ``meta`` of a battle among ``samples`` (side order), or None without covariates."""
        rows = [self.of(s) for s in samples]
        return {"covariates": rows} if any(rows) else None
