"""Pretrain the bundled Shapes model from the grammar: autoencoder first, then the denoiser.

Stage 1 trains the palette autoencoder (``AutoencoderKL``) to reconstruct scenes exactly.
Stage 2 freezes it and trains the MM-DiT velocity model and the text encoder jointly with
the rectified-flow loss on a 50/50 mix of text-to-image and editing examples drawn from the
grammar's ``train`` split (held-out colour-shape pairs never appear), with null-prompt
dropout for classifier-free guidance and an EMA of the weights.

Seeded and resumable: ``state.pt`` in the run folder (tensors and plain values only, read
with ``weights_only=True``) is written every ``save_every`` steps; rerunning the same
command continues from it. Exported checkpoints (EMA weights) go to ``RUN/checkpoints/``.

    python -m training.pretrain --config training/configs/shapes_pretrain.yaml --run runs/pretrain

``init: CHECKPOINT`` goes on from a checkpoint instead (continued pretraining: its autoencoder is
kept and stage 1 skipped), and ``--publish DEST`` copies the last export to a bundled folder:

    python -m training.pretrain --config training/configs/shapes_pretrain_even.yaml --run runs/pretrain-even9k \
        --publish data/models/shapes-base
"""

from __future__ import annotations

import copy
import json
import math
import shutil
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import yaml

from qwenrl.models.base import Conditioning
from qwenrl.models.shapes import ShapesPolicy
from qwenrl.world.grammar import EDIT_FAMILIES, sample_edit, sample_t2i_prompt_in_split, scene_for_prompt
from qwenrl.world.scene import render, render_indices
from training.common import log, trainer_parser
from training.configs import PretrainConfig, lr_at, resolve_path  # noqa: F401 - PretrainConfig importable from here as before


def scene_batch(rng: np.random.Generator, n: int) -> np.ndarray:
    """Palette-index images of training scenes (both tasks' scenes), (n, H, W)."""
    out = []
    for _ in range(n):
        if rng.random() < 0.5:
            p = sample_t2i_prompt_in_split(rng, "train")
            out.append(render_indices(scene_for_prompt(p, rng)))
        else:
            e = sample_edit(rng, split="train")
            out.append(render_indices(e.target if rng.random() < 0.5 else e.source))
    return np.stack(out)


def example_batch(rng: np.random.Generator, n: int, edit_fraction: float, edit_families: str = "grammar"):
    """(texts, target images, source images or None per example) from the train split; edits in the
    grammar's own mix, or with ``edit_families`` even, each family drawn first and as often."""
    texts, targets, sources = [], [], []
    for _ in range(n):
        if rng.random() < edit_fraction:
            family = EDIT_FAMILIES[rng.integers(len(EDIT_FAMILIES))] if edit_families == "even" else None
            e = sample_edit(rng, family=family, split="train")
            texts.append(e.instruction)
            targets.append(render(e.target))
            sources.append(render(e.source))
        else:
            p = sample_t2i_prompt_in_split(rng, "train")
            texts.append(p.text)
            targets.append(render(scene_for_prompt(p, rng)))
            sources.append(None)
    return texts, np.stack(targets), sources


def denoiser_lr(step: int, cfg: PretrainConfig) -> float:
    """The denoiser's learning rate: warm-up, then a cosine to ``lr · min_lr_ratio`` that would end
    one step past the last (``lr_at`` with ``steps + 1``: the schedule this base was trained with)."""
    return lr_at(step, cfg.lr, cfg.warmup_steps, cfg.steps + 1, "cosine", cfg.min_lr_ratio)


def save_state(run: Path, state: dict) -> None:
    tmp = run / "state.pt.tmp"
    torch.save(state, tmp)
    tmp.replace(run / "state.pt")


