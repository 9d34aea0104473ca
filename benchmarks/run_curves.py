"""Training curves of GRPO run folders side by side, as a table and JSON: the training batches'
mean reward over blocks of steps, held-out accuracy (overall and per family) at every
evaluation, and the median step time (docs/training.md, "Round six").

    python benchmarks/run_curves.py "shipped=runs/edit-move" "hindsight=runs/edit-hindsight-move" \\
        --block 10 --family move --out benchmarks/results/move_probes.json

With every prompt of a run on one family (``family_weights: {move: 1.0}``), the batch mean of
the strict reward is that family's pass rate on the train split, over 512 samples a step.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def curves(run: Path, block: int, family: str | None) -> dict:
    from qwenrl.metrics import read_metrics

    rows = read_metrics(run / "metrics.jsonl")
    train = [r["rewards/total/mean"] for r in rows if "rewards/total/mean" in r]
    blocks = {f"{a + 1}-{min(a + block, len(train))}": float(np.mean(train[a:a + block])) for a in range(0, len(train), block)}
    evals = {int(r["step"]): {"accuracy": r["eval/accuracy"], **({family: r[f"eval/families/{family}"]} if family else {}),
                              "families": {k.split("/")[-1]: v for k, v in r.items() if k.startswith("eval/families/")}}
             for r in rows if "eval/accuracy" in r}
    steps = [r["charts/step_seconds"] for r in rows if "charts/step_seconds" in r]
    return {"run": str(run), "steps": len(train), "train_reward_by_block": blocks, "eval": evals,
            "median_step_seconds": float(np.median(steps)) if steps else None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", help="LABEL=RUN_FOLDER")
    ap.add_argument("--block", type=int, default=10)
    ap.add_argument("--family", default=None, help="a family whose held-out accuracy gets its own column")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    out = {"what": "GRPO training curves side by side (docs/training.md, Round six)",
           "command": "python benchmarks/run_curves.py " + " ".join(f'"{r}"' for r in args.runs)
           + f" --block {args.block}" + (f" --family {args.family}" if args.family else ""), "runs": {}}
    for spec in args.runs:
        label, _, path = spec.partition("=")
        if not (Path(path) / "metrics.jsonl").is_file():
            raise SystemExit(f"{path}: no metrics.jsonl; pass LABEL=RUN_FOLDER of a GRPO run")
        c = out["runs"][label] = curves(Path(path), args.block, args.family)
        held = " ".join(f"{s}:{100 * (e[args.family] if args.family else e['accuracy']):.1f}" for s, e in c["eval"].items())
        print(f"{label}: train " + " ".join(f"{k} {v:.3f}" for k, v in c["train_reward_by_block"].items())
              + f" | held out ({args.family or 'all'}) {held} | median step {c['median_step_seconds']:.1f} s")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(out, indent=2) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
