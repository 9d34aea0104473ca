"""The fixed prompt sets of the Shapes world, in ``data/prompts/`` as JSON lines.

Six files, ``{task}_{split}.jsonl`` for task ``t2i`` or ``edit`` and split ``train``,
``test`` or ``compositional`` (sizes in ``SET_SIZES``). Each line is the prompt's or the
task's ``to_dict()`` with an ``id``; edit lines carry their source and target scenes.

* Families are balanced: each gets the same count, except where a family has fewer
  distinct prompts than its share; the rest then goes to the other families.
* ``test`` and ``compositional`` prompts are distinct: distinct texts for text-to-image,
  distinct (instruction, source scene) pairs for editing (an instruction may recur over
  different scenes). ``train`` text-to-image prompts repeat where a family has fewer
  distinct texts than its share (``single`` has 35), so that families stay balanced.
* Splits never share a text: the grammar assigns each text to one split (by hash, and
  held-out colour-shape pairs and relations to ``compositional``).

Regenerate (deterministic for a seed)::

    python -m qwenrl.world.prompt_sets [--seed 0] [--out data/prompts]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Union

import numpy as np

from .grammar import (
    EDIT_FAMILIES,
    T2I_FAMILIES,
    EditTask,
    T2IPrompt,
    sample_edit,
    sample_t2i_prompt,
)
from qwenrl.tasks import TASKS

PROMPT_DIR = Path(__file__).resolve().parents[2] / "data" / "prompts"
SPLITS: tuple[str, ...] = ("train", "test", "compositional")
SET_SIZES: dict[str, int] = {"train": 1000, "test": 250, "compositional": 150}
DEFAULT_SEED = 0
POOL_DRAWS = 30_000  # prompts drawn per family to list its distinct texts (the largest has ~1,500)

PromptOrTask = Union[T2IPrompt, EditTask]


def balanced_counts(total: int, families: tuple[str, ...], capacity: dict[str, int] | None = None) -> dict[str, int]:
    """``total`` spread evenly over ``families``, none above its ``capacity``; the remainder
    of an uneven division goes to the first families."""
    capacity = capacity or {}
    if sum(capacity.get(f, total) for f in families) < total:
        raise ValueError(f"only {sum(capacity.values())} distinct prompts for a set of {total}")
    counts = {f: 0 for f in families}
    left = total
    open_families = [f for f in families if capacity.get(f, total) > 0]
    while left > 0:
        share, extra = divmod(left, len(open_families))
        for i, f in enumerate(open_families):
            room = capacity.get(f, total) - counts[f]
            take = min(room, share + (1 if i < extra else 0))
            counts[f] += take
            left -= take
        open_families = [f for f in open_families if counts[f] < capacity.get(f, total)]
    return counts


def t2i_pool(family: str, split: str, rng: np.random.Generator) -> list[T2IPrompt]:
    """Every distinct prompt of ``family`` in ``split``, sorted by text."""
    seen: dict[str, T2IPrompt] = {}
    for _ in range(POOL_DRAWS):
        p = sample_t2i_prompt(rng, family)
        if p.split == split:
            seen.setdefault(p.text, p)
    return [seen[t] for t in sorted(seen)]


def build_t2i_set(split: str, n: int, rng: np.random.Generator) -> list[T2IPrompt]:
    pools = {f: t2i_pool(f, split, rng) for f in T2I_FAMILIES}
    distinct = split != "train"
    capacity = {f: len(pools[f]) for f in T2I_FAMILIES} if distinct else None
    counts = balanced_counts(n, T2I_FAMILIES, capacity)
    out: list[T2IPrompt] = []
    for f in T2I_FAMILIES:
        pool = pools[f]
        order = rng.permutation(len(pool))
        # Cycle through the shuffled pool: repeats only when the pool is smaller than the share.
        out.extend(pool[order[i % len(pool)]] for i in range(counts[f]))
    return out


def build_edit_set(split: str, n: int, rng: np.random.Generator) -> list[EditTask]:
    counts = balanced_counts(n, EDIT_FAMILIES)
    out: list[EditTask] = []
    for f in EDIT_FAMILIES:
        seen: set[str] = set()
        while len(seen) < counts[f]:
            task = sample_edit(rng, family=f, split=split)
            key = json.dumps([task.instruction, task.source.to_dict()], sort_keys=True)
            if key not in seen:
                seen.add(key)
                out.append(task)
    return out


def prompt_set_path(task: str, split: str, root: Path | str | None = None) -> Path:
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; expected one of {TASKS}")
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    return Path(root or PROMPT_DIR) / f"{task}_{split}.jsonl"


def write_prompt_sets(root: Path | str | None = None, seed: int = DEFAULT_SEED) -> dict[str, int]:
    """Write all six sets under ``root``; returns the number of lines per file name."""
    root = Path(root or PROMPT_DIR)
    root.mkdir(parents=True, exist_ok=True)
    written: dict[str, int] = {}
    for t, task in enumerate(TASKS):
        for s, split in enumerate(SPLITS):
            # One stream per file, so one set can change without reshuffling the others.
            rng = np.random.default_rng([seed, t, s])
            build = build_t2i_set if task == "t2i" else build_edit_set
            items = build(split, SET_SIZES[split], rng)
            path = prompt_set_path(task, split, root)
            with path.open("w") as fh:
                for i, item in enumerate(items):
                    fh.write(json.dumps({"id": f"{task}-{split}-{i:04d}"} | item.to_dict()) + "\n")
            written[path.name] = len(items)
    return written


def load_prompt_set(task: str, split: str, root: Path | str | None = None, limit: int | None = None) -> list[PromptOrTask]:
    """The prompts (``t2i``) or edit tasks (``edit``) of a split: train, test or compositional.

    With ``limit``, an evenly spaced subset of that many items: the files are ordered by
    family, so a subset keeps every family's share (the first N items would not)."""
    path = prompt_set_path(task, split, root)
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing; write the prompt sets with `python -m qwenrl.world.prompt_sets`")
    parse = T2IPrompt.from_dict if task == "t2i" else EditTask.from_dict
    with path.open() as fh:
        items = [parse(json.loads(line)) for line in fh if line.strip()]
    if limit is not None and limit < len(items):
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        items = [items[i] for i in np.linspace(0, len(items) - 1, limit).round().astype(int)]
    return items


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Write the Shapes-world prompt sets (JSON lines).")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="seed of every set (default 0)")
    parser.add_argument("--out", type=Path, default=PROMPT_DIR, help="folder to write into (default data/prompts)")
    args = parser.parse_args(argv)
    for name, n in write_prompt_sets(args.out, args.seed).items():
        print(f"{args.out / name}: {n}")


if __name__ == "__main__":
    main()
