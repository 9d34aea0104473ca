"""How surely each model's text-to-image samples pass: the strict checker, the clarity of the wanted
objects, and why the failures fail (docs/training.md, "Round five").

    python benchmarks/clarity.py base=data/models/shapes-base specialist=data/models/shapes-grpo-t2i \\
        clarity=runs/t2i-clarity/checkpoints/step-000090 --out benchmarks/results/t2i_clarity.json

For every model: the seed recipe's bench (``training.recipe.bench``: strict accuracy per family,
composite reward and aesthetics on both tasks, 4 images per test prompt, one per compositional
prompt), then on the same text-to-image test images (seeds 0, 1, …) the mean ``shapes_clarity``
of the passes and of the failures, the share of passes that are close calls (clarity under
0.75), and each failure's causes among the two-object and position prompts: a wanted shape
the checker reads as another by an IoU margin under 0.05 (a near tie) or more, a wanted size
read as the other, a wanted colour missing, extra objects, an unrecognisable blob, or
(objects all right) the relation. The same clarity figures for the editing test split (the
target scene's objects), and once, for the first model's autoencoder, how clean renders fare
after an encode and decode. Prints a table; writes JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.report import checkpoint_specs  # noqa: E402

NEAR_TIE = 0.05
CLOSE_CALL = 0.75
HARD = ("two_objects", "position")


def failure_causes(prompt, result) -> set[str]:
    """Why a failing text-to-image image fails, as a set of causes (several may hold). A wanted
    shape read as another is a near tie when its lead (``ShapesClarity.object_clarity``: the wanted
    shape's IoU minus the best other's) is above −NEAR_TIE for some object of its colour."""
    from qwenrl.rewards.shapes import ShapesClarity
    from qwenrl.world.check import recognisable

    objs, clarity = result.parsed.objects, ShapesClarity()
    spec = prompt.spec["objects"]
    if all(met for d, met in result.requirements if d.startswith("exactly")):
        return {"relation" if any(not met for d, met in result.requirements if d.startswith("the ")) else "extra or background"}
    causes = set()
    if len(objs) > sum(o["count"] for o in spec):
        causes.add("extra objects")
    if any(not recognisable(o) for o in objs):
        causes.add("unrecognisable blob")
    rec = [o for o in objs if recognisable(o)]
    for want in spec:
        same = [o for o in rec if o.color == want["color"]]
        if not same:
            causes.add("colour missing")
        elif not any(o.shape == want["shape"] for o in same):
            lead = max(clarity.object_clarity((want["color"], want["shape"], None), o)[1] for o in same)
            near = lead > -NEAR_TIE
            causes.add("shape read as another, near tie" if near else "shape read as another")
        elif want.get("size") and not any(o.shape == want["shape"] and o.size == want["size"] for o in same):
            causes.add("size read as the other")
    return causes or {"count"}


def clarity_profile(policy, task: str, samples_per_prompt: int) -> dict:
    """On a task's test split, sampled as the bench samples it (seeds 0, 1, …): the checker's pass
    rate, the mean clarity of the passes and of the failures, the share of passes that are close
    calls and, for text to image, the causes of the hard families' failures."""
    from qwenrl.evaluation import evaluate
    from qwenrl.rewards import Sample, build_judge
    from qwenrl.world.check import check_image
    from qwenrl.world.prompt_sets import load_prompt_set

    res = evaluate(policy, task, "test", samples_per_prompt=samples_per_prompt, keep_images=True)
    items = [p for p in load_prompt_set(task, "test") for _ in range(samples_per_prompt)]
    judged = build_judge("shapes_clarity")([Sample.from_spec(img, it) for img, it in zip(res["images"], items)])
    clarity = np.array([j.score for j in judged])
    results = [check_image(it, img) for it, img in zip(items, res["images"])]
    passed = np.array([r.passed for r in results])
    out = {
        "accuracy": float(passed.mean()),
        "clarity_of_passes": float(clarity[passed].mean()),
        "clarity_of_failures": float(clarity[~passed].mean()),
        "close_call_share_of_passes": float((clarity[passed] < CLOSE_CALL).mean()),
        "n_images": int(len(items)),
    }
    if task == "t2i":
        causes: dict[str, Counter] = {f: Counter() for f in HARD}
        for it, result in zip(items, results):
            if it.family in HARD and not result.passed:
                causes[it.family].update(failure_causes(it, result))
        n_hard = Counter(it.family for it in items if it.family in HARD)
        out["failure_causes"] = {f: {k: v / n_hard[f] for k, v in sorted(c.items())} for f, c in causes.items()}
    return out


