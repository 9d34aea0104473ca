"""The one reward signature: ``judge(samples: list[Sample]) -> list[Judgement]``.

Every judge — programmatic Shapes judges, vision-language judges (local or served), the
composite reward itself — is a class with a ``name``, a ``config`` (a JSON-able dict, hashed
into cache keys) and ``__call__`` over a batch. A judgement's ``score`` is in [0, 1], or
None when the judge does not apply or could not decide; ``rationale`` says why, step by
step; ``parts`` are named sub-scores.

Judge kinds are named in ``JUDGE_KINDS`` (kind → "module:Class") and imported only when
used, so building a Shapes reward never imports torch or transformers.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import json
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from qwenrl.tasks import TASKS


JUDGE_KINDS: dict[str, str] = {
    "shapes_alignment": "qwenrl.rewards.shapes:ShapesAlignment",
    "shapes_aesthetics": "qwenrl.rewards.shapes:ShapesAesthetics",
    "shapes_fidelity": "qwenrl.rewards.shapes:ShapesFidelity",
    "shapes_instruction": "qwenrl.rewards.shapes:ShapesInstruction",
    "shapes_identity": "qwenrl.rewards.shapes:ShapesIdentity",
    "shapes_oracle": "qwenrl.rewards.shapes:ShapesOracle",
    "shapes_clarity": "qwenrl.rewards.shapes:ShapesClarity",
    "vlm_local": "qwenrl.rewards.vlm:VLMLocalJudge",
    "vlm_served": "qwenrl.rewards.vlm:VLMServedJudge",
    "shapes_reader": "qwenrl.rewards.reader:ShapesReaderJudge",
    "pairwise_winrate": "qwenrl.rewards.pairwise:PairwiseWinRate",
    "clip_preference": "qwenrl.rewards.optional:CLIPPreference",
    "face_identity": "qwenrl.rewards.optional:FaceIdentity",
}


class RewardConfigError(ValueError):
    """A reward or judge configuration that cannot be used; the message names the fix."""


@dataclass(eq=False)
class Sample:
    """One image to judge, with what it was asked to show.

    ``prompt`` is the prompt text for text-to-image and the instruction for editing
    (``instruction`` is an alias). ``spec`` is the structured prompt when known (a
    ``T2IPrompt`` or an ``EditTask`` of the Shapes world); judges that need it and do not
    get it answer None. ``memo`` holds values derived from this sample (parsed scenes,
    content hashes) that several judges share within one process; it is not part of the
    sample's identity.
    """

    image: np.ndarray
    prompt: str
    task: str = "t2i"
    source: np.ndarray | None = None
    spec: Any = None
    family: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    memo: dict[str, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.image = _as_image(self.image, "image")
        if self.task not in TASKS:
            raise ValueError(f"unknown task {self.task!r}; expected one of {TASKS}")
        if self.task == "edit":
            if self.source is None:
                raise ValueError("an edit sample needs its source image (source=...)")
            self.source = _as_image(self.source, "source")
        elif self.source is not None:
            self.source = _as_image(self.source, "source")
        if self.family is None and self.spec is not None:
            self.family = getattr(self.spec, "family", None)

    @property
    def instruction(self) -> str | None:
        return self.prompt if self.task == "edit" else None

    @classmethod
    def from_spec(cls, image: np.ndarray, spec: Any, source: np.ndarray | None = None, **metadata: Any) -> "Sample":
        """A sample for a Shapes ``T2IPrompt`` or ``EditTask``; an edit's source image defaults
        to the rendering of its source scene."""
        task = getattr(spec, "task", "t2i")
        if task == "edit" and source is None:
            from ..world.scene import render

            source = render(spec.source)
        return cls(image=image, prompt=spec.text, task=task, source=source, spec=spec, metadata=dict(metadata))


def _as_image(x: Any, what: str) -> np.ndarray:
    arr = np.asarray(x)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"{what} must be an (H, W, 3) uint8 array, got shape {arr.shape}")
    if arr.dtype != np.uint8:
        raise ValueError(f"{what} must be uint8 (0-255), got {arr.dtype}")
    return arr


@dataclass
class Judgement:
    """A judge's verdict on one sample.

    ``score`` in [0, 1] or None (does not apply, or no honest score could be read).
    ``transient`` marks a failure that may not repeat (a timeout, a server error): such
    judgements are never cached.
    """

    score: float | None
    rationale: str
    parts: dict[str, float]
    judge: str
    transient: bool = False

    def __post_init__(self) -> None:
        if self.score is not None:
            s = float(self.score)
            if not (s == s and -1e-9 <= s <= 1 + 1e-9):  # s == s rejects NaN
                raise ValueError(f"judge {self.judge!r} gave score {self.score!r}, outside [0, 1]")
            self.score = min(max(s, 0.0), 1.0)
        self.parts = {k: float(v) for k, v in self.parts.items()}

    def to_dict(self) -> dict[str, Any]:
        return {"score": self.score, "parts": self.parts, "rationale": self.rationale, "judge": self.judge}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Judgement":
        return cls(score=d["score"], rationale=d["rationale"], parts=d.get("parts", {}), judge=d["judge"])


class Judge(ABC):
    """Base class of every judge.

    Subclasses set ``kind`` and a ``Config`` dataclass (one field per option, defaults
    given); ``__init__`` validates the options against it, so an unknown key or a wrong
    value fails when the reward is loaded, not in the middle of training.
    """

    kind: ClassVar[str] = ""
    #: tasks the judge scores; samples of other tasks get None
    tasks: ClassVar[tuple[str, ...]] = TASKS
    #: a sample's score depends on the other samples of the batch (a group win rate): such
    #: judges are never cached and always see the whole batch
    group_relative: ClassVar[bool] = False

    @dataclass
    class Config:
        pass

    def __init__(self, name: str | None = None, config: dict[str, Any] | None = None) -> None:
        self.name = name or self.kind
        self.options = parse_options(self.Config, config or {}, where=f"judge {self.name!r} ({self.kind})")
        self.config: dict[str, Any] = {"kind": self.kind, **dataclasses.asdict(self.options)}
        #: counters a trainer may log (e.g. ``unparsed`` for VLM judges)
        self.metrics: dict[str, int] = {}

    @property
    def config_hash(self) -> str:
        """Hash of everything that changes this judge's answers (kind, options, rubric text)."""
        payload = json.dumps({"config": self.config, "extra": self.hash_extra()}, sort_keys=True, default=str)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

    def hash_extra(self) -> Any:
        """Extra content that changes answers without being in ``config`` (e.g. a rubric's text)."""
        return None

    @abstractmethod
    def __call__(self, samples: list[Sample]) -> list[Judgement]:
        """One judgement per sample, in order."""

    def not_applicable(self, sample: Sample, why: str) -> Judgement:
        return Judgement(None, f"{self.name}: does not apply ({why}).", {}, self.name)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, config={self.config!r})"


