"""``DiffusersPolicy``: real flow-matching pipelines from diffusers behind the ``Policy`` interface.

Supported pipelines (``family`` in brackets)::

    StableDiffusion3Pipeline [sd3]      SD3 and SD3.5, text-to-image
    FluxPipeline             [flux]     FLUX.1 dev/schnell, text-to-image
    FluxKontextPipeline      [flux-kontext]  FLUX.1-Kontext, editing (and text-to-image without a source)
    QwenImagePipeline        [qwen-image]    Qwen-Image, text-to-image
    QwenImageEditPipeline    [qwen-image-edit]  Qwen-Image-Edit, editing

Load one from a local folder (or a hub id where there is network)::

    policy = DiffusersPolicy.from_pretrained("/models/stable-diffusion-3.5-medium", height=512, width=512,
                                             dtype=torch.bfloat16, device="cuda")
    policy.enable_lora(rank=32, alpha=64)

Each family differs in four places, mapped here from diffusers 0.42's pipelines:

* **Latent layout.** SD3 keeps latents unpacked, (C, h, w) with h = H / vae_scale. FLUX and
  Qwen-Image transformers read 2×2 latent patches packed into tokens, so their latents are kept
  *packed*, (h/2 · w/2, 4C), the layout the transformer reads and writes; ``decode`` unpacks.
  The SDE's log-prob is a mean over elements, so the layout does not change it.
* **Timesteps.** The SD3 transformer takes σ·1000; FLUX and Qwen-Image take σ itself (their
  pipelines pass ``t / 1000`` and the model rescales internally). Guidance-distilled FLUX
  models also get the ``embedded_guidance`` value (3.5 by default) as a model input; true
  classifier-free guidance is the sampler's job (``qwenrl.sampling.guided_velocity``).
* **Conditioning.** Prompts go through each pipeline's own ``encode_prompt``. Editing families
  also store the source image's packed VAE latents (``image_latents``), which the transformer
  sees as extra tokens after the noisy latents (with RoPE ids marking them as a second image);
  Qwen-Image-Edit's text encoder (Qwen2.5-VL) sees the source image as well.
* **VAE.** SD3/FLUX: ``(z - shift_factor) * scaling_factor``; Qwen-Image: per-channel
  ``(z - latents_mean) / latents_std`` on a one-frame video VAE.

The policy works at one resolution (``height`` × ``width``); source images are resized to it.
Prompt encoders and the VAE are frozen; the transformer (or, after ``enable_lora``, only its
LoRA weights) is trainable. Checkpoints hold only the trained weights, as safetensors, plus a
manifest that names the base pipeline, so loading one needs that base folder (or hub id).
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from PIL import Image

from qwenrl.checkpoints import CheckpointError, read_manifest, read_tensors, write_checkpoint
from qwenrl.models.base import Conditioning, Policy

__all__ = ["DiffusersPolicy", "FAMILIES", "DEFAULT_LORA_TARGETS"]


@dataclass(frozen=True)
class _Family:
    pipeline: str  # diffusers pipeline class name
    tasks: tuple[str, ...]
    packed: bool  # latents are 2×2 patches packed into tokens
    timestep_scale: float  # the transformer's timestep is sigma * timestep_scale
    null_prompt: str  # the negative prompt of the pipeline's examples
    max_sequence_length: int  # the pipeline's default


FAMILIES: dict[str, _Family] = {
    "sd3": _Family("StableDiffusion3Pipeline", ("t2i",), False, 1000.0, "", 256),
    "flux": _Family("FluxPipeline", ("t2i",), True, 1.0, "", 512),
    "flux-kontext": _Family("FluxKontextPipeline", ("t2i", "edit"), True, 1.0, "", 512),
    "qwen-image": _Family("QwenImagePipeline", ("t2i",), True, 1.0, " ", 1024),
    "qwen-image-edit": _Family("QwenImageEditPipeline", ("edit",), True, 1.0, " ", 1024),
}
_FAMILY_OF_PIPELINE = {f.pipeline: name for name, f in FAMILIES.items()}

#: attention projections of the joint (text + image) blocks, as Flow-GRPO targets them
DEFAULT_LORA_TARGETS = ("to_q", "to_k", "to_v", "to_out.0", "add_q_proj", "add_k_proj", "add_v_proj", "to_add_out")


def _pack(z: torch.Tensor) -> torch.Tensor:
    """(B, C, h, w) → (B, h/2 · w/2, 4C), as FluxPipeline._pack_latents."""
    b, c, h, w = z.shape
    return z.view(b, c, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5).reshape(b, (h // 2) * (w // 2), c * 4)


def _unpack(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """(B, h/2 · w/2, 4C) → (B, C, h, w), the inverse of ``_pack``."""
    b, _, c4 = x.shape
    return x.view(b, h // 2, w // 2, c4 // 4, 2, 2).permute(0, 3, 1, 4, 2, 5).reshape(b, c4 // 4, h, w)


def _calculate_shift(seq_len: int, base_seq: int, max_seq: int, base_shift: float, max_shift: float) -> float:
    # diffusers.pipelines.flux.pipeline_flux.calculate_shift
    m = (max_shift - base_shift) / (max_seq - base_seq)
    return seq_len * m + base_shift - m * base_seq


def _dtype_kwarg(dtype: torch.dtype) -> dict[str, torch.dtype]:
    # diffusers 0.42 renamed from_pretrained's torch_dtype to dtype (the old name warns).
    import diffusers
    from packaging.version import Version

    return {"dtype": dtype} if Version(diffusers.__version__) >= Version("0.42") else {"torch_dtype": dtype}


class DiffusersPolicy(Policy):
    """A diffusers flow-matching pipeline as a ``Policy`` (see the module docstring)."""

    def __init__(
        self,
        pipe: Any,
        *,
        base: str | None = None,
        height: int | None = None,
        width: int | None = None,
        embedded_guidance: float | None = None,
        max_sequence_length: int | None = None,
    ) -> None:
        super().__init__()
        name = type(pipe).__name__
        if name not in _FAMILY_OF_PIPELINE:
            raise ValueError(f"unsupported pipeline {name}; supported: {', '.join(sorted(_FAMILY_OF_PIPELINE))}")
        self.family = _FAMILY_OF_PIPELINE[name]
        self.spec = FAMILIES[self.family]
        self.tasks = self.spec.tasks
        self.pipe = pipe
        self.base = base
        self.transformer = pipe.transformer
        self.vae = pipe.vae
        self.text_encoders = torch.nn.ModuleList(
            [m for m in (getattr(pipe, a, None) for a in ("text_encoder", "text_encoder_2", "text_encoder_3")) if m is not None]
        )
        self.text_encoders.requires_grad_(False)
        self.vae.requires_grad_(False)
        self.train(False)

        vae_scale = int(pipe.vae_scale_factor)
        patch = 2 if self.spec.packed else int(self.transformer.config.patch_size)
        default_size = int(pipe.default_sample_size) * vae_scale
        self.height, self.width = int(height or default_size), int(width or default_size)
        multiple = vae_scale * patch
        if self.height % multiple or self.width % multiple:
            raise ValueError(f"{self.family}: height and width must be multiples of {multiple}, got {self.height}×{self.width}")
        self._latent_hw = (self.height // vae_scale, self.width // vae_scale)
        in_channels = int(self.transformer.config.in_channels)
        self._latent_channels = in_channels // 4 if self.spec.packed else in_channels

        guidance_embeds = bool(getattr(self.transformer.config, "guidance_embeds", False))
        self.embedded_guidance = (embedded_guidance if embedded_guidance is not None else 3.5) if guidance_embeds else None
        self.max_sequence_length = int(max_sequence_length or self.spec.max_sequence_length)
        self._lora: dict[str, Any] | None = None
        self._null_cache: Conditioning | None = None
        #: the manifest this policy was loaded from (lineage), if any
        self.manifest: dict[str, Any] = {}

    # -- construction and checkpoints ---------------------------------------------------------

    @classmethod
    def from_pretrained(
        cls,
        path_or_id: str | Path,
        *,
        height: int | None = None,
        width: int | None = None,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
        local_files_only: bool | None = None,
        embedded_guidance: float | None = None,
        max_sequence_length: int | None = None,
    ) -> "DiffusersPolicy":
        """Load a pipeline folder (with ``model_index.json``) or a hub id.

        ``local_files_only`` defaults to True for a local folder and False for a hub id.
        """
        from diffusers import DiffusionPipeline

        local = Path(path_or_id).expanduser()
        is_local = local.is_dir()
        if is_local and not (local / "model_index.json").is_file():
            raise CheckpointError(f"{local}: not a diffusers pipeline folder (no model_index.json)")
        if not is_local and (str(path_or_id).startswith((".", "/", "~")) or local.exists()):
            raise CheckpointError(f"{path_or_id}: no such pipeline folder")
        pipe = DiffusionPipeline.from_pretrained(
            str(local) if is_local else str(path_or_id),
            local_files_only=is_local if local_files_only is None else local_files_only,
            **_dtype_kwarg(dtype),
        )
        pipe.set_progress_bar_config(disable=True)
        policy = cls(
            pipe,
            base=str(local.resolve()) if is_local else str(path_or_id),
            height=height,
            width=width,
            embedded_guidance=embedded_guidance,
            max_sequence_length=max_sequence_length,
        )
        return policy.to(device) if device is not None else policy

    def save(self, path: str | Path, **manifest: Any) -> Path:
        """Write the trained weights (LoRA, or the whole transformer) and a manifest naming the base."""
        if self.base is None:
            raise ValueError(
                "this policy has no base pipeline path: save the pipeline with pipe.save_pretrained(folder) "
                "and build the policy with DiffusersPolicy(pipe, base=folder)"
            )
        if self._lora is not None:
            from peft.utils import get_peft_model_state_dict

            tensors = {"lora": get_peft_model_state_dict(self.transformer)}
        else:
            tensors = {"transformer": self.transformer.state_dict()}
        meta = {
            "policy": "diffusers",
            "family": self.family,
            "base": self.base,
            "height": self.height,
            "width": self.width,
            "embedded_guidance": self.embedded_guidance,
            "max_sequence_length": self.max_sequence_length,
            "tasks": list(self.tasks),
            "trainable": "lora" if self._lora is not None else "transformer",
            "lora": self._lora,
            **manifest,
        }
        return write_checkpoint(path, tensors, meta)

    @classmethod
    def load(
        cls,
        path: str | Path,
        *,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
        local_files_only: bool | None = None,
    ) -> "DiffusersPolicy":
        """Load a checkpoint written by ``save``: the base pipeline, then the trained weights."""
        manifest = read_manifest(path)
        if manifest.get("policy") != "diffusers":
            raise CheckpointError(f"{path}: not a diffusers policy checkpoint (policy={manifest.get('policy')!r})")
        policy = cls.from_pretrained(
            manifest["base"],
            height=manifest.get("height"),
            width=manifest.get("width"),
            dtype=dtype,
            local_files_only=local_files_only,
            embedded_guidance=manifest.get("embedded_guidance"),
            max_sequence_length=manifest.get("max_sequence_length"),
        )
        if manifest.get("family") not in (None, policy.family):
            raise CheckpointError(f"{path}: checkpoint is for {manifest['family']} but its base is a {policy.family} pipeline")
        if manifest.get("trainable") == "lora":
            from peft.utils import set_peft_model_state_dict

            lora = manifest["lora"]
            policy.enable_lora(lora["rank"], lora["alpha"], lora["target_modules"])
            result = set_peft_model_state_dict(policy.transformer, read_tensors(path, "lora"))
            unexpected = getattr(result, "unexpected_keys", None)
            if unexpected:
                raise CheckpointError(f"{path}: LoRA weights do not fit the base transformer ({unexpected[:3]} ...)")
        else:
            policy.transformer.load_state_dict(read_tensors(path, "transformer"), strict=True)
        policy.manifest = manifest
        return policy.to(device) if device is not None else policy

    # -- training helpers -----------------------------------------------------------------------

    def train(self, mode: bool = True) -> "DiffusersPolicy":
        # The frozen encoders stay in eval mode (T5's dropout would make prompts random).
        super().train(mode)
        self.text_encoders.eval()
        self.vae.eval()
        return self

    def enable_lora(self, rank: int = 16, alpha: float | None = None, target_modules: list[str] | tuple[str, ...] | None = None) -> None:
        """Add a peft LoRA adapter to the transformer and make it the only trainable part.

        LoRA weights are kept in fp32 whatever the base dtype. ``alpha`` defaults to ``rank``.
        """
        from peft import LoraConfig

        if self._lora is not None:
            raise ValueError("LoRA is already enabled on this policy")
        targets = list(target_modules or DEFAULT_LORA_TARGETS)
        alpha = float(alpha if alpha is not None else rank)
        config = LoraConfig(r=int(rank), lora_alpha=alpha, target_modules=targets, init_lora_weights=True)
        self.transformer.requires_grad_(False)
        self.transformer.add_adapter(config)
        for name, param in self.transformer.named_parameters():
            if "lora_" in name:
                param.data = param.data.float()
                param.requires_grad_(True)
        self._lora = {"rank": int(rank), "alpha": alpha, "target_modules": targets}

    @property
    def lora(self) -> dict[str, Any] | None:
        """The LoRA settings (rank, alpha, target_modules), or None without LoRA."""
        return self._lora

    @contextlib.contextmanager
    def disabled_adapters(self) -> Iterator["DiffusersPolicy"]:
        """Within this block the policy is its base model: the reference for the KL term."""
        if self._lora is None:
            raise ValueError("no LoRA adapter to disable: with full fine-tuning keep a frozen copy of the base as reference")
        self.transformer.disable_adapters()
        try:
            yield self
        finally:
            self.transformer.enable_adapters()

    @property
    def default_shift(self) -> float:  # type: ignore[override]
        """The sigma shift the pipeline's scheduler uses at this resolution."""
        cfg = self.pipe.scheduler.config
        if cfg.get("use_dynamic_shifting", False):
            h, w = self._latent_hw
            patch = 2 if self.spec.packed else int(self.transformer.config.patch_size)
            mu = _calculate_shift(
                (h // patch) * (w // patch),
                cfg.get("base_image_seq_len", 256),
                cfg.get("max_image_seq_len", 4096),
                cfg.get("base_shift", 0.5),
                cfg.get("max_shift", 1.15),
            )
            return float(mu if cfg.get("time_shift_type", "exponential") == "linear" else math.exp(mu))
        return float(cfg.get("shift", 1.0))

    # -- the Policy interface -----------------------------------------------------------------------

    def latent_shape(self) -> tuple[int, ...]:
        h, w = self._latent_hw
        if self.spec.packed:
            return ((h // 2) * (w // 2), self._latent_channels * 4)
        return (self._latent_channels, h, w)

    @torch.no_grad()
    def encode_prompts(self, texts: list[str], sources: np.ndarray | torch.Tensor | None = None) -> Conditioning:
        texts = list(texts)
        if not texts or not all(isinstance(t, str) for t in texts):
            raise ValueError("texts must be a non-empty list of strings")
        if sources is None and "t2i" not in self.tasks:
            raise ValueError(f"{self.family} edits images: pass the source images")
        if sources is not None and "edit" not in self.tasks:
            raise ValueError(f"{self.family} is a text-to-image model: it takes no source images")
        images = self._to_pil(sources) if sources is not None else None
        if images is not None and len(images) != len(texts):
            raise ValueError(f"{len(texts)} texts but {len(images)} source images")

        device = self.device
        msl = self.max_sequence_length
        if self.family == "sd3":
            embeds, _, pooled, _ = self.pipe.encode_prompt(
                prompt=texts, prompt_2=None, prompt_3=None, device=device, do_classifier_free_guidance=False, max_sequence_length=msl
            )
            tensors = {"prompt_embeds": embeds, "pooled_prompt_embeds": pooled}
        elif self.family in ("flux", "flux-kontext"):
            embeds, pooled, _ = self.pipe.encode_prompt(prompt=texts, prompt_2=None, device=device, max_sequence_length=msl)
            tensors = {"prompt_embeds": embeds, "pooled_prompt_embeds": pooled}
        else:
            kwargs = {"image": images} if self.family == "qwen-image-edit" else {}
            embeds, mask = self.pipe.encode_prompt(prompt=texts, device=device, max_sequence_length=msl, **kwargs)
            if mask is None:  # the pipeline drops an all-ones mask; keep one so batches can be padded
                mask = torch.ones(embeds.shape[:2], dtype=torch.long, device=device)
            tensors = {"prompt_embeds": embeds, "prompt_embeds_mask": mask}
        if images is not None:
            tensors["image_latents"] = self._encode_pixels(self._pixels(images))
        return Conditioning(tensors)

    @torch.no_grad()
    def null_conditioning(self, batch_size: int, sources: np.ndarray | torch.Tensor | None = None) -> Conditioning:
        if sources is not None:
            return self.encode_prompts([self.spec.null_prompt] * batch_size, sources)
        if self._null_cache is None:
            self._null_cache = self.encode_prompts([self.spec.null_prompt])
        return self._null_cache.to(self.device).repeat_interleave(batch_size)

    def velocity(self, latents: torch.Tensor, sigma: torch.Tensor, cond: Conditioning) -> torch.Tensor:
        dtype, device = self.transformer.dtype, self.device
        x = latents.to(device=device, dtype=dtype)
        batch = x.shape[0]
        if tuple(x.shape[1:]) != self.latent_shape():
            raise ValueError(f"latents must be (B, {', '.join(map(str, self.latent_shape()))}), got {tuple(x.shape)}")
        sigma = torch.as_tensor(sigma, device=device, dtype=torch.float32).reshape(-1).expand(batch)
        timestep = (sigma * self.spec.timestep_scale).to(dtype)
        embeds = cond["prompt_embeds"].to(device=device, dtype=dtype)
        image_latents = cond.get("image_latents")
        guidance = (
            torch.full((batch,), self.embedded_guidance, device=device, dtype=torch.float32)
            if self.embedded_guidance is not None
            else None
        )
        n_tokens = x.shape[1]

        if self.family == "sd3":
            out = self.transformer(
                hidden_states=x,
                timestep=timestep,
                encoder_hidden_states=embeds,
                pooled_projections=cond["pooled_prompt_embeds"].to(device=device, dtype=dtype),
                return_dict=False,
            )[0]
        elif self.family in ("flux", "flux-kontext"):
            img_ids = self._flux_ids(0, device, dtype)
            if image_latents is not None:
                x = torch.cat([x, image_latents.to(device=device, dtype=dtype)], dim=1)
                img_ids = torch.cat([img_ids, self._flux_ids(1, device, dtype)], dim=0)
            out = self.transformer(
                hidden_states=x,
                timestep=timestep,
                guidance=guidance,
                pooled_projections=cond["pooled_prompt_embeds"].to(device=device, dtype=dtype),
                encoder_hidden_states=embeds,
                txt_ids=torch.zeros(embeds.shape[1], 3, device=device, dtype=dtype),
                img_ids=img_ids,
                return_dict=False,
            )[0][:, :n_tokens]
        else:
            h, w = self._latent_hw
            shapes = [(1, h // 2, w // 2)]
            if image_latents is not None:
                x = torch.cat([x, image_latents.to(device=device, dtype=dtype)], dim=1)
                shapes.append((1, h // 2, w // 2))
            out = self.transformer(
                hidden_states=x,
                timestep=timestep,
                guidance=guidance,
                encoder_hidden_states=embeds,
                encoder_hidden_states_mask=cond["prompt_embeds_mask"].to(device),
                img_shapes=[shapes] * batch,
                return_dict=False,
            )[0][:, :n_tokens]
        return out.float()

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> np.ndarray:
        z = latents.to(device=self.device, dtype=torch.float32)
        if self.spec.packed:
            z = _unpack(z, *self._latent_hw)
        if self.family.startswith("qwen"):
            mean, std = self._qwen_stats(z.device)
            images = self.vae.decode((z.unsqueeze(2) * std + mean).to(self.vae.dtype), return_dict=False)[0][:, :, 0]
        else:
            cfg = self.vae.config
            z = z / cfg.scaling_factor + (getattr(cfg, "shift_factor", None) or 0.0)
            images = self.vae.decode(z.to(self.vae.dtype), return_dict=False)[0]
        images = ((images.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
        return images.permute(0, 2, 3, 1).cpu().numpy()

    @torch.no_grad()
    def encode_images(self, images: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Clean latents (fp32, in this policy's layout) of images resized to the policy's size."""
        return self._encode_pixels(self._pixels(self._to_pil(images)))

    # -- helpers -----------------------------------------------------------------------------------

    def _to_pil(self, images: np.ndarray | torch.Tensor) -> list[Image.Image]:
        if isinstance(images, torch.Tensor):
            images = images.detach().cpu().numpy()
        images = np.asarray(images)
        if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
            raise ValueError(f"images must be uint8 arrays of shape (B, H, W, 3), got {images.dtype} {images.shape}")
        size = (self.width, self.height)
        return [Image.fromarray(im).resize(size, Image.LANCZOS) if im.shape[:2] != (self.height, self.width) else Image.fromarray(im) for im in images]

    def _pixels(self, images: list[Image.Image]) -> torch.Tensor:
        arr = np.stack([np.asarray(im, dtype=np.float32) for im in images]) / 127.5 - 1.0
        return torch.from_numpy(arr).permute(0, 3, 1, 2).to(device=self.device, dtype=self.vae.dtype)

    def _encode_pixels(self, pixels: torch.Tensor) -> torch.Tensor:
        # The distribution's mode, as the edit pipelines do (sample_mode="argmax").
        if self.family.startswith("qwen"):
            z = self.vae.encode(pixels.unsqueeze(2)).latent_dist.mode().float()
            mean, std = self._qwen_stats(z.device)
            z = ((z - mean) / std)[:, :, 0]
        else:
            cfg = self.vae.config
            z = self.vae.encode(pixels).latent_dist.mode().float()
            z = (z - (getattr(cfg, "shift_factor", None) or 0.0)) * cfg.scaling_factor
        return _pack(z) if self.spec.packed else z

    def _qwen_stats(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        cfg = self.vae.config
        mean = torch.tensor(cfg.latents_mean, dtype=torch.float32, device=device).view(1, -1, 1, 1, 1)
        std = torch.tensor(cfg.latents_std, dtype=torch.float32, device=device).view(1, -1, 1, 1, 1)
        return mean, std

    def _flux_ids(self, index: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        """RoPE position ids (h/2 · w/2, 3) of packed tokens: [image index, row, column]."""
        h, w = self._latent_hw[0] // 2, self._latent_hw[1] // 2
        ids = torch.zeros(h, w, 3)
        ids[..., 0] = index
        ids[..., 1] = torch.arange(h)[:, None]
        ids[..., 2] = torch.arange(w)[None, :]
        return ids.reshape(h * w, 3).to(device=device, dtype=dtype)
