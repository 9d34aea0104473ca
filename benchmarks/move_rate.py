"""How fast the bundled base can learn ``move`` at all: supervised flow matching on the grammar's
exact target renders (the answer key, which RL never sees), with the editing RL config's
optimizer settings, against the RL runs' per-step rate (docs/training.md, "Round six").

    python benchmarks/move_rate.py --updates 240 --lr 1e-4 --out benchmarks/results/move_rate.json

Each update is one AdamW step on ``--batch`` move edits drawn from the train split (a fresh
draw per update, the target image encoded by the model's autoencoder, σ logit-normal, 10% text
dropout), as one of the RL update's optimizer steps is (the shipped editing config takes 8 per
GRPO step: 4 epochs × 2). Held-out ``move`` accuracy (the test split's move edits, ``--samples``
images each, guidance 2, 10 steps) every ``--eval-every`` updates. The question it answers: if
even the answer key at this learning rate moves ``move`` slowly, the optimizer's step, not the
reward's signal, is what limits RL on this family.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]


def move_accuracy(policy, samples: int) -> float:
    from qwenrl.evaluation import generate_for
    from qwenrl.world.check import check_image
    from qwenrl.world.prompt_sets import load_prompt_set

    items = [p for p in load_prompt_set("edit", "test") if p.family == "move" for _ in range(samples)]
    images = generate_for(policy, items, seeds=list(range(len(items))), num_steps=10, guidance_scale=2.0)
    return float(np.mean([check_image(it, im).passed for it, im in zip(items, images)]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="data/models/shapes-base")
    ap.add_argument("--updates", type=int, default=240)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--eval-every", type=int, default=80)
    ap.add_argument("--samples", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "move_rate.json")
    args = ap.parse_args()
    from qwenrl.models import load_policy
    from qwenrl.world.grammar import sample_edit
    from qwenrl.world.scene import render
    from training.common import VelocityModel, encode_items
    from training.configs import lr_at

    torch.manual_seed(args.seed)
    policy = load_policy(args.model if Path(args.model).is_absolute() else ROOT / args.model)
    model = VelocityModel(policy)
    params = [p for p in policy.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.0)
    rng = np.random.default_rng(args.seed)
    curve = [{"updates": 0, "move": move_accuracy(policy, args.samples)}]
    print(f"updates 0: held-out move {100 * curve[0]['move']:.1f}%", flush=True)
    t0, losses = time.perf_counter(), []
    for u in range(1, args.updates + 1):
        for g in opt.param_groups:  # a cosine toward 0.2 × lr (the editing config's floor), one step past the last as pretraining has it
            g["lr"] = lr_at(u - 1, args.lr, 0, args.updates + 1, "cosine", 0.2)
        items = [sample_edit(rng, family="move", split="train") for _ in range(args.batch)]
        with torch.no_grad():
            x0 = policy.encode_images(np.stack([render(it.target) for it in items])).float()
            cond = encode_items(policy, items)
            null = encode_items(policy, items, null=True)
        drop = torch.as_tensor(rng.random(args.batch) < 0.1)
        cond = cond.where(drop, null)
        sigma = torch.sigmoid(torch.as_tensor(rng.standard_normal(args.batch), dtype=torch.float32)).clamp(1e-4, 1 - 1e-4)
        noise = torch.as_tensor(rng.standard_normal(x0.shape), dtype=torch.float32)
        s = sigma.view(-1, *([1] * (x0.ndim - 1)))
        loss = ((model((1 - s) * x0 + s * noise, sigma, cond) - (noise - x0)) ** 2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        losses.append(float(loss.detach()))
        if u % args.eval_every == 0 or u == args.updates:
            acc = move_accuracy(policy, args.samples)
            curve.append({"updates": u, "move": acc, "loss": float(np.mean(losses[-args.eval_every:])),
                          "train_seconds": time.perf_counter() - t0})
            print(f"updates {u}: held-out move {100 * acc:.1f}%, loss {curve[-1]['loss']:.4f}", flush=True)
    out = {"what": "held-out move accuracy under supervised flow matching on exact target renders (docs/training.md, Round six)",
           "command": "python benchmarks/move_rate.py " + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if k != "out"),
           "samples_per_prompt": args.samples, "curve": curve}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
