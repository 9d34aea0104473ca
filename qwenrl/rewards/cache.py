"""A cache of judgements keyed by sample content and judge configuration.

The key joins ``sample_key`` (image bytes, source image bytes, task, prompt text, spec) and
the judge's ``config_hash`` (kind, options, rubric text), so the arena and the trainer
never score the same image twice with the same judge, and editing a rubric or a weight of a
judge's options invalidates exactly that judge's entries.

In memory it is an LRU dict; with ``path`` it also reads and writes a SQLite file (WAL,
one connection guarded by a lock, ``INSERT OR REPLACE``) that several processes can share.
Transient judgements (timeouts, server errors) are never stored.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections import OrderedDict
from pathlib import Path

from .base import Judge, Judgement, Sample, sample_key

SCHEMA = """
CREATE TABLE IF NOT EXISTS judgements (
    key TEXT PRIMARY KEY,
    judge TEXT NOT NULL,
    score REAL,
    rationale TEXT NOT NULL,
    parts TEXT NOT NULL,
    created REAL NOT NULL
)
"""


class RewardCache:
    """LRU of judgements in memory, optionally backed by a SQLite file at ``path``."""

    def __init__(self, path: str | Path | None = None, max_items: int = 200_000) -> None:
        if max_items < 1:
            raise ValueError(f"max_items must be at least 1, got {max_items}")
        self.path = Path(path) if path is not None else None
        self.max_items = max_items
        self.hits = 0
        self.misses = 0
        self._lru: OrderedDict[str, Judgement] = OrderedDict()
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, check_same_thread=False, timeout=30.0)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(SCHEMA)
            self._db.commit()

    @staticmethod
    def key(sample: Sample, judge: Judge) -> str:
        return f"{judge.config_hash}:{sample_key(sample)}"

    def get_many(self, keys: list[str]) -> dict[str, Judgement]:
        """Cached judgements for ``keys`` (missing keys are absent); counts hits and misses."""
        found: dict[str, Judgement] = {}
        with self._lock:
            for k in keys:
                j = self._lru.get(k)
                if j is not None:
                    self._lru.move_to_end(k)
                    found[k] = j
            todo = [k for k in keys if k not in found]
            if todo and self._db is not None:
                for i in range(0, len(todo), 500):
                    chunk = todo[i : i + 500]
                    rows = self._db.execute(
                        f"SELECT key, judge, score, rationale, parts FROM judgements WHERE key IN ({','.join('?' * len(chunk))})",
                        chunk,
                    ).fetchall()
                    for key, judge, score, rationale, parts in rows:
                        j = Judgement(score, rationale, json.loads(parts), judge)
                        found[key] = j
                        self._remember(key, j)
            # a key asked twice in one batch counts once per ask
            self.hits += sum(1 for k in keys if k in found)
            self.misses += sum(1 for k in keys if k not in found)
        return found

    def put_many(self, items: dict[str, Judgement]) -> None:
        items = {k: j for k, j in items.items() if not j.transient}
        if not items:
            return
        with self._lock:
            for k, j in items.items():
                self._remember(k, j)
            if self._db is not None:
                now = time.time()
                with self._db:
                    self._db.executemany(
                        "INSERT OR REPLACE INTO judgements (key, judge, score, rationale, parts, created) VALUES (?, ?, ?, ?, ?, ?)",
                        [(k, j.judge, j.score, j.rationale, json.dumps(j.parts), now) for k, j in items.items()],
                    )

    def _remember(self, key: str, judgement: Judgement) -> None:
        self._lru[key] = judgement
        self._lru.move_to_end(key)
        while len(self._lru) > self.max_items:
            self._lru.popitem(last=False)

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {"hits": self.hits, "misses": self.misses, "size": len(self._lru)}

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    def __len__(self) -> int:
        return len(self._lru)


def judge_cached(judge: Judge, samples: list[Sample], cache: RewardCache | None) -> list[Judgement]:
    """``judge(samples)``, answering from ``cache`` where it can and storing what is new.

    Samples with the same content in one batch are judged once. A group-relative judge (its
    scores depend on the rest of the batch) is always called on the whole batch, uncached.
    """
    if cache is None or judge.group_relative:
        return judge(samples)
    keys = [cache.key(s, judge) for s in samples]
    found = cache.get_many(keys)
    todo: dict[str, Sample] = {}
    for k, s in zip(keys, samples):
        if k not in found and k not in todo:
            todo[k] = s
    if todo:
        fresh = judge(list(todo.values()))
        new = dict(zip(todo.keys(), fresh))
        cache.put_many(new)
        found.update(new)
    return [found[k] for k in keys]
