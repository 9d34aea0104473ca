"""The judge trainer's step time with and without length buckets, side by side on one model.

One randomly initialised judge of the config's size trains on the config's data folder; rounds
alternate between the ``--buckets`` settings (``length_buckets`` of training/judge.py), each
timing ``--steps`` caption steps and ``--steps`` judge steps (the batch drawing and collation
outside the timing, the forward, backward and optimiser step inside), so that a noisy machine
slows every setting alike. Prints and writes (``benchmarks/results/judge_train_speed.{json,md}``)
the median seconds per step, the padded tokens per batch, and each setting's ratio to the first.

    python benchmarks/judge_train_speed.py --config training/configs/judge_reader.yaml \
        --set data_dir=runs/judge-positions/data --set model_examples=4096 --set render_examples=2048
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.report import write_report  # noqa: E402

RESULTS = REPO / "benchmarks" / "results" / "judge_train_speed.json"


def time_steps(cfg, buckets: list[int], steps: int, rounds: int) -> dict[str, dict]:
    """Per stage and bucket setting: every timed step's seconds and padded tokens."""
    import torch

    from training import judge as tj

    tokenizer, image_processor = tj.build_tokenizer(), tj.build_image_processor(cfg)
    train_set, _, captions, pair_set, _ = tj.load_splits(cfg, Path(cfg.data_dir), tokenizer, image_processor)
    model, params, optimizer, perception = tj.build_trainable(cfg, tokenizer)
    model.train()
    firsts = {"caption": 0, "judge": cfg.caption_steps}
    seen: dict[str, dict] = {f"{stage}/{k}": {"seconds": [], "tokens": []} for stage in firsts for k in buckets}
    for r in range(rounds):
        for k in buckets:
            c = dataclasses.replace(cfg, length_buckets=k)
            for stage, first in firsts.items():
                for step in range(first + r * steps, first + (r + 1) * steps):
                    batch = tj.draw_batch(c, step, captions, train_set, pair_set)
                    inputs = tj.collate(batch, tokenizer, image_processor)
                    t0 = time.perf_counter()
                    loss = model(**inputs).loss
                    if perception is not None:
                        loss = loss + perception(batch)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    torch.nn.utils.clip_grad_norm_(list(params.values()), cfg.grad_clip)
                    optimizer.step()
                    seen[f"{stage}/{k}"]["seconds"].append(time.perf_counter() - t0)
                    seen[f"{stage}/{k}"]["tokens"].append(int(inputs["input_ids"].numel()))
    out = {}
    for key, row in seen.items():
        stage, _ = key.split("/")
        base = seen[f"{stage}/{buckets[0]}"]
        out[key] = {"steps": len(row["seconds"]), "median_seconds": float(np.median(row["seconds"])),
                    "padded_tokens_mean": float(np.mean(row["tokens"])),
                    "time_ratio": float(np.median(row["seconds"]) / np.median(base["seconds"])),
                    "token_ratio": float(np.mean(row["tokens"]) / np.mean(base["tokens"]))}
    return out


def markdown(results: dict) -> str:
    lines = ["| stage | length_buckets | median s/step | padded tokens per batch | time ratio | token ratio |", "|---" * 6 + "|"]
    for key, row in results["settings"].items():
        stage, k = key.split("/")
        lines.append(f"| {stage} | {k} | {row['median_seconds']:.3f} | {row['padded_tokens_mean']:.0f} | "
                     f"{row['time_ratio']:.2f} | {row['token_ratio']:.2f} |")
    return ("\n".join(lines) + f"\n\n{results['steps']} steps per stage and setting in each of {results['rounds']} alternating "
            f"rounds; {results['threads']} threads; load before {results['load_before']}.\n")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default=str(REPO / "training" / "configs" / "judge_reader.yaml"))
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override (repeatable)")
    ap.add_argument("--buckets", type=int, nargs="+", default=[1, 8], help="length_buckets settings; ratios are to the first")
    ap.add_argument("--steps", type=int, default=16, help="timed steps per stage, setting and round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=str(RESULTS))
    args = ap.parse_args(argv)
    if any(k < 1 for k in args.buckets) or args.steps < 1 or args.rounds < 1:
        ap.error("--buckets values, --steps and --rounds must be >= 1")
    import torch

    from training import judge as tj

    cfg = tj.JudgeConfig.from_yaml(args.config, args.set)
    if not cfg.data_dir or not Path(cfg.data_dir).is_dir():
        ap.error(f"data_dir {cfg.data_dir!r} is not a folder: build it first (python -m training.judge --data-only) and pass "
                 "--set data_dir=FOLDER")
    torch.set_num_threads(args.threads)
    results = {"config": args.config, "overrides": args.set, "steps": args.steps, "rounds": args.rounds, "threads": args.threads,
               "load_before": [round(x, 2) for x in os.getloadavg()], "settings": time_steps(cfg, args.buckets, args.steps, args.rounds)}
    write_report(args.out, results, markdown(results))


if __name__ == "__main__":
    main()
