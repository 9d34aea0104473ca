"""The reader's blob threshold (``shapes_reader``'s ``blob_at``): chosen on the compositional split,
then measured on the test split.

Most of the reader's disagreements with the checker are one call: whether a malformed shape is
still a circle, square or triangle, or a blob. The judge's answer writes one word; its probabilities
say how sure it was. For each task, the four bundled models' samples (one per prompt, seeds from
``--seed``) are judged once by the positions judge with the shape words' probabilities kept; then
for each threshold of a grid the answers are re-read (``reader.reread_shapes``) and the rules'
pass/fail compared with the checker's. The threshold with the best agreement on the
**compositional** split (150 prompts the judge never trained on, and not the test split) is chosen
per task, the greedy reading kept unless a threshold beats it; the **test** split (250 prompts) then
measures the chosen threshold against the greedy reading on the same answers.
Writes benchmarks/results/reader_calibration.json.

    python benchmarks/reader_calibration.py [--judge data/models/shapes-judge-reader] [--limit N]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
RESULTS = ROOT / "benchmarks" / "results" / "reader_calibration.json"
GRID = [round(x, 2) for x in np.arange(0.05, 0.96, 0.05)]


def reader(task: str, judge_path: Path):
    """The reader as the task's reward YAML configures it, pointed at ``judge_path``."""
    import yaml

    from qwenrl.rewards.base import build_judge

    cfg = yaml.safe_load((ROOT / "training" / "configs" / "rewards" / f"shapes_{task}_reader.yaml").read_text())
    options = dict(cfg["components"]["judge"]["config"])
    options.update(model_path=str(judge_path), rubric_dir=str(judge_path / "rubrics"), blob_at=None)
    return build_judge("shapes_reader", name="judge", config=options)


def judged(task: str, split: str, judge, models: list[str], limit: int | None, seed: int) -> dict[str, Any]:
    """The split's samples, the checker's pass of each, and the judge's answers with shape probabilities."""
    from judge import sample_models

    from qwenrl.rewards import Sample
    from qwenrl.rewards.shapes import parsed_scene
    from qwenrl.world.check import check_edit, check_t2i

    items, names, images = sample_models(task, models, limit, seed, split=split)
    samples = [Sample.from_spec(img, it) for img, it in zip(images, items)]
    check = check_t2i if task == "t2i" else check_edit
    passed = [bool(check(s.spec, parsed_scene(s)).passed) for s in samples]
    rows: list[Any] = []
    t0 = time.perf_counter()
    for start in range(0, len(samples), judge.options.batch_size):
        got, shape_ids = judge.generate_with_shape_probs(samples[start:start + judge.options.batch_size])
        rows += got
    return {"samples": samples, "names": names, "passed": passed, "rows": rows, "shape_ids": shape_ids,
            "judge_seconds": time.perf_counter() - t0}


def agreement(data: dict[str, Any], judge, blob_at: float | None) -> dict[str, Any]:
    """The rules' agreement with the checker when the answers are re-read at ``blob_at`` (None: as written)."""
    from qwenrl.rewards.reader import reread_shapes
    from qwenrl.rewards.shapes_cot import read_answer, rule_verdicts

    agree, changed = [], 0
    for s, ok, (ids, pieces, probs) in zip(data["samples"], data["passed"], data["rows"]):
        new = ids if blob_at is None else reread_shapes(ids, pieces, probs, data["shape_ids"], blob_at)
        changed += new != ids
        rules = rule_verdicts(read_answer(judge.decode_ids(new)), s.spec)
        agree.append(rules is not None and rules.passed == ok)
    by_model: dict[str, list[bool]] = {}
    for name, a in zip(data["names"], agree):
        by_model.setdefault(name, []).append(a)
    return {"blob_at": blob_at, "agreement": float(np.mean(agree)), "answers_changed": changed,
            "by_model": {k: float(np.mean(v)) for k, v in sorted(by_model.items())}}


def reader_arguments(description: str, out: Path, argv: list[str] | None) -> argparse.Namespace:
    """The command line the reader benchmarks share: the judge folder, the bundled models sampled,
    the prompts per split, the first seed, torch threads and the JSON written."""
    from judge import MODELS

    ap = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--judge", default=str(ROOT / "data" / "models" / "shapes-judge-reader"), help="a judge folder that writes positions")
    ap.add_argument("--models", nargs="*", default=MODELS, help="bundled image models to sample")
    ap.add_argument("--limit", type=int, default=None, help="prompts per split and task (default all)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the first prompt's sample (and of a pair order)")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    ap.add_argument("--out", default=str(out), help="where to write the JSON")
    return ap.parse_args(argv)


def result_header(args: argparse.Namespace, **fields: Any) -> dict[str, Any]:
    """Set torch's threads; the results' opening fields: the judge, ``fields``, the machine and its load."""
    import torch

    torch.set_num_threads(args.threads)
    judge_path = Path(args.judge)
    return {"judge": str(judge_path.relative_to(ROOT) if judge_path.is_relative_to(ROOT) else judge_path), **fields,
            "threads": args.threads, "cpu_count": os.cpu_count(), "load_before": os.getloadavg(), "tasks": {}}


def main(argv: list[str] | None = None) -> None:
    args = reader_arguments(__doc__, RESULTS, argv)
    result = result_header(args, grid=GRID)
    judge_path = Path(args.judge)
    for task in ("t2i", "edit"):
        judge = reader(task, judge_path)
        calib = judged(task, "compositional", judge, args.models, args.limit, args.seed)
        sweep = [agreement(calib, judge, None)] + [agreement(calib, judge, t) for t in GRID]
        best = max(sweep, key=lambda r: (r["agreement"], r["blob_at"] is None))  # greedy wins a tie
        test = judged(task, "test", judge, args.models, args.limit, args.seed)
        greedy_test, chosen_test = agreement(test, judge, None), agreement(test, judge, best["blob_at"])
        oracle = max((agreement(test, judge, t) for t in GRID), key=lambda r: r["agreement"])  # for reference only
        result["tasks"][task] = {
            "calibration": {"split": "compositional", "n": len(calib["samples"]), "sweep": sweep, "chosen": best["blob_at"]},
            "test": {"split": "test", "n": len(test["samples"]), "greedy": greedy_test, "chosen": chosen_test,
                     "best_on_test_for_reference": {"blob_at": oracle["blob_at"], "agreement": oracle["agreement"]}},
            "judge_samples_per_s": len(test["samples"]) / test["judge_seconds"],
        }
        print(f"{task}: compositional greedy {sweep[0]['agreement']:.1%}, best {best['agreement']:.1%} at blob_at={best['blob_at']}; "
              f"test greedy {greedy_test['agreement']:.1%} -> chosen {chosen_test['agreement']:.1%} "
              f"({chosen_test['answers_changed']} answers changed; the test split's own best {oracle['agreement']:.1%} at {oracle['blob_at']})")
    result["load_after"] = os.getloadavg()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()
