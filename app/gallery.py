"""The gallery worker: every model's images of the arena pool, scored with rationales.

For each task a model does, it makes one image per (prompt, seed) of the arena pool
(``app.pool``: which prompts, the arena seeds and the showcase seed), from the same initial noise
for every model (the noise depends only on the seed, never on the batch), and stores each with
the task's composite judgement (total, parts, rationale: the reward ``app.pool.composite_reward``,
loaded once by the workspace). The reward inspector shows the showcase images with model names;
the arena only the others, so an anonymous battle's image is never shown named anywhere.

A worker below the workspace it fills (it imports ``app.workspace``; nothing imports it back),
run as a subprocess so the studio's server never imports torch:

    python -m app.gallery --workspace ./workspace            # every model still pending
    python -m app.gallery --workspace ./workspace --model shapes-base

Progress goes to the store's gallery status rows (the UI reads them) and to stderr.
"""

from __future__ import annotations

import hashlib
import os
import signal
import sys
import threading
import time
from typing import Any

import numpy as np

from qwenrl.tasks import TASKS

from .pool import PoolItem, composite_reward, model_slug, reward_path
from .workspace import Workspace, worker_args

def initial_noise(seeds: list[int], latent_shape: tuple[int, ...]):
    """One standard-normal latent per seed, each from its own generator (batch-independent)."""
    import torch

    return torch.stack([
        torch.randn(latent_shape, generator=torch.Generator().manual_seed(int(s)), dtype=torch.float32)
        for s in seeds
    ])


def generate(policy, items: list[PoolItem], seeds: list[int], *, num_steps: int, guidance_scale: float,
             batch_size: int = 32) -> np.ndarray:
    """Images (N, H, W, 3) uint8 for (item, seed) pairs by ODE sampling; edits use their source
    (``item.record["source"]``, a scene)."""
    import torch

    from qwenrl.sampling import rollout
    from qwenrl.world.scene import Scene, render

    out = []
    with torch.no_grad():
        for start in range(0, len(items), batch_size):
            chunk, chunk_seeds = items[start:start + batch_size], seeds[start:start + batch_size]
            texts = [it.text for it in chunk]
            # an edit's source scene, from the pool record (a live edit's record holds only it)
            sources = (np.stack([render(Scene.from_dict(it.record["source"])) for it in chunk])
                       if chunk[0].task == "edit" else None)
            cond = policy.encode_prompts(texts, sources)
            null = policy.null_conditioning(len(texts), sources) if guidance_scale != 1.0 else None
            traj = rollout(
                policy, cond, num_steps=num_steps, shift=policy.default_shift, guidance_scale=guidance_scale,
                null_cond=null, noise_level=0.0,
                initial_noise=initial_noise(chunk_seeds, tuple(policy.latent_shape())).to(policy.device),
                return_trajectory=False,
            )
            out.append(policy.decode(traj.final))
    return np.concatenate(out) if out else np.zeros((0, 32, 32, 3), dtype=np.uint8)


def score(task: str, items: list[PoolItem], images: np.ndarray, reward: Any = None) -> list:
    """Composite-reward judgements (score, parts, rationale) for the images of ``items``."""
    from qwenrl.rewards import Sample, load_reward

    reward = reward or load_reward(reward_path(composite_reward(task)), cache=False)
    return reward([Sample.from_spec(img, it.spec()) for it, img in zip(items, images)])


def fill_model(ws: Workspace, name: str, *, log=print) -> int:
    """Generate and score every missing gallery image of model ``name``; returns how many.
    Resumable: images already in the store are skipped, so a fill interrupted by a restart
    continues where it stopped."""
    from qwenrl.evaluation import policy_sampling_defaults
    from qwenrl.imageio import save_png
    from qwenrl.models import load_policy
    from qwenrl.progress import time_left
    from qwenrl.world.scene import render

    model = ws.store.get_model(name)
    if model is None:
        raise ValueError(f"no model {name!r} in the store")
    todo = {task: ws.missing_samples(name, task) for task in TASKS if task in model["tasks"]}
    total = sum(len(v) for v in todo.values())
    if not total:
        return 0
    t0 = time.time()
    policy = load_policy(model["source"])
    policy.eval()
    defaults = policy_sampling_defaults(policy)
    steps = ws.num_steps or defaults["num_steps"]
    done = 0
    folder = ws.gallery_dir / model_slug(name)
    for task, pairs in todo.items():
        for start in range(0, len(pairs), ws.batch_size):
            chunk = pairs[start:start + ws.batch_size]
            items, seeds = [p[0] for p in chunk], [p[1] for p in chunk]
            images = generate(policy, items, seeds, num_steps=steps, guidance_scale=defaults["guidance_scale"],
                              batch_size=ws.batch_size)
            judgements = score(task, items, images, reward=ws.reward(task))
            rows = []
            for it, seed, img, j in zip(items, seeds, images, judgements):
                if task == "edit":
                    src = ws.source_path(it.id)
                    if not src.exists():
                        save_png(render(it.spec().source), src)
                path = save_png(img, folder / task / f"{it.id}-s{seed}.png")
                rows.append({
                    "model": name, "pool_id": it.id, "seed": seed,
                    "image_path": str(path.relative_to(ws.root)),
                    "content_hash": hashlib.sha256(np.ascontiguousarray(img).tobytes()).hexdigest()[:32],
                    "judgement": j.to_dict(),
                })
            ws.add_gallery_samples(rows)
            done += len(chunk)
            log(f"gallery {name}: {done}/{total} images ({time.time() - t0:.1f}s, {time_left(time.time() - t0, done, total)})")
    return done


def main(argv: list[str] | None = None) -> int:
    args = worker_args("Fill the arena gallery of a studio workspace.", "a model to fill (default: every pending one)", argv)
    ws = Workspace.open(args.workspace, register_bundled=False)

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    failed = 0
    tried: set[str] = set()
    while True:  # models registered while this runs are picked up too
        names = [n for n in (args.model or ws.pending_gallery_models()) if n not in tried]
        if not names:
            break
        for name in names:
            tried.add(name)
            try:
                fill_model(ws, name, log=log)
            except Exception as exc:  # one broken checkpoint must not stop the others
                failed += 1
                ws.mark_gallery_failed(name, f"{type(exc).__name__}: {exc}")
                log(f"gallery {name}: failed: {type(exc).__name__}: {exc}")
                continue
            # the learned judge's verdicts beside the programmatic ones (app.learned_judge); a
            # judge that fails leaves the gallery as it is
            try:
                from app.learned_judge import judge_model

                judge_model(ws, name, log=log)
            except Exception as exc:
                log(f"learned judge {name}: failed: {type(exc).__name__}: {exc}")
        if args.model:
            break
    return 1 if failed else 0


def _exit_with_parent(parent: int, interval_s: float = 1.0) -> None:
    """Stop when the studio that started this filler is gone, even if it died without a word
    (SIGKILL): a new studio starts its own filler, which resumes from the store."""
    while os.getppid() == parent:
        time.sleep(interval_s)
    os.kill(os.getpid(), signal.SIGTERM)


if __name__ == "__main__":
    # the studio stops this filler with SIGTERM: unwind (the images stored so far stay stored)
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), name="parent-watch", daemon=True).start()
    sys.exit(main())