def autoencoder_round_trip(policy) -> dict:
    """Clean renders of the text-to-image test prompts, encoded and decoded by the model's
    autoencoder: how often the checker still passes them, and how often a shape is a near tie."""
    import torch

    from qwenrl.world.check import check_image
    from qwenrl.world.grammar import scene_for_prompt
    from qwenrl.world.parse import parse
    from qwenrl.world.prompt_sets import load_prompt_set
    from qwenrl.world.scene import render

    rng = np.random.default_rng(0)
    prompts = load_prompt_set("t2i", "test")
    clean = np.stack([render(scene_for_prompt(p, rng)) for p in prompts])
    with torch.no_grad():
        decoded = policy.decode(policy.encode_images(clean))
    near = [min([o.shape_margin for o in parse(img).objects] or [1.0]) < NEAR_TIE for img in decoded]
    return {"clean_pass": float(np.mean([check_image(p, i).passed for p, i in zip(prompts, clean)])),
            "round_trip_pass": float(np.mean([check_image(p, i).passed for p, i in zip(prompts, decoded)])),
            "round_trip_near_tie_share": float(np.mean(near)), "n_images": len(prompts)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="+", help="LABEL=CHECKPOINT")
    ap.add_argument("--samples-per-prompt", type=int, default=4)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "t2i_clarity.json")
    args = ap.parse_args()
    from qwenrl.models import load_policy
    from training.recipe import bench

    out = {"what": "strict accuracy, composite reward and the clarity of text-to-image samples (docs/training.md, Round five)",
           "command": "python benchmarks/clarity.py " + " ".join(args.models), "models": {}}
    for label, path in checkpoint_specs(args.models):
        t0 = time.perf_counter()
        policy = load_policy(path)
        row = {"path": path, "bench": bench(path, ("test", "compositional"), None, samples_per_prompt=args.samples_per_prompt),
               "clarity": clarity_profile(policy, "t2i", args.samples_per_prompt),
               "edit_clarity": clarity_profile(policy, "edit", args.samples_per_prompt)}
        if not out["models"]:
            out["autoencoder_round_trip"] = autoencoder_round_trip(policy)
            print(f"autoencoder round trip of clean renders ({label}): {out['autoencoder_round_trip']}")
        row["seconds"] = time.perf_counter() - t0
        out["models"][label] = row
        b, c = row["bench"], row["clarity"]
        print(f"{label}: t2i {100 * b['t2i/test']['accuracy']:.1f}% (compositional {100 * b['t2i/compositional']['accuracy']:.1f}%), "
              f"edit {100 * b['edit/test']['accuracy']:.1f}%, composite {b['t2i/test']['reward']:.3f} / {b['edit/test']['reward']:.3f}, "
              f"aesthetics {b['t2i/test']['aesthetics']:.3f}; clarity of passes {c['clarity_of_passes']:.3f}, "
              f"close calls {100 * c['close_call_share_of_passes']:.1f}% of passes ({row['seconds']:.0f} s)", flush=True)
        e = row["edit_clarity"]
        print(f"  edit: clarity of passes {e['clarity_of_passes']:.3f}, close calls {100 * e['close_call_share_of_passes']:.1f}% of passes")
        for fam, causes in c["failure_causes"].items():
            print(f"  {fam} failures: " + ", ".join(f"{k} {100 * v:.1f}%" for k, v in causes.items()))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
