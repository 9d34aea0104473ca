"""Why ``move`` edits fail, per model: the strict checker's reasons on the test split's moves,
and how far the moved object travelled along the asked direction, for passing and for all
samples (docs/training.md, "Round six").

    python benchmarks/move_failures.py base=data/models/shapes-base edit=data/models/shapes-grpo-edit \\
        --samples 8 --out benchmarks/results/move_failures.json

Each model samples the way its manifest says (seeds 0, 1, …). A failing sample's reasons are
grouped as: the object moved too little or the wrong way (``moved X px … (needs 4)``), drifted
sideways, is missing, another object is missing or moved, or an extra object appeared.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.report import checkpoint_specs  # noqa: E402


def reason_kind(reason: str) -> str:
    if re.search(r"moved -?[\d.]+ px (left|right|up|down) \(needs", reason):
        return "moved too little or the wrong way"
    if "drifted" in reason:
        return "drifted sideways"
    if reason.startswith("extra "):
        return "an extra object"
    if "is missing" in reason or "moved by" in reason:
        return "an object missing or displaced"
    return "other"


def along(task, image_parse) -> float | None:
    """Displacement of the mover (the drawn object of its colour and shape nearest its target)
    along the asked direction, in px, as the checker measures it; None when no such object is drawn."""
    from qwenrl.world.check import move_shift
    from qwenrl.world.parse import object_centroid

    before, after = task.source.objects[task.target_index], task.target.objects[task.target_index]
    start, end = object_centroid(before), object_centroid(after)
    same = [o for o in image_parse.objects if o.color == before.color and o.shape == before.shape]
    if not same:
        return None
    best = min(same, key=lambda o: float(np.linalg.norm(np.array(o.centroid) - np.array(end))))
    return move_shift(start, end, best.centroid)[0]


def profile(path: str, samples: int) -> dict:
    from qwenrl.evaluation import generate_for, policy_sampling_defaults
    from qwenrl.models import load_policy
    from qwenrl.world.check import check_image
    from qwenrl.world.parse import parse
    from qwenrl.world.prompt_sets import load_prompt_set

    policy = load_policy(path if Path(path).is_absolute() else ROOT / path)
    d = policy_sampling_defaults(policy)
    items = [p for p in load_prompt_set("edit", "test") if p.family == "move" for _ in range(samples)]
    images = generate_for(policy, items, seeds=list(range(len(items))), num_steps=d["num_steps"], guidance_scale=d["guidance_scale"])
    kinds, passing, every, passed = Counter(), [], [], []
    for task, image in zip(items, images):
        result = check_image(task, image)
        passed.append(result.passed)
        a = along(task, parse(image))
        if a is not None:
            every.append(a)
            if result.passed:
                passing.append(a)
        if not result.passed:
            kinds.update({reason_kind(r) for r in result.reasons})
    q = [0.1, 0.25, 0.5, 0.75, 0.9]
    fails = len(passed) - sum(passed)
    return {"path": path, "images": len(items), "pass_rate": float(np.mean(passed)),
            "failing_images_with_reason": {k: v / max(fails, 1) for k, v in kinds.most_common()},
            "along_px_quantiles": {"q": q, "passing": np.quantile(passing, q).round(2).tolist() if passing else None,
                                   "all": np.quantile(every, q).round(2).tolist()},
            "share_moved_4px_or_more": float(np.mean(np.array(every) >= 4.0))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="+", help="LABEL=CHECKPOINT")
    ap.add_argument("--samples", type=int, default=8)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "move_failures.json")
    args = ap.parse_args()
    out = {"what": "why move edits fail (docs/training.md, Round six)",
           "command": "python benchmarks/move_failures.py " + " ".join(args.models) + f" --samples {args.samples}", "models": {}}
    for label, path in checkpoint_specs(args.models):
        p = out["models"][label] = profile(path, args.samples)
        print(f"{label}: pass {100 * p['pass_rate']:.1f}% of {p['images']}; along (px) passing {p['along_px_quantiles']['passing']}, "
              f"all {p['along_px_quantiles']['all']}; moved >= 4 px: {100 * p['share_moved_4px_or_more']:.1f}%")
        print("  failing images: " + ", ".join(f"{k} {100 * v:.0f}%" for k, v in p["failing_images_with_reason"].items()))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
