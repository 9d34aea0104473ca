"""Strict accuracy (GenEval-style), composite reward and aesthetics of models on every split.

    python benchmarks/accuracy.py data/models/shapes-base [MODEL ...] [--samples-per-prompt 16]

Uses ``training.recipe.bench`` (the same measurement as the seed recipe), sampling with each
checkpoint's recommended settings. With ``--samples-per-prompt K`` it also reports the unbiased
pass@k (k = 1, 2, 4, …, K) on the test splits, per family and overall: the share of prompts RL can
reach within the model's own samples. Prints markdown tables and writes
benchmarks/results/accuracy.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SPLITS = ("train", "test", "compositional")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="+")
    ap.add_argument("--limit", type=int, default=None, help="first N prompts of each split")
    ap.add_argument("--samples-per-prompt", type=int, default=1, help="test-split samples per prompt for pass@k (1: none)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "accuracy.json")
    args = ap.parse_args()
    from training.recipe import bench

    table = {}
    for model in args.models:
        t0 = time.perf_counter()
        table[Path(model).name] = {**bench(model, SPLITS, args.limit, args.samples_per_prompt), "seconds": time.perf_counter() - t0}
    print("| model | task | " + " | ".join(f"{s} accuracy" for s in SPLITS) + " | test reward | test aesthetics |")
    print("|---|---|" + "---|" * (len(SPLITS) + 2))
    for name, r in table.items():
        for task in ("t2i", "edit"):
            accs = " | ".join(f"{100 * r[f'{task}/{s}']['accuracy']:.1f}%" for s in SPLITS)
            t = r[f"{task}/test"]
            print(f"| {name} | {task} | {accs} | {t['reward']:.3f} | {t['aesthetics']:.3f} |")
    if args.samples_per_prompt > 1:
        ks = list(next(iter(table.values()))["t2i/test"]["pass_at_k"]["overall"])
        print(f"\npass@k on the test splits ({args.samples_per_prompt} samples per prompt):\n")
        print("| model | task | family | " + " | ".join(f"pass@{k}" for k in ks) + " |")
        print("|---|---|---|" + "---|" * len(ks))
        for name, r in table.items():
            for task in ("t2i", "edit"):
                pk = r[f"{task}/test"]["pass_at_k"]
                for fam, row in [("overall", pk["overall"]), *pk["families"].items()]:
                    print(f"| {name} | {task} | {fam} | " + " | ".join(f"{100 * row[k]:.1f}%" for k in ks) + " |")
    args.out.write_text(json.dumps(table, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
