"""The learned judge in the studio: its verdict on every gallery image, next to the checker's.

The gallery worker (``app.gallery``, a subprocess) scores each new image with the task's
learned-judge reward (``training/configs/rewards/shapes_{task}_vlm.yaml``: the chain-of-thought
judge ``data/models/shapes-judge`` with the programmatic aesthetics and fidelity parts and the
strict checker at weight 0) and stores that judgement beside the programmatic one, under the
reward's name (``shapes_t2i_vlm``, ``shapes_edit_vlm``). The reward inspector (``app.inspector``,
in the server, without torch) reads both and shows where they disagree.

For a workspace filled before the judge existed (or with ``QWENRL_LEARNED_JUDGE=off``)::

    python -m app.learned_judge --workspace ./workspace          # judge every image not judged yet

``QWENRL_LEARNED_JUDGE``: ``off`` to skip the learned judge in the gallery worker.
"""

from __future__ import annotations

import os
import sys
from typing import Callable

import numpy as np

from qwenrl.tasks import TASKS

from .paths import MODELS_DIR
from .workspace import Workspace, worker_args

JUDGE_FOLDER = MODELS_DIR / "shapes-judge"
ENV = "QWENRL_LEARNED_JUDGE"
BATCH = 64


def reward_name(task: str) -> str:
    """The name learned-judge judgements are stored under (the reward YAML's ``name``)."""
    return f"shapes_{task}_vlm"


def enabled() -> bool:
    """True when the judge's weights are there and ``QWENRL_LEARNED_JUDGE`` is not ``off``."""
    return os.environ.get(ENV, "").lower() != "off" and (JUDGE_FOLDER / "config.json").is_file()


def judge_model(ws: Workspace, name: str, *, log: Callable[[str], None] = print) -> int:
    """Judge every gallery image of model ``name`` that has no learned-judge judgement yet;
    returns how many were judged (0 when the judge is off or missing)."""
    if not enabled():
        return 0
    from PIL import Image

    from qwenrl.rewards import Sample

    done = 0
    for task in TASKS:
        judge = reward_name(task)
        have = {j["sample_id"] for j in ws.store.judgements(judge=judge)}
        # the arena's images (judge–human agreement) and the showcase ones (the inspector)
        todo = [s for s in ws.gallery_samples(task) if s["model"] == name and s["id"] not in have]
        for start in range(0, len(todo), BATCH):
            chunk = todo[start:start + BATCH]
            samples = []
            for s in chunk:
                item = ws.pool_item(s["prompt_id"])
                with Image.open(ws.root / s["image_path"]) as im:
                    image = np.asarray(im.convert("RGB"))
                samples.append(Sample.from_spec(image, item.spec()))
            for s, j in zip(chunk, ws.reward(task, reward_name(task))(samples)):
                ws.store.add_judgement(s["id"], judge, j.score, parts=j.parts, rationale=j.rationale)
            done += len(chunk)
        if todo:
            log(f"learned judge {name}: {len(todo)} {task} images judged")
    return done


def main(argv: list[str] | None = None) -> int:
    args = worker_args("Judge a workspace's gallery with the learned judge (shapes-judge).",
                       "a model to judge (default: every model)", argv)
    if not enabled():
        print(f"the learned judge is off ({ENV}=off) or missing ({JUDGE_FOLDER})", file=sys.stderr)
        return 1
    ws = Workspace.open(args.workspace, register_bundled=False)
    names = args.model or [m["name"] for m in ws.store.list_models() if m.get("source")]
    total = sum(judge_model(ws, n, log=lambda m: print(m, file=sys.stderr)) for n in names)
    print(f"{total} images judged", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
