"""The one interface every sampler and trainer uses to talk to an image generator.

A policy is a flow-matching velocity model with its encoders and decoder:

    cond = policy.encode_prompts(texts, sources=None)    # sources: (B, H, W, 3) uint8 for editing
    v    = policy.velocity(latents, sigma, cond)           # latents (B, *policy.latent_shape())
    imgs = policy.decode(latents)                          # (B, H, W, 3) uint8 numpy

Flow-matching convention throughout: x_sigma = (1 - sigma) * x0 + sigma * noise, and the
model predicts v = noise - x0, so an Euler step is x_next = x + (sigma_next - sigma) * v.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch
from torch import nn

from qwenrl.tasks import TASKS



@dataclass
class Conditioning:
    """Model inputs derived from prompts (and source images): a bag of batch-first tensors.

    Kept generic so that each adapter stores what its transformer needs; the helpers below
    let samplers repeat, concatenate and index conditioning without knowing its contents.
    """

    tensors: dict[str, torch.Tensor] = field(default_factory=dict)

    def __len__(self) -> int:
        return next(iter(self.tensors.values())).shape[0]

    def __getitem__(self, key: str) -> torch.Tensor:
        return self.tensors[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.tensors.get(key, default)

    def map(self, fn) -> "Conditioning":
        return Conditioning({k: fn(v) for k, v in self.tensors.items()})

    def repeat_interleave(self, n: int) -> "Conditioning":
        return self.map(lambda t: t.repeat_interleave(n, dim=0))

    def select(self, index: torch.Tensor | slice | list[int]) -> "Conditioning":
        return self.map(lambda t: t[index])

    def to(self, *args, **kwargs) -> "Conditioning":
        return self.map(lambda t: t.to(*args, **kwargs))

    def detach(self) -> "Conditioning":
        return self.map(lambda t: t.detach())

    def where(self, mask: torch.Tensor, other: "Conditioning") -> "Conditioning":
        """Row i of ``other`` where ``mask[i]``, else row i of this (sequences padded as in ``cat``)."""
        n = len(self)
        if len(other) != n or mask.shape != (n,):
            raise ValueError(f"where needs two conditionings and a mask of one length, got {n}, {len(other)}, {tuple(mask.shape)}")
        index = torch.arange(n, device=mask.device) + n * mask.long()
        return Conditioning.cat([self, other]).select(index.to(next(iter(self.tensors.values())).device))

    @staticmethod
    def cat(items: Iterable["Conditioning"]) -> "Conditioning":
        """Concatenate along the batch. Sequences of different lengths (dim 1: text embeddings
        and their masks) are right-padded with zeros to the longest, so masks must mark padding
        with 0; any other mismatch is an error."""
        items = list(items)
        keys = items[0].tensors.keys()
        for c in items[1:]:
            if c.tensors.keys() != keys:
                raise ValueError(f"cannot concatenate conditioning with keys {sorted(keys)} and {sorted(c.tensors)}")
        return Conditioning({k: _cat_padded([c.tensors[k] for c in items]) for k in keys})


def _cat_padded(tensors: list[torch.Tensor]) -> torch.Tensor:
    """torch.cat along dim 0, right-padding dim 1 (a sequence) with zeros to the longest."""
    longest = max(t.shape[1] for t in tensors) if tensors[0].ndim > 1 else 0
    padded = []
    for t in tensors:
        if t.ndim > 1 and t.shape[1] < longest:
            pad = [0, 0] * (t.ndim - 2) + [0, longest - t.shape[1]]
            t = torch.nn.functional.pad(t, pad)
        padded.append(t)
    return torch.cat(padded, dim=0)


class Policy(nn.Module, ABC):
    """Abstract flow-matching image policy (text-to-image and/or editing)."""

    #: tasks this policy can do, a subset of TASKS
    tasks: tuple[str, ...] = ("t2i",)
    #: sigma-schedule shift the model was trained for (``qwenrl.sampling.sigma_schedule``)
    default_shift: float = 1.0

    @abstractmethod
    def encode_prompts(self, texts: list[str], sources: np.ndarray | torch.Tensor | None = None) -> Conditioning:
        """Conditioning for prompts (text-to-image) or instructions with source images (editing)."""

    @abstractmethod
    def null_conditioning(self, batch_size: int, sources: np.ndarray | torch.Tensor | None = None) -> Conditioning:
        """Conditioning with the text dropped (for classifier-free guidance); sources are kept."""

    @abstractmethod
    def velocity(self, latents: torch.Tensor, sigma: torch.Tensor, cond: Conditioning) -> torch.Tensor:
        """Predicted velocity (noise - x0) for ``latents`` at noise level ``sigma`` (shape (B,))."""

    @abstractmethod
    def latent_shape(self) -> tuple[int, ...]:
        """Shape of one latent, without the batch dimension."""

    @abstractmethod
    def decode(self, latents: torch.Tensor) -> np.ndarray:
        """Images (B, H, W, 3) uint8 from clean latents."""

    @abstractmethod
    def encode_images(self, images: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Clean latents from images (B, H, W, 3) uint8."""

    def trainable_parameters(self) -> list[nn.Parameter]:
        """Parameters a trainer updates (all of the denoiser by default, or the LoRA weights)."""
        return [p for p in self.parameters() if p.requires_grad]

    @abstractmethod
    def save(self, path: str | Path, **manifest: Any) -> Path:
        """Write a checkpoint folder (safetensors + manifest.json); extra keys go to the manifest."""

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device