def parse_options(config_cls: type, options: dict[str, Any], where: str) -> Any:
    """Build ``config_cls`` from ``options``, naming unknown keys and the allowed ones."""
    if not isinstance(options, dict):
        raise RewardConfigError(f"{where}: options must be a mapping, got {type(options).__name__}")
    allowed = {f.name for f in dataclasses.fields(config_cls)}
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise RewardConfigError(
            f"{where}: unknown option(s) {unknown}; allowed: {sorted(allowed) or 'none'}"
        )
    try:
        return config_cls(**options)
    except (TypeError, ValueError) as exc:
        raise RewardConfigError(f"{where}: {exc}") from exc


def judge_class(kind: str) -> type[Judge]:
    """The class registered for ``kind``; a clear error for an unknown kind."""
    target = JUDGE_KINDS.get(kind)
    if target is None:
        raise RewardConfigError(f"unknown judge kind {kind!r}; known kinds: {', '.join(sorted(JUDGE_KINDS))}")
    module_name, attr = target.split(":")
    return getattr(importlib.import_module(module_name), attr)


def build_judge(kind: str, name: str | None = None, config: dict[str, Any] | None = None) -> Judge:
    return judge_class(kind)(name=name, config=config)


def image_hash(image: np.ndarray) -> str:
    """Content hash of an image (shape and bytes)."""
    h = hashlib.blake2b(digest_size=16)
    h.update(repr(image.shape).encode())
    h.update(np.ascontiguousarray(image).tobytes())
    return h.hexdigest()


def sample_key(sample: Sample) -> str:
    """Content key of a sample: image, source image, task, prompt text and spec (memoised)."""
    key = sample.memo.get("key")
    if key is None:
        h = hashlib.blake2b(digest_size=16)
        h.update(image_hash(sample.image).encode())
        h.update(b"|" + (image_hash(sample.source).encode() if sample.source is not None else b"-"))
        h.update(b"|" + sample.task.encode() + b"|" + sample.prompt.encode())
        if sample.spec is not None:
            spec = sample.spec.to_dict() if hasattr(sample.spec, "to_dict") else sample.spec
            h.update(b"|" + json.dumps(spec, sort_keys=True, default=str).encode())
        key = sample.memo["key"] = h.hexdigest()
    return key
