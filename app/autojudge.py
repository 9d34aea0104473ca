"""The automatic arena: battles between gallery samples judged by a program, not a person.

Judges:

* ``oracle`` — the Shapes world's strict checker (``qwenrl.world.check.check_image``): an
  image that passes beats one that fails; both pass is a tie; both fail is a tie (both bad).
* a reward YAML (``training/configs/rewards/shapes_t2i.yaml``) — the composite reward: the
  higher score wins; equal scores tie; no score on either side is a tie (both bad).

Votes are tagged with the judge (``oracle``, ``reward:<name>``) and the voter is the judge, so
they never mix with human votes unless asked (the leaderboard's "auto" and "all" filters).

    run_auto_arena(workspace, task="t2i", judge="oracle", battles=500, seed=0)
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from arena.matchmaking import next_pair


class AutoJudge:
    """Scores a gallery sample once (cached) and turns two scores into an arena outcome."""

    def __init__(self, ws, judge: str, task: str) -> None:
        self.ws = ws
        self.task = task
        self._cache: dict[int, float | None] = {}
        if judge == "oracle":
            self.name = "oracle"
            self._reward = None
        else:
            from qwenrl.rewards import load_reward

            path = Path(judge)
            if not path.is_file():
                raise ValueError(f"--judge must be 'oracle' or a reward YAML file; {judge!r} is neither")
            self._reward = load_reward(path, cache=False)
            if self._reward.task != task:
                raise ValueError(f"{path} is a {self._reward.task} reward; the battles are {task}")
            self.name = f"reward:{self._reward.name}"

    def score(self, sample: dict[str, Any]) -> float | None:
        sid = int(sample["id"])
        if sid not in self._cache:
            from qwenrl.imageio import load_png

            item = self.ws.pool_item(sample["prompt_id"])
            image = load_png(self.ws.root / sample["image_path"])
            if self._reward is None:
                from qwenrl.world.check import check_image

                self._cache[sid] = 1.0 if check_image(item.spec(), image).passed else 0.0
            else:
                from qwenrl.rewards import Sample

                [j] = self._reward([Sample.from_spec(image, item.spec())])
                self._cache[sid] = j.score
        return self._cache[sid]

    def outcome(self, a: dict[str, Any], b: dict[str, Any]) -> str:
        sa, sb = self.score(a), self.score(b)
        if sa is None or sb is None:
            return "tie (bothbad)" if sa is None and sb is None else ("model_b" if sa is None else "model_a")
        if abs(sa - sb) <= 1e-9:
            if self._reward is None:
                return "tie" if sa > 0.5 else "tie (bothbad)"
            return "tie"
        return "model_a" if sa > sb else "model_b"


def run_auto_arena(
    ws, *, task: str, judge: str, battles: int, seed: int = 0, strategy: str = "info",
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Add ``battles`` automatically judged votes to the workspace's store; returns a summary."""
    if battles < 1:
        raise ValueError("--battles must be at least 1")
    auto = AutoJudge(ws, judge, task)
    by_model: dict[str, dict[tuple[int, int], dict[str, Any]]] = {}
    for s in ws.arena_samples(task):
        by_model.setdefault(s["model"], {})[(s["prompt_id"], s["seed"])] = s
    models = sorted(by_model)
    if len(models) < 2:
        raise ValueError(f"the {task} gallery has {len(models)} model(s) with images; the arena needs two")
    rng = np.random.default_rng(seed)
    counts = np.zeros((len(models), len(models)), dtype=np.int64)
    index = {m: i for i, m in enumerate(models)}
    outcomes: dict[str, int] = {}
    for k in range(battles):
        left, right = next_pair(models, counts, strategy=strategy, seed=rng)  # type: ignore[arg-type]
        common = sorted(set(by_model[left]) & set(by_model[right]))
        if not common:
            continue
        key = common[int(rng.integers(len(common)))]
        a, b = by_model[left][key], by_model[right][key]
        winner = auto.outcome(a, b)
        battle = ws.store.create_battle(a["id"], b["id"], voter=auto.name)
        ws.store.record_vote(battle["id"], winner, voter=auto.name, judge=auto.name)
        counts[index[left], index[right]] += 1
        counts[index[right], index[left]] += 1
        outcomes[winner] = outcomes.get(winner, 0) + 1
        if progress is not None:
            progress(k + 1, battles)
    return {"task": task, "judge": auto.name, "battles": int(counts.sum() // 2), "outcomes": outcomes,
            "models": models}
