"""How much learning signal one GRPO batch carries, per reward and prompt family.

For each of ``--batches`` independent batches (``--prompts`` prompts × ``--group`` samples,
rolled out exactly as ``training.grpo`` does, without guidance), the policy gradient of the
GRPO objective is computed for several rewards on the *same* rollouts. The mean pairwise
cosine between batches measures how much of one batch's gradient the others share: near 0,
a step is mostly noise and moves the model at random. (On the bundled base it is near 0 for
every reward here, the rightward one included, which GRPO still moves within 15 steps: noisy
steps can add up along a direction every prompt shares.)

Rewards compared:

* ``rightward``: the mean column of the drawn objects (easy, prompt-independent; GRPO moves it
  within a few steps — ``tests/test_grpo_learns.py``);
* ``composite``: the Shapes text-to-image reward (``training/configs/rewards/shapes_t2i.yaml``);
* ``strict``: the strict checker alone (pass/fail).

    python benchmarks/grpo_signal.py [--batches 6] [--families all position counting]

Prints a table and writes benchmarks/results/grpo_signal.json. Takes a few minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import itertools
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "grpo_signal.json"


def rightward(image: np.ndarray) -> float:
    cols = np.nonzero(image.astype(int).sum(-1) < 700)[1]
    return float(cols.mean() / image.shape[1]) if len(cols) else 0.5


def batch_gradients(policy, params, cfg, reward, family: str | None, batch: int) -> dict[str, torch.Tensor]:
    """Policy gradients of one batch's GRPO loss, one per reward, on shared rollouts."""
    from qwenrl.rewards import Sample
    from training.common import VelocityModel, draw_items
    from training.grpo import group_advantages, grpo_loss, rollout_groups

    P, G = cfg.num_prompts, cfg.group_size
    items = draw_items("t2i", P, 1000 + batch, 0, family_weights={family: 1.0} if family else None)
    (piece,) = rollout_groups(policy, items, np.zeros(P, dtype=bool), 0, P, cfg, policy.default_shift, 10_000 + batch)
    judged = reward([Sample.from_spec(im, it) for im, it in zip(piece.images, piece.items)])
    rewards = {
        "rightward": np.array([rightward(im) for im in piece.images]),
        "composite": np.array([j.score for j in judged], dtype=np.float64),
        "strict": np.array([j.parts["strict"] for j in judged], dtype=np.float64),
    }

    velocity = VelocityModel(policy)  # what the trainer differentiates
    out = {}
    rows = torch.arange(P * G)
    for name, r in rewards.items():
        adv = torch.as_tensor(group_advantages(r.reshape(P, G), cfg.std_mode, cfg.adv_clip_max).ravel(), dtype=torch.float32)
        for p in params:
            p.grad = None
        for t in cfg.trained_steps():
            loss, _ = grpo_loss(velocity, None, piece, rows, torch.full((P * G,), t), adv,
                                noise_level=cfg.noise_level, clip_range=cfg.clip_range, beta=0.0)
            loss.mean().backward()
        out[name] = torch.cat([p.grad.flatten() for p in params]).clone()
        out[name + "/reward"] = torch.tensor(float(np.nanmean(r)))
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=str(REPO / "data" / "models" / "shapes-base"))
    ap.add_argument("--batches", type=int, default=6, help="independent batches per family (pairs = n(n-1)/2)")
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--group", type=int, default=8)
    ap.add_argument("--families", nargs="+", default=["all", "counting", "position"], help="'all' draws families uniformly")
    ap.add_argument("--share-noise", action="store_true", help="the G samples of a prompt start from the same initial noise")
    ap.add_argument("--noise-level", type=float, default=None, help="SDE noise level (default: the config's)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    if args.batches < 3:
        ap.error("--batches must be at least 3 (a standard error needs two or more pairs)")
    torch.set_num_threads(args.threads)

    from qwenrl.models import load_policy
    from qwenrl.rewards import load_reward
    from training.common import make_trainable
    from training.grpo import GRPOConfig

    cfg = GRPOConfig.from_yaml(REPO / "training" / "configs" / "shapes_grpo_t2i.yaml", model=args.model,
                               num_prompts=args.prompts, group_size=args.group, rollout_batch_prompts=args.prompts, cfg_mode="none",
                               share_noise=args.share_noise, **({"noise_level": args.noise_level} if args.noise_level else {}))
    policy = load_policy(args.model)
    params = make_trainable(policy, "full", 16, None, None, False)
    reward = load_reward(REPO / "training" / "configs" / "rewards" / "shapes_t2i.yaml")

    t0 = time.perf_counter()
    table = {}
    for family in args.families:
        grads: dict[str, list[torch.Tensor]] = {}
        for b in range(args.batches):
            for k, v in batch_gradients(policy, params, cfg, reward, None if family == "all" else family, b).items():
                grads.setdefault(k, []).append(v)
        for name in ("rightward", "composite", "strict"):
            cos = [float(torch.nn.functional.cosine_similarity(a, b, dim=0)) for a, b in itertools.combinations(grads[name], 2)]
            table[f"{family}/{name}"] = {
                "mean_cosine": float(np.mean(cos)),
                "sem": float(np.std(cos, ddof=1) / np.sqrt(len(cos))),
                "pairs": len(cos),
                "mean_reward": float(np.mean([float(r) for r in grads[name + "/reward"]])),
            }
            row = table[f"{family}/{name}"]
            print(f"{family:>10} {name:>10}  cosine {row['mean_cosine']:+.4f} ± {row['sem']:.4f} (sem, {row['pairs']} pairs)"
                  f"  mean reward {row['mean_reward']:.3f}", flush=True)
    result = {
        "machine": {"cpus": torch.get_num_threads(), "python": platform.python_version(), "platform": platform.platform()},
        "settings": {"model": args.model, "batches": args.batches, "prompts": args.prompts, "group_size": args.group,
                     "num_steps": cfg.num_steps, "sde_window": cfg.sde_window, "noise_level": cfg.noise_level,
                     "share_noise": cfg.share_noise},
        "seconds": time.perf_counter() - t0,
        "gradient_cosine": table,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
