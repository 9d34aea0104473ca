"""The bundled Shapes model: one unified text-to-image and editing flow-matching policy.

Built from the classes real pipelines use:

* ``AutoencoderKL`` (diffusers) maps a 32×32 palette image, one-hot over the world's 9
  colours, to a 4×8×8 latent; its decoder outputs per-pixel palette logits, so decoded
  images are crisp palette images by construction (argmax, then the palette's RGB).
* ``CLIPTextModel`` (transformers) with a word-level tokenizer over the grammar's
  vocabulary encodes prompts and edit instructions; it is trained jointly with the denoiser.
  Its causal attention lets "circle" in "red circle" carry its colour, which helps binding.
* ``SD3Transformer2DModel`` (diffusers, MM-DiT) predicts the velocity. For editing, the
  source image's latent is concatenated to the noisy latent along channels (zeros for
  text-to-image), so one model does both tasks, like Qwen-Image-2.0.
"""

from __future__ import annotations

import copy
import json
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, SD3Transformer2DModel
from tokenizers import Tokenizer
from tokenizers.models import WordLevel
from tokenizers.pre_tokenizers import WhitespaceSplit
from transformers import CLIPTextConfig, CLIPTextModel

from ..checkpoints import CheckpointError, read_manifest, read_tensors, write_checkpoint
from ..world.grammar import VOCAB, check_words
from ..world.scene import IMAGE_SIZE, PALETTE
from .base import Conditioning, Policy

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[BOS]", "[EOS]")

DEFAULT_CONFIG: dict[str, Any] = {
    "image_size": IMAGE_SIZE,
    "palette_size": len(PALETTE),
    "max_tokens": 12,
    "vae": {
        "block_out_channels": [16, 32, 64],
        "layers_per_block": 1,
        "latent_channels": 4,
        "norm_num_groups": 16,
    },
    "text": {"hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 2, "num_attention_heads": 4},
    "transformer": {
        "patch_size": 2,
        "num_layers": 6,
        "attention_head_dim": 32,
        "num_attention_heads": 4,
    },
    # latent normalisation, measured on training scenes after the autoencoder is trained
    "latent_shift": 0.0,
    "latent_scale": 1.0,
}

# A tiny configuration (about 30k denoiser parameters) for tests and smoke runs.
TINY_CONFIG: dict[str, Any] = {
    "vae": {"block_out_channels": [16, 16, 16]},
    "text": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1},
    "transformer": {"num_layers": 1, "attention_head_dim": 8, "num_attention_heads": 2},
}


def build_tokenizer(vocab: tuple[str, ...] = VOCAB) -> Tokenizer:
    words = {t: i for i, t in enumerate(SPECIAL_TOKENS + tuple(vocab))}
    tok = Tokenizer(WordLevel(words, unk_token="[UNK]"))
    tok.pre_tokenizer = WhitespaceSplit()
    return tok