def train_autoencoder(policy: ShapesPolicy, cfg: PretrainConfig, run: Path, state: dict | None) -> None:
    vae = policy.vae
    vae.requires_grad_(True)
    opt = torch.optim.Adam(vae.parameters(), lr=cfg.ae_lr)
    step = 0
    if state and state.get("stage") == "ae":
        vae.load_state_dict(state["vae"])
        opt.load_state_dict(state["opt"])
        step = state["step"]
    val = torch.as_tensor(scene_batch(np.random.default_rng(10_000 + cfg.seed), 256))
    n_pal = policy.config["palette_size"]
    t0, start = time.time(), step
    while step < cfg.ae_steps:
        # Randomness is a function of (seed, stage, step), so a resumed run draws what it would have.
        rng = np.random.default_rng((cfg.seed, 0, step))
        gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
        idx = torch.as_tensor(scene_batch(rng, cfg.ae_batch_size))
        x = F.one_hot(idx, n_pal).permute(0, 3, 1, 2).float()
        lr = cfg.ae_lr * min(1.0, (step + 1) / 100) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * step / cfg.ae_steps)))
        for g in opt.param_groups:
            g["lr"] = lr
        post = vae.encode(x).latent_dist
        logits = vae.decode(post.sample(generator=gen)).sample
        ce = F.cross_entropy(logits, idx)
        kl = post.kl().mean() / post.mean[0].numel()
        loss = ce + cfg.ae_kl_weight * kl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        opt.step()
        step += 1
        if step % cfg.log_every == 0 or step == cfg.ae_steps:
            with torch.no_grad():
                pred = vae.decode(vae.encode(F.one_hot(val, n_pal).permute(0, 3, 1, 2).float()).latent_dist.mode()).sample.argmax(1)
            pix = (pred == val).float().mean().item()
            exact = (pred == val).flatten(1).all(1).float().mean().item()
            log("pretrain", f"ae step {step}/{cfg.ae_steps} ce {ce.item():.4f} kl {kl.item():.2f} val pixel acc {pix:.5f} exact {exact:.3f} ({(time.time()-t0)/max(1, step - start):.3f}s/step)")
            with open(run / "metrics.jsonl", "a") as f:
                f.write(json.dumps({"stage": "ae", "step": step, "ce": ce.item(), "kl": kl.item(), "val_pixel_acc": pix, "val_exact": exact}) + "\n")
        if step % cfg.save_every == 0 or step == cfg.ae_steps:
            save_state(run, {"stage": "ae", "step": step, "vae": vae.state_dict(), "opt": opt.state_dict()})
    vae.requires_grad_(False)
    # Normalise latents to zero mean, unit variance over training scenes.
    with torch.no_grad():
        idx = torch.as_tensor(scene_batch(np.random.default_rng(20_000 + cfg.seed), 1024))
        z = vae.encode(F.one_hot(idx, n_pal).permute(0, 3, 1, 2).float()).latent_dist.mode()
    policy.config["latent_shift"] = float(z.mean())
    policy.config["latent_scale"] = float(z.std())
    log("pretrain", f"latent shift {policy.config['latent_shift']:.4f} scale {policy.config['latent_scale']:.4f}")


