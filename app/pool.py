"""The arena's prompt pool: which prompts and seeds every model's gallery images are made of.

Definitions only, below everything else in the studio: the workspace registers the pool in its
store, the gallery worker (``app.gallery``) and the live worker (``app.live``) sample it, the
inspector reads it. Nothing here imports torch or the workspace.

For each task the pool is ``POOL_SIZE`` prompts evenly spaced through
``data/prompts/{task}_test.jsonl`` (ordered by family, so every family is represented). Each
prompt has ``SEEDS_PER_PROMPT`` arena seeds (the images anonymous battles show) and one
*showcase* seed (the image the public reward inspector shows with its model's name); the seeds
are the same for every model, so two models meet on equal terms.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from qwenrl.tasks import TASKS

from .paths import PROMPT_DIR, REWARD_DIR

POOL_SIZE = 48
SEEDS_PER_PROMPT = 1
BASE_SEED = 20_000


@dataclass(frozen=True)
class PoolItem:
    """One arena prompt: its id in the prompt file, task, text, family and the raw record."""

    id: str
    task: str
    text: str
    family: str
    record: dict[str, Any]

    def spec(self):
        """The Shapes ``T2IPrompt`` or ``EditTask``."""
        from qwenrl.world.grammar import EditTask, T2IPrompt

        return (T2IPrompt if self.task == "t2i" else EditTask).from_dict(self.record)


def arena_pool(task: str, size: int = POOL_SIZE, prompt_dir: Path = PROMPT_DIR) -> list[PoolItem]:
    """``size`` prompts of the task's test split, evenly spaced through the file (which is
    ordered by family, so every family keeps its share); the whole split when ``size`` is larger."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; expected one of {TASKS}")
    items = []
    with open(prompt_dir / f"{task}_test.jsonl") as fh:
        for line in fh:
            if line.strip():
                d = json.loads(line)
                items.append(PoolItem(d["id"], task, d["text"], d.get("family", ""), d))
    if size < len(items):
        items = [items[i] for i in np.linspace(0, len(items) - 1, size).round().astype(int)]
    return items


def pool_seeds(index: int, seeds_per_prompt: int = SEEDS_PER_PROMPT) -> list[int]:
    """The fixed seeds of the ``index``-th prompt of a pool (the same for every model): the
    arena's images, shown only in anonymous battles."""
    return [BASE_SEED + index * 100 + k for k in range(seeds_per_prompt)]


def showcase_seed(index: int) -> int:
    """The seed of the ``index``-th prompt's *showcase* image: the one the public reward
    inspector shows with its model's name. It is never one of the arena's seeds, so no image of
    an anonymous battle can be looked up on a public page (a hash of a battle's image finds no
    named image)."""
    return BASE_SEED + index * 100 + 99


def model_slug(name: str) -> str:
    """A folder name for a model: its name made safe, plus a short hash against collisions."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:48].strip(".") or "model"
    return f"{safe}-{hashlib.sha1(name.encode()).hexdigest()[:6]}"


def reward_path(name: str) -> Path:
    """The reward YAML ``name`` of the shipped rewards: ``shapes_t2i`` (a task's composite, the
    gallery's judgement) or ``shapes_t2i_vlm`` (the learned judge's)."""
    return REWARD_DIR / f"{name}.yaml"


def composite_reward(task: str) -> str:
    """The name of a task's composite reward: the judgement every gallery and live image gets."""
    return f"shapes_{task}"

