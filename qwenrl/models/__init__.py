"""Policies: the ``Policy`` interface, its adapters, and ``load_policy`` for any model folder.

Adapters are imported only when a checkpoint needs them, so importing this package does not
import diffusers.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from qwenrl.checkpoints import MANIFEST, CheckpointError, read_manifest
from qwenrl.models.base import Conditioning, Policy

__all__ = ["Conditioning", "Policy", "POLICY_LOADERS", "load_policy"]

#: manifest ``"policy"`` value → the class whose ``load(path, **kwargs)`` reads that checkpoint
POLICY_LOADERS: dict[str, str] = {
    "shapes": "qwenrl.models.shapes:ShapesPolicy",
    "diffusers": "qwenrl.models.diffusers_policy:DiffusersPolicy",
}


def load_policy(path: str | Path, **kwargs: Any) -> Policy:
    """Load a model folder: a QwenRL checkpoint (dispatching on its manifest's ``"policy"``) or
    a diffusers pipeline folder (``model_index.json``, loaded as a ``DiffusersPolicy``).

    Keyword arguments (``device``, ``dtype``, ...) go to the loader.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such model folder")
    if path.is_dir() and not (path / MANIFEST).exists() and (path / "model_index.json").is_file():
        from qwenrl.models.diffusers_policy import DiffusersPolicy

        return DiffusersPolicy.from_pretrained(path, **kwargs)
    manifest = read_manifest(path)
    kind = manifest.get("policy")
    if kind not in POLICY_LOADERS:
        raise CheckpointError(f"{path}: unknown policy kind {kind!r} in {MANIFEST}; expected one of {sorted(POLICY_LOADERS)}")
    module_name, class_name = POLICY_LOADERS[kind].split(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    return cls.load(path, **kwargs)
