"""Reading what to judge from files: a prompts file (JSON lines) and a folder of images.

A prompts line is the ``data/prompts`` format: ``{"task": "t2i", "text", "family",
"spec"}`` for text-to-image, ``{"task": "edit", "text", "family", "source", "target",
"target_index", "preserved"}`` for editing (``source`` a scene, or the path of a source
image). Optional ``"image"``: the file (or list of files) to judge, relative to the images
folder; without it, line ``i`` (from 0) is judged on ``{i:04d}.png``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..imageio import load_png
from ..world.grammar import EditTask, T2IPrompt
from ..world.scene import Scene, render
from .base import TASKS, Sample


@dataclass
class PromptRecord:
    """One prompts line: the text, its task, the spec when the line has one, the source image."""

    index: int
    task: str
    text: str
    family: str | None
    spec: Any
    source: np.ndarray | None
    images: list[str]
    raw: dict[str, Any]


def read_prompts(path: str | Path) -> list[PromptRecord]:
    """The lines of a prompts file; ValueError naming the line for a bad one."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"prompts file {path} not found")
    records = []
    with path.open() as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                d = json.loads(line)
                records.append(_record(len(records), d, path.parent))
            except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
                raise ValueError(f"{path}:{lineno}: {type(exc).__name__}: {exc}") from exc
    if not records:
        raise ValueError(f"{path} has no prompts")
    return records


def _record(index: int, d: dict[str, Any], base: Path) -> PromptRecord:
    task = d.get("task", "t2i")
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    text = d["text"]
    spec: Any = None
    source = None
    if task == "t2i":
        if d.get("spec"):
            spec = T2IPrompt.from_dict(d)
    else:
        src = d.get("source")
        if isinstance(src, dict):
            if "target" in d:
                spec = EditTask.from_dict(d)
                source = render(spec.source)
            else:
                source = render(Scene.from_dict(src))
        elif isinstance(src, str):
            p = Path(src)
            source = load_png(p if p.is_absolute() else base / p)
        else:
            raise ValueError("an edit line needs `source`: a scene or the path of a source image")
    images = d.get("image") or []
    images = [images] if isinstance(images, str) else list(images)
    return PromptRecord(index, task, text, d.get("family"), spec, source, images, d)


def samples_from_images(records: list[PromptRecord], images_dir: str | Path) -> list[Sample]:
    """One sample per image: the files a line names, else ``{index:04d}.png``."""
    folder = Path(images_dir)
    if not folder.is_dir():
        raise ValueError(f"images folder {folder} not found")
    samples = []
    for r in records:
        names = r.images or [f"{r.index:04d}.png"]
        for name in names:
            path = folder / name
            if not path.is_file():
                raise ValueError(f"{path} not found (image for prompt {r.index}: {r.text!r})")
            samples.append(sample_for(r, load_png(path), {"image": str(path)}))
    return samples


def sample_for(record: PromptRecord, image: np.ndarray, metadata: dict[str, Any] | None = None) -> Sample:
    return Sample(
        image=image,
        prompt=record.text,
        task=record.task,
        source=record.source,
        spec=record.spec,
        family=record.family,
        metadata={"prompt_index": record.index, **(metadata or {})},
    )