def palette_indices(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Nearest-palette index per pixel for (B, H, W, 3) uint8 images → (B, H, W) int64."""
    x = torch.as_tensor(np.asarray(images), dtype=torch.float32)
    if x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"expected images of shape (B, H, W, 3), got {tuple(x.shape)}")
    pal = torch.as_tensor(PALETTE, dtype=torch.float32)
    d = ((x[..., None, :] - pal) ** 2).sum(-1)
    return d.argmin(-1)


class ShapesPolicy(Policy):
    tasks = ("t2i", "edit")

    def __init__(self, config: dict[str, Any] | None = None, tokenizer: Tokenizer | None = None):
        super().__init__()
        cfg = json.loads(json.dumps(DEFAULT_CONFIG))
        for k, v in (config or {}).items():
            if isinstance(v, dict) and isinstance(cfg.get(k), dict):
                cfg[k].update(v)
            else:
                cfg[k] = v
        self.config = cfg
        self.tokenizer = tokenizer or build_tokenizer()
        n_pal = cfg["palette_size"]
        vc = cfg["vae"]
        nblocks = len(vc["block_out_channels"])
        self.vae = AutoencoderKL(
            in_channels=n_pal,
            out_channels=n_pal,
            down_block_types=("DownEncoderBlock2D",) * nblocks,
            up_block_types=("UpDecoderBlock2D",) * nblocks,
            block_out_channels=tuple(vc["block_out_channels"]),
            layers_per_block=vc["layers_per_block"],
            latent_channels=vc["latent_channels"],
            norm_num_groups=vc["norm_num_groups"],
            sample_size=cfg["image_size"],
        )
        tc = cfg["text"]
        self.text_encoder = CLIPTextModel(
            CLIPTextConfig(
                vocab_size=self.tokenizer.get_vocab_size(),
                hidden_size=tc["hidden_size"],
                intermediate_size=tc["intermediate_size"],
                num_hidden_layers=tc["num_hidden_layers"],
                num_attention_heads=tc["num_attention_heads"],
                max_position_embeddings=cfg["max_tokens"],
                pad_token_id=self.tokenizer.token_to_id("[PAD]"),
                bos_token_id=self.tokenizer.token_to_id("[BOS]"),
                eos_token_id=self.tokenizer.token_to_id("[EOS]"),
            )
        )
        xc = cfg["transformer"]
        lc = vc["latent_channels"]
        self.latent_size = cfg["image_size"] // 2 ** (nblocks - 1)
        self.transformer = SD3Transformer2DModel(
            sample_size=self.latent_size,
            patch_size=xc["patch_size"],
            in_channels=2 * lc,  # noisy latent + source latent (zeros for text-to-image)
            out_channels=lc,
            num_layers=xc["num_layers"],
            attention_head_dim=xc["attention_head_dim"],
            num_attention_heads=xc["num_attention_heads"],
            joint_attention_dim=tc["hidden_size"],
            caption_projection_dim=xc["attention_head_dim"] * xc["num_attention_heads"],
            pooled_projection_dim=tc["hidden_size"],
            pos_embed_max_size=self.latent_size // xc["patch_size"],
        )
        self.vae.requires_grad_(False)

    # -- text ---------------------------------------------------------------------------
    def tokenize(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Token ids (B, L) and attention mask; raises GrammarError for unknown words."""
        max_len = self.config["max_tokens"]
        bos, eos, pad = (self.tokenizer.token_to_id(t) for t in ("[BOS]", "[EOS]", "[PAD]"))
        ids = torch.full((len(texts), max_len), pad, dtype=torch.long)
        mask = torch.zeros((len(texts), max_len), dtype=torch.long)
        for i, text in enumerate(texts):
            words = check_words(text) if text else []
            toks = [bos] + [self.tokenizer.token_to_id(w) for w in words] + [eos]
            if len(toks) > max_len:
                raise ValueError(f"prompt too long ({len(words)} words, at most {max_len - 2}): {text!r}")
            ids[i, : len(toks)] = torch.tensor(toks)
            mask[i, : len(toks)] = 1
        return ids, mask

    def _encode_text(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        ids, mask = self.tokenize(texts)
        out = self.text_encoder(input_ids=ids.to(self.device), attention_mask=mask.to(self.device))
        return out.last_hidden_state, out.pooler_output

    # -- images -------------------------------------------------------------------------
    def _one_hot(self, images: np.ndarray | torch.Tensor) -> torch.Tensor:
        idx = palette_indices(images)
        size = self.config["image_size"]
        if idx.shape[1:] != (size, size):
            raise ValueError(f"expected {size}×{size} images, got {tuple(idx.shape[1:])}")
        return F.one_hot(idx, self.config["palette_size"]).permute(0, 3, 1, 2).float().to(self.device)

    def encode_images(self, images: np.ndarray | torch.Tensor, sample: bool = False) -> torch.Tensor:
        dist = self.vae.encode(self._one_hot(images)).latent_dist
        z = dist.sample() if sample else dist.mode()
        return (z - self.config["latent_shift"]) / self.config["latent_scale"]

    def decode_logits(self, latents: torch.Tensor) -> torch.Tensor:
        z = latents.float() * self.config["latent_scale"] + self.config["latent_shift"]
        return self.vae.decode(z).sample

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> np.ndarray:
        idx = self.decode_logits(latents).argmax(1).cpu().numpy()
        return PALETTE[idx]

    # -- policy interface ---------------------------------------------------------------
    def latent_shape(self) -> tuple[int, ...]:
        return (self.config["vae"]["latent_channels"], self.latent_size, self.latent_size)

    def _source_latents(self, batch: int, sources: np.ndarray | torch.Tensor | None) -> torch.Tensor:
        if sources is None:
            return torch.zeros((batch, *self.latent_shape()), device=self.device)
        if len(sources) != batch:
            raise ValueError(f"{len(sources)} source images for {batch} instructions")
        with torch.no_grad():
            return self.encode_images(sources)

    def encode_prompts(self, texts: list[str], sources: np.ndarray | torch.Tensor | None = None) -> Conditioning:
        hidden, pooled = self._encode_text(list(texts))
        return Conditioning({"hidden": hidden, "pooled": pooled, "source": self._source_latents(len(texts), sources)})

    def null_conditioning(self, batch_size: int, sources: np.ndarray | torch.Tensor | None = None) -> Conditioning:
        return self.encode_prompts([""] * batch_size, sources)

    def velocity(self, latents: torch.Tensor, sigma: torch.Tensor, cond: Conditioning) -> torch.Tensor:
        sigma = torch.as_tensor(sigma, dtype=torch.float32, device=latents.device).reshape(-1)
        if sigma.numel() == 1:
            sigma = sigma.expand(latents.shape[0])
        x = torch.cat([latents.float(), cond["source"].float()], dim=1)
        out = self.transformer(
            hidden_states=x,
            encoder_hidden_states=cond["hidden"],
            pooled_projections=cond["pooled"],
            timestep=sigma * 1000.0,
            return_dict=False,
        )[0]
        return out.float()

    def trainable_parameters(self) -> list[torch.nn.Parameter]:
        return [p for p in list(self.transformer.parameters()) + list(self.text_encoder.parameters()) if p.requires_grad]

    # -- LoRA ---------------------------------------------------------------------------
    def enable_lora(self, rank: int = 8, alpha: float | None = None, target_modules: list[str] | None = None) -> None:
        """Freeze the model and add LoRA adapters (peft) to the transformer's attention."""
        from peft import LoraConfig

        self.requires_grad_(False)
        cfg = LoraConfig(
            r=rank,
            lora_alpha=alpha or rank,
            init_lora_weights="gaussian",
            target_modules=target_modules or ["to_q", "to_k", "to_v", "to_out.0", "add_q_proj", "add_k_proj", "add_v_proj", "to_add_out"],
        )
        self.transformer.add_adapter(cfg)
        self.lora = {"rank": rank, "alpha": alpha or rank, "target_modules": cfg.target_modules}

    @contextmanager
    def disabled_adapters(self) -> Iterator[None]:
        """The reference policy: LoRA adapters switched off inside the block."""
        if getattr(self, "lora", None):
            self.transformer.disable_adapters()
            try:
                yield
            finally:
                self.transformer.enable_adapters()
        else:
            yield

    # -- checkpoints --------------------------------------------------------------------
    def save(self, path: str | Path, **manifest: Any) -> Path:
        tok_json = self.tokenizer.to_str()
        source = self
        if getattr(self, "lora", None):
            # Checkpoints hold plain weights: merge a copy, so training goes on with its adapters.
            source = copy.deepcopy(self)
            source.merge_lora()
        tensors = {
            "transformer": source.transformer.state_dict(),
            "text_encoder": source.text_encoder.state_dict(),
            "vae": source.vae.state_dict(),
        }
        meta = {"policy": "shapes", "config": self.config, "tokenizer": "tokenizer.json", "tasks": list(self.tasks)}
        meta.update(manifest)
        return write_checkpoint(path, tensors, meta, files={"tokenizer.json": lambda p: p.write_text(tok_json)})

    def merge_lora(self) -> None:
        """Fold LoRA weights into the base weights (peft ``merge_and_unload`` semantics)."""
        from peft.tuners.lora import LoraLayer

        for module in self.transformer.modules():
            if isinstance(module, LoraLayer):
                module.merge()
        # Replace LoRA wrappers by their (merged) base layers so the state dict is plain.
        for name, module in list(self.transformer.named_modules()):
            for child_name, child in list(module.named_children()):
                if isinstance(child, LoraLayer):
                    setattr(module, child_name, child.get_base_layer())
        self.lora = None
        self.transformer._hf_peft_config_loaded = False
        if hasattr(self.transformer, "peft_config"):
            del self.transformer.peft_config

    @classmethod
    def load(cls, path: str | Path, map_location: str | torch.device = "cpu") -> "ShapesPolicy":
        path = Path(path)
        manifest = read_manifest(path)
        if manifest.get("policy") != "shapes":
            raise CheckpointError(f"{path}: manifest policy is {manifest.get('policy')!r}, not 'shapes'")
        tok_file = path / manifest.get("tokenizer", "tokenizer.json")
        if not tok_file.exists():
            raise CheckpointError(f"{path}: missing tokenizer file {tok_file.name}")
        policy = cls(manifest["config"], tokenizer=Tokenizer.from_file(str(tok_file)))
        for stem in ("transformer", "text_encoder", "vae"):
            sd = read_tensors(path, stem)
            missing, unexpected = getattr(policy, stem).load_state_dict(sd, strict=False)
            if missing or unexpected:
                raise CheckpointError(f"{path}: {stem} weights do not match the config (missing {missing[:3]}, unexpected {unexpected[:3]})")
        policy.manifest = manifest
        return policy.to(map_location)