@torch.no_grad()
def build_pool(policy: ShapesPolicy, cfg: PretrainConfig, run: Path) -> tuple[list[str], torch.Tensor, torch.Tensor]:
    """Texts, target latents and source latents (zeros for text-to-image) of ``cfg.pool_size``
    training examples, cached in the run folder so that a resumed run reuses them."""
    from safetensors.torch import load_file, save_file

    f, ftxt = run / "pool.safetensors", run / "pool_texts.json"
    if f.exists() and ftxt.exists():
        t = load_file(str(f))
        return json.loads(ftxt.read_text()), t["x0"], t["source"]
    rng = np.random.default_rng(cfg.seed + 2)
    texts, x0s, srcs = [], [], []
    chunk = 256
    for start in range(0, cfg.pool_size, chunk):
        n = min(chunk, cfg.pool_size - start)
        tx, targets, sources = example_batch(rng, n, cfg.edit_fraction, cfg.edit_families)
        x0 = policy.encode_images(targets)
        src = torch.zeros_like(x0)
        has_src = [i for i, s in enumerate(sources) if s is not None]
        if has_src:
            src[has_src] = policy.encode_images(np.stack([sources[i] for i in has_src]))
        texts += tx
        x0s.append(x0)
        srcs.append(src)
        if (start // chunk) % 40 == 0:
            log("pretrain", f"encoding example pool {start + n}/{cfg.pool_size}")
    # Contiguous in memory as on disk: the encoder returns channels-last latents, and the denoiser's
    # kernels round differently on the two layouts, so a resumed run (which reads the file) would drift.
    x0, src = torch.cat(x0s).contiguous(), torch.cat(srcs).contiguous()
    save_file({"x0": x0, "source": src}, str(f))
    ftxt.write_text(json.dumps(texts))
    return texts, x0, src


def train_denoiser(policy: ShapesPolicy, cfg: PretrainConfig, run: Path, state: dict | None) -> None:
    params = policy.trainable_parameters()
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr, betas=(0.9, 0.99))
    ema = copy.deepcopy(policy).requires_grad_(False)
    step = 0
    if state and state.get("stage") == "dit":
        policy.load_state_dict(state["model"])
        ema.load_state_dict(state["ema"])
        opt.load_state_dict(state["opt"])
        step = state["step"]
    pool = build_pool(policy, cfg, run) if cfg.pool_size else None
    t0, losses = time.time(), []
    start = step
    while step < cfg.steps:
        rng = np.random.default_rng((cfg.seed, 1, step))
        gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
        if pool is not None:
            pick = rng.integers(0, len(pool[0]), cfg.batch_size)
            texts = [pool[0][i] for i in pick]
            x0, src = pool[1][pick], pool[2][pick]
        else:
            texts, targets, sources = example_batch(rng, cfg.batch_size, cfg.edit_fraction, cfg.edit_families)
            with torch.no_grad():
                x0 = policy.encode_images(targets)
                src = torch.zeros_like(x0)
                has_src = [i for i, s in enumerate(sources) if s is not None]
                if has_src:
                    src[has_src] = policy.encode_images(np.stack([sources[i] for i in has_src]))
        drop = rng.random(len(texts)) < cfg.text_dropout
        texts = ["" if d else t for t, d in zip(texts, drop)]
        hidden, pooled = policy._encode_text(texts)
        cond = Conditioning({"hidden": hidden, "pooled": pooled, "source": src})
        sigma = torch.sigmoid(torch.randn(len(texts), generator=gen))  # logit-normal(0, 1), as SD3
        noise = torch.randn(x0.shape, generator=gen)
        s = sigma.view(-1, 1, 1, 1)
        xt = (1 - s) * x0 + s * noise
        v = policy.velocity(xt, sigma, cond)
        loss = F.mse_loss(v, noise - x0)
        lr = denoiser_lr(step, cfg)
        for g in opt.param_groups:
            g["lr"] = lr
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        opt.step()
        with torch.no_grad():
            d = min(cfg.ema_decay, (1 + step) / (10 + step))
            for pe, pm in zip(ema.parameters(), policy.parameters()):
                pe.lerp_(pm, 1 - d)
        step += 1
        losses.append(loss.item())
        if step % cfg.log_every == 0 or step == cfg.steps:
            rate = (step - start) / (time.time() - t0)
            log("pretrain", f"dit step {step}/{cfg.steps} loss {np.mean(losses):.4f} lr {lr:.2e} gnorm {gnorm:.2f} ({rate:.2f} steps/s)")
            with open(run / "metrics.jsonl", "a") as f:
                f.write(json.dumps({"stage": "dit", "step": step, "loss": float(np.mean(losses)), "lr": lr, "grad_norm": float(gnorm), "steps_per_s": rate}) + "\n")
            losses = []
        if step % cfg.save_every == 0 or step == cfg.steps:
            save_state(run, {"stage": "dit", "step": step, "model": policy.state_dict(), "ema": ema.state_dict(), "opt": opt.state_dict(),
                             "config": json.dumps(policy.config)})
        if step % cfg.export_every == 0 or step == cfg.steps:
            ema.save(run / "checkpoints" / f"step-{step:06d}", **export_manifest(policy, cfg, step))


