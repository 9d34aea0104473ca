"""A GRPO step on an SD3.5-Medium-sized transformer with random weights, in bf16 on a GPU, with
either objective (Flow-GRPO or the forward-process one).

Nothing is downloaded: the denoiser is an ``SD3Transformer2DModel`` with SD3.5 Medium's
configuration (24 MM-DiT blocks, 13 of them dual-attention, 2.2B parameters) and random weights;
prompts become fixed random embeddings of the shapes SD3's encoders produce (333 × 4096 tokens,
2048 pooled); the reward is a fixed random function of the final latents. Everything else is the
trainer's own code: ``qwenrl.sampling.rollout`` (SDE window, CFG), ``training.grpo``'s
``group_advantages`` and ``grpo_loss`` (clipped ratio + KL to the LoRA-disabled reference),
one backward per timestep, gradient clipping and AdamW on LoRA weights (fp32) over bf16 weights;
with ``--objective nft``: ODE rollouts by the old policy (a lagging copy of the LoRA weights,
``training.common.EMA``), ``nft_optimality`` and ``nft_batch_loss`` (CFG-free, 10% text dropout),
``--epochs`` fresh (σ, ε) draws per step.

    python benchmarks/grpo_gpu.py                      # 512², 2 prompts × 8, 10 steps, CFG 4.5, LoRA r32
    python benchmarks/grpo_gpu.py --objective nft --num-steps 14
    python benchmarks/grpo_gpu.py --objective both     # the two objectives, alternating steps
    python benchmarks/grpo_gpu.py --resolution 1024 --prompts 1 --gradient-checkpointing
    python benchmarks/grpo_gpu.py --cpu-smoke          # tiny dimensions on the CPU: checks the script only

Writes benchmarks/results/grpo_gpu.json (not with --cpu-smoke). Exits with a message when no
GPU is visible.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import statistics
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import torch

from qwenrl.models.base import Conditioning, Policy
from qwenrl.sampling import guided_velocity, rollout
from training.common import EMA
from training.grpo import RolloutPiece, group_advantages, grpo_loss, nft_batch_loss, nft_draws, nft_optimality

RESULTS = Path(__file__).resolve().parent / "results" / "grpo_gpu.json"
# stabilityai/stable-diffusion-3.5-medium, transformer/config.json
SD35_MEDIUM = dict(
    sample_size=128, patch_size=2, in_channels=16, out_channels=16, num_layers=24, attention_head_dim=64,
    num_attention_heads=24, joint_attention_dim=4096, caption_projection_dim=1536, pooled_projection_dim=2048,
    pos_embed_max_size=384, dual_attention_layers=tuple(range(13)), qk_norm="rms_norm",
)
TINY = dict(
    sample_size=8, patch_size=2, in_channels=16, out_channels=16, num_layers=2, attention_head_dim=8,
    num_attention_heads=2, joint_attention_dim=32, caption_projection_dim=16, pooled_projection_dim=16,
    pos_embed_max_size=16, dual_attention_layers=(0,), qk_norm="rms_norm",
)
TEXT_TOKENS = 333  # 77 CLIP tokens + 256 T5 tokens, as StableDiffusion3Pipeline concatenates them


class SyntheticSD3Policy(Policy):
    """An SD3 transformer with random weights behind the Policy interface; prompts map to fixed
    random embeddings (a function of the text), so nothing needs downloading."""

    tasks = ("t2i",)
    default_shift = 3.0

    def __init__(self, transformer, latent_hw: int, text_tokens: int, dtype: torch.dtype) -> None:
        super().__init__()
        self.transformer = transformer
        self.latent_hw = latent_hw
        self.text_tokens = text_tokens
        self.dtype = dtype
        self.lora = None

    def _embed(self, text: str, shape: tuple[int, ...]) -> torch.Tensor:
        g = torch.Generator().manual_seed(zlib.crc32(text.encode()))
        return torch.randn(shape, generator=g)

    def encode_prompts(self, texts, sources=None) -> Conditioning:
        cfg = self.transformer.config
        embeds = torch.stack([self._embed(t, (self.text_tokens, cfg.joint_attention_dim)) for t in texts])
        pooled = torch.stack([self._embed(t + "/pooled", (cfg.pooled_projection_dim,)) for t in texts])
        return Conditioning({"embeds": embeds.to(self.device, self.dtype), "pooled": pooled.to(self.device, self.dtype)})

    def null_conditioning(self, batch_size, sources=None) -> Conditioning:
        cfg = self.transformer.config
        return Conditioning({
            "embeds": torch.zeros(batch_size, self.text_tokens, cfg.joint_attention_dim, device=self.device, dtype=self.dtype),
            "pooled": torch.zeros(batch_size, cfg.pooled_projection_dim, device=self.device, dtype=self.dtype),
        })

    def velocity(self, latents, sigma, cond) -> torch.Tensor:
        sigma = torch.as_tensor(sigma, device=self.device, dtype=torch.float32).reshape(-1).expand(latents.shape[0])
        out = self.transformer(hidden_states=latents.to(self.dtype), timestep=(sigma * 1000).to(self.dtype),
                               encoder_hidden_states=cond["embeds"], pooled_projections=cond["pooled"], return_dict=False)[0]
        return out.float()

    def latent_shape(self) -> tuple[int, ...]:
        return (self.transformer.config.in_channels, self.latent_hw, self.latent_hw)

    def decode(self, latents) -> np.ndarray:
        raise NotImplementedError("the benchmark scores latents directly")

    def encode_images(self, images) -> torch.Tensor:
        raise NotImplementedError

    def save(self, path, **manifest):
        raise NotImplementedError

    def enable_lora(self, rank: int) -> None:
        from peft import LoraConfig

        self.transformer.requires_grad_(False)
        targets = ["to_q", "to_k", "to_v", "to_out.0", "add_q_proj", "add_k_proj", "add_v_proj", "to_add_out"]
        self.transformer.add_adapter(LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=targets, init_lora_weights="gaussian"))
        for name, p in self.transformer.named_parameters():
            if "lora_" in name:
                p.data = p.data.float()
                p.requires_grad_(True)
        self.lora = {"rank": rank}

    @contextlib.contextmanager
    def disabled_adapters(self):
        self.transformer.disable_adapters()
        try:
            yield
        finally:
            self.transformer.enable_adapters()


def build(args, device: torch.device) -> SyntheticSD3Policy:
    from diffusers import SD3Transformer2DModel

    config = TINY if args.cpu_smoke else SD35_MEDIUM
    dtype = torch.float32 if args.cpu_smoke else torch.bfloat16
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            torch.manual_seed(0)
            transformer = SD3Transformer2DModel(**config)
    finally:
        torch.set_default_dtype(previous)
    if args.gradient_checkpointing:
        transformer.enable_gradient_checkpointing()
    latent_hw = 8 if args.cpu_smoke else args.resolution // 8
    policy = SyntheticSD3Policy(transformer, latent_hw, 8 if args.cpu_smoke else TEXT_TOKENS, dtype).eval()
    policy.enable_lora(args.lora_rank)
    return policy


def grpo_step(policy, optimizer, params, reward_w, args, step: int) -> dict[str, float]:
    """One GRPO step; returns its timings."""
    sync = torch.cuda.synchronize if policy.device.type == "cuda" else (lambda: None)
    P, G = args.prompts, args.group_size
    t0 = time.perf_counter()
    cond = policy.encode_prompts([f"prompt {step} {i}" for i in range(P)]).repeat_interleave(G)
    null = policy.null_conditioning(P * G) if args.guidance > 1 else None
    traj = rollout(policy, cond, num_steps=args.num_steps, shift=3.0, guidance_scale=args.guidance, null_cond=null,
                   noise_level=0.7, sde_window=(0, args.sde_steps), generator=step, group_size=G)
    rewards = torch.sigmoid(traj.final.flatten(1) @ reward_w).reshape(P, G).cpu().numpy()
    advantages = torch.as_tensor(group_advantages(rewards).ravel(), dtype=torch.float32, device=policy.device)
    sync()
    t1 = time.perf_counter()

    piece = RolloutPiece(index=np.arange(P * G), latents=traj.latents, log_probs=traj.log_probs, sigmas=traj.sigmas, cond=cond,
                         null_cond=null, guidance_scale=args.guidance, images=np.zeros((0,)), items=[])
    model = lambda *a: guided_velocity(policy, *a)  # noqa: E731

    def reference(*a):
        with policy.disabled_adapters():
            return guided_velocity(policy, *a)

    trained = traj.sde_steps()
    rng = np.random.default_rng(step)
    for share in np.array_split(rng.permutation(P * G), args.updates):
        order = np.argsort(rng.random((len(share), len(trained))), axis=1)
        for pos in range(len(trained)):
            for i in range(0, len(share), args.train_batch):
                rows = torch.as_tensor(share[i : i + args.train_batch], device=policy.device)
                t = torch.as_tensor([trained[k] for k in order[i : i + args.train_batch, pos]], device=policy.device)
                loss, _ = grpo_loss(model, reference, piece, rows, t, advantages[rows], noise_level=0.7, clip_range=1e-4, beta=0.004)
                (loss.sum() / (len(share) * len(trained))).backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    sync()
    t2 = time.perf_counter()
    return {"step_seconds": t2 - t0, "rollout_seconds": t1 - t0, "update_seconds": t2 - t1}


def nft_step(policy, optimizer, params, reward_w, args, step: int, old: EMA) -> dict[str, float]:
    """One step of the forward-process objective; returns its timings."""
    sync = torch.cuda.synchronize if policy.device.type == "cuda" else (lambda: None)
    P, G = args.prompts, args.group_size
    t0 = time.perf_counter()
    cond = policy.encode_prompts([f"prompt {step} {i}" for i in range(P)]).repeat_interleave(G)
    null = policy.null_conditioning(P * G)
    with torch.no_grad(), old.applied():  # rollouts by the old policy
        traj = rollout(policy, cond, num_steps=args.num_steps, shift=3.0, guidance_scale=args.guidance,
                       null_cond=null if args.guidance > 1 else None, noise_level=0.0, generator=step, group_size=G,
                       return_trajectory=False)
    rewards = torch.sigmoid(traj.final.flatten(1) @ reward_w).reshape(P, G).cpu().numpy()
    optimality = torch.as_tensor(nft_optimality(group_advantages(rewards, "none").ravel()), dtype=torch.float32, device=policy.device)
    sync()
    t1 = time.perf_counter()

    piece = RolloutPiece(index=np.arange(P * G), latents=traj.final, log_probs=None, sigmas=None, cond=cond, null_cond=null,
                         guidance_scale=args.guidance, images=np.zeros((0,)), items=[])
    cfg = argparse.Namespace(seed=0, nft_timesteps="logit_normal", nft_logit_mean=0.0, nft_logit_std=1.0, nft_text_dropout=0.1)
    model = lambda *a: guided_velocity(policy, *a)  # noqa: E731

    def old_velocity(*a):
        with old.applied():
            return guided_velocity(policy, *a)

    rng = np.random.default_rng(step)
    for epoch in range(args.epochs):
        draws = nft_draws(cfg, step, epoch, P * G, tuple(policy.latent_shape()), policy.device)
        for share in np.array_split(rng.permutation(P * G), args.updates):
            for i in range(0, len(share), args.train_batch):
                rows = torch.as_tensor(share[i : i + args.train_batch], device=policy.device)
                loss, _ = nft_batch_loss(model, old_velocity, None, piece, rows, draws, optimality[rows], nft_beta=1.0, beta=0.0,
                                         guided_loss=False)
                (loss.sum() / len(share)).backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
    old.update(step, decay=0.5)
    sync()
    t2 = time.perf_counter()
    return {"step_seconds": t2 - t0, "rollout_seconds": t1 - t0, "update_seconds": t2 - t1}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--resolution", type=int, default=512, help="image side in pixels (latent side = resolution / 8)")
    ap.add_argument("--prompts", type=int, default=2, help="prompts per step on this GPU")
    ap.add_argument("--group-size", type=int, default=8, help="samples per prompt")
    ap.add_argument("--num-steps", type=int, default=10, help="sampling steps")
    ap.add_argument("--sde-steps", type=int, default=5, help="SDE (trained) steps: the first N")
    ap.add_argument("--guidance", type=float, default=4.5, help="CFG scale (1: no guidance)")
    ap.add_argument("--lora-rank", type=int, default=32)
    ap.add_argument("--train-batch", type=int, default=8, help="samples per forward/backward in the update")
    ap.add_argument("--updates", type=int, default=2, help="optimizer steps per GRPO step")
    ap.add_argument("--steps", type=int, default=3, help="GRPO steps per objective (the first is not timed)")
    ap.add_argument("--objective", choices=["flow_grpo", "nft", "both"], default="flow_grpo",
                    help="which objective's step to time; both alternates them step by step")
    ap.add_argument("--epochs", type=int, default=2, help="nft: fresh (σ, ε) draws per step, each of --updates optimizer steps")
    ap.add_argument("--gradient-checkpointing", action="store_true")
    ap.add_argument("--cpu-smoke", action="store_true", help="tiny dimensions on the CPU; writes no results")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    if not args.cpu_smoke and not torch.cuda.is_available():
        sys.exit("benchmarks/grpo_gpu.py needs a CUDA GPU (none is visible); run it on a GPU machine, "
                 "or pass --cpu-smoke to check the script on the CPU with tiny dimensions")
    device = torch.device("cpu" if args.cpu_smoke else "cuda")

    t_build = time.perf_counter()
    policy = build(args, device)
    params = [p for p in policy.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4)
    reward_w = torch.randn(int(np.prod(policy.latent_shape())), generator=torch.Generator().manual_seed(1)).to(device)
    reward_w /= reward_w.norm()
    build_seconds = time.perf_counter() - t_build
    objectives = ["flow_grpo", "nft"] if args.objective == "both" else [args.objective]
    old = EMA(params, 0.5) if "nft" in objectives else None
    timings: dict[str, list[dict[str, float]]] = {o: [] for o in objectives}
    peak: dict[str, float | None] = {}
    for step in range(args.steps):
        for objective in objectives:  # alternating, so both see the same machine
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats()
            if objective == "nft":
                timings[objective].append(nft_step(policy, optimizer, params, reward_w, args, step, old))
            else:
                timings[objective].append(grpo_step(policy, optimizer, params, reward_w, args, step))
            if device.type == "cuda":
                peak[objective] = max(peak.get(objective) or 0.0, torch.cuda.max_memory_allocated() / 2**30)
    samples = args.prompts * args.group_size
    results = [summary(args, policy, params, timings[o], samples, o, peak.get(o), device, build_seconds) for o in objectives]
    print(json.dumps(results if len(results) > 1 else results[0], indent=2))
    if len(results) == 2:
        a, b = results
        print(f"nft / flow_grpo seconds per step: {b['seconds_per_step'] / a['seconds_per_step']:.2f}", file=sys.stderr)
    if not args.cpu_smoke:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results if len(results) > 1 else results[0], indent=2) + "\n")
        print(f"wrote {args.out}", file=sys.stderr)


def summary(args, policy, params, timings, samples: int, objective: str, peak_gib: float | None, device, build_seconds: float) -> dict:
    timed = timings[1:] or timings
    med = {k: statistics.median(t[k] for t in timed) for k in timed[0]}
    return {
        "benchmark": "grpo_gpu",
        "model": "SD3Transformer2DModel, SD3.5-Medium config, random weights" if not args.cpu_smoke else "tiny (cpu smoke)",
        "transformer_parameters": sum(p.numel() for n, p in policy.transformer.named_parameters() if "lora_" not in n),
        "lora_parameters": sum(p.numel() for p in params),
        "dtype": "bfloat16 weights, fp32 LoRA and sampling maths" if not args.cpu_smoke else "float32",
        "resolution": args.resolution, "latent": list(policy.latent_shape()),
        "prompts": args.prompts, "group_size": args.group_size, "samples_per_step": samples,
        "objective": objective,
        "num_steps": args.num_steps, "sde_steps": args.sde_steps if objective == "flow_grpo" else None, "guidance_scale": args.guidance,
        "epochs": args.epochs if objective == "nft" else None,
        "lora_rank": args.lora_rank, "train_batch": args.train_batch, "updates_per_step": args.updates,
        "gradient_checkpointing": args.gradient_checkpointing,
        "steps_timed": len(timed),
        "seconds_per_step": med["step_seconds"], "rollout_seconds": med["rollout_seconds"], "update_seconds": med["update_seconds"],
        "samples_per_s": samples / med["step_seconds"],
        "peak_memory_gib": peak_gib,
        "device": torch.cuda.get_device_name() if device.type == "cuda" else platform.processor() or "cpu",
        "build_seconds": build_seconds,
        "torch": torch.__version__,
    }


if __name__ == "__main__":
    main()
