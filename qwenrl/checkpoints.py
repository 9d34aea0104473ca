"""Checkpoint folders: safetensors weights plus a JSON manifest, written atomically.

A checkpoint folder holds ``manifest.json`` and one or more ``*.safetensors`` files. It is
written to a temporary sibling folder, the manifest last, then renamed into place, so a
folder that has a manifest is always complete. Nothing here ever unpickles a file.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:  # torch is imported only where tensors are read or written
    import torch

MANIFEST = "manifest.json"
FORMAT = "qwenrl-checkpoint"
FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint folder that is missing, incomplete or of an unknown kind."""


def read_manifest(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such checkpoint folder")
    if not path.is_dir():
        raise CheckpointError(f"{path}: a checkpoint is a folder with {MANIFEST} and safetensors files")
    mpath = path / MANIFEST
    if not mpath.exists():
        raise CheckpointError(f"{path}: missing {MANIFEST} (incomplete or not a QwenRL checkpoint)")
    try:
        manifest = json.loads(mpath.read_text())
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{mpath}: invalid JSON ({exc})") from exc
    if manifest.get("format") != FORMAT:
        raise CheckpointError(f"{mpath}: not a {FORMAT} manifest (format={manifest.get('format')!r})")
    return manifest


def write_checkpoint(
    path: str | Path,
    tensors: dict[str, dict[str, "torch.Tensor"]],
    manifest: dict[str, Any],
    files: dict[str, Callable[[Path], None]] | None = None,
) -> Path:
    """Write ``tensors`` (file stem → state dict) and ``manifest`` atomically to ``path``.

    ``files`` maps extra file names to writers called with the destination path (tokenizer
    files, configs). An existing folder at ``path`` is replaced only once the new one is complete.
    """
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        for stem, sd in tensors.items():
            save_file({k: v.detach().contiguous().cpu() for k, v in sd.items()}, str(tmp / f"{stem}.safetensors"))
        for name, writer in (files or {}).items():
            writer(tmp / name)
        full = {"format": FORMAT, "format_version": FORMAT_VERSION, "created": time.time(), **manifest}
        (tmp / MANIFEST).write_text(json.dumps(full, indent=2, sort_keys=True))
        if path.exists():
            old = path.parent / f".{path.name}.old-{uuid.uuid4().hex[:8]}"
            os.rename(path, old)
            os.rename(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def read_tensors(path: str | Path, stem: str) -> dict[str, "torch.Tensor"]:
    from safetensors.torch import load_file

    f = Path(path) / f"{stem}.safetensors"
    if not f.exists():
        raise CheckpointError(f"{path}: missing {f.name}")
    return load_file(str(f))


def is_complete(path: str | Path) -> bool:
    """True for a finished checkpoint folder (its manifest was written last)."""
    return (Path(path) / MANIFEST).is_file() and not Path(path).name.startswith(".")