def export_manifest(policy: ShapesPolicy, cfg: PretrainConfig, step: int) -> dict:
    """An exported checkpoint's manifest; one that goes on from ``init`` names it as parent, with its
    lineage and its own pretraining step count, and counts its steps on from there."""
    name = f"shapes-base@step{step}"
    manifest = dict(name=name, lineage=[name], parent=None, tasks=["t2i", "edit"], task="t2i+edit", step=step, trainer="pretrain")
    if cfg.init:
        parent = getattr(policy, "manifest", {})
        before = int(parent.get("step") or 0)
        name = f"{parent.get('name', 'init')}+{step}"
        manifest.update(name=name, lineage=[*parent.get("lineage", []), name], parent=parent.get("name"), step=before + step,
                        pretrain_init=cfg.init, edit_families=cfg.edit_families)
    return manifest


def main(argv: list[str] | None = None) -> None:
    ap = trainer_parser(__doc__, "training/configs/shapes_pretrain.yaml", "resumed when it has state.pt")
    ap.add_argument("--publish", metavar="DEST", help="when done, copy the last export to DEST as a bundled base named after "
                    "DEST's folder, with this run's pretraining history (e.g. data/models/shapes-base)")
    args = ap.parse_args(argv)
    cfg = PretrainConfig.from_yaml(args.config, args.set)
    if args.publish:
        check_publish_dest(Path(args.publish))
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    run = Path(args.run)
    run.mkdir(parents=True, exist_ok=True)
    (run / "config.yaml").write_text(yaml.safe_dump(asdict(cfg)))
    torch.manual_seed(cfg.seed)
    state = torch.load(run / "state.pt", weights_only=True) if (run / "state.pt").exists() else None
    policy = ShapesPolicy.load(resolve_path(cfg.init)) if cfg.init else ShapesPolicy(cfg.model)
    if state and state.get("stage") == "dit":
        policy.config.update(json.loads(state["config"]))
        log("pretrain", f"resuming denoiser at step {state['step']}")
    elif cfg.init:
        log("pretrain", f"going on from {cfg.init} (step {policy.manifest.get('step')}): its autoencoder is kept")
        (run / "init_manifest.json").write_text(json.dumps(policy.manifest, indent=2))
    else:
        if state:
            log("pretrain", f"resuming autoencoder at step {state['step']}")
        train_autoencoder(policy, cfg, run, state)
        state = None
    train_denoiser(policy, cfg, run, state)
    log("pretrain", "done")
    if args.publish:
        dest = publish(run / "checkpoints" / f"step-{cfg.steps:06d}", Path(args.publish), cfg, args.config)
        log("pretrain", f"published {dest}")


def check_publish_dest(dest: Path) -> None:
    if dest.exists() and not (dest / "manifest.json").is_file():
        raise SystemExit(f"--publish {dest}: exists and is not a checkpoint folder; give a new folder or a checkpoint to replace")


def publish(checkpoint: Path, dest: Path, cfg: PretrainConfig, config_path: str | None) -> Path:
    """Copy an exported checkpoint to ``dest`` as a bundled base: named after the folder, no parent,
    its denoiser steps counted from scratch and its history (the ``init`` chain) in the manifest."""
    policy = ShapesPolicy.load(checkpoint)
    m, name = policy.manifest, dest.name
    own = f"{cfg.steps:,} {'more ' if cfg.init else ''}denoiser steps from {config_path or 'defaults'} ({cfg.edit_families} edit mix, lr {cfg.lr:g})"
    history, configs = [own], [config_path]
    if cfg.init:  # the init's manifest as the run first read it (dest may be the init folder itself)
        parent = json.loads((checkpoint.parents[1] / "init_manifest.json").read_text())
        history = [str(parent.get("pretrain_history") or f"{parent.get('name')} ({parent.get('step')} steps)"), "then " + own]
        configs.insert(0, parent.get("pretrain_config"))
    check_publish_dest(dest)
    tmp = dest.with_name(dest.name + ".publishing")
    policy.save(tmp, name=name, lineage=[name], parent=None, tasks=m["tasks"], task=m["task"], step=m["step"], trainer="pretrain",
                pretrain_config=" then ".join(str(c) for c in configs if c) or None, pretrain_history="; ".join(history),
                run_checkpoint=m.get("name"))
    if dest.exists():
        shutil.rmtree(dest)
    tmp.replace(dest)
    return dest


if __name__ == "__main__":
    main()
