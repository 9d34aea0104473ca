"""Optional judges that need weights a user has locally: CLIP-style preference, face identity.

Neither is needed on the Shapes world; both load lazily on first use, from a local path
only (nothing is downloaded).

``clip_preference`` (t2i): cosine similarity between the image and the prompt under a
CLIP-style dual encoder (``AutoModel`` + ``AutoProcessor``: CLIP, SigLIP, PickScore's CLIP
fine-tune), mapped linearly from [``low``, ``high``] to [0, 1] and clipped.

``face_identity`` (edit): cosine similarity of ArcFace embeddings (insightface) of the
largest face in the source and in the edited image. Policy when faces are missing:

* no face in the source → None: the judge does not apply, the composite leaves it out and
  renormalises the other weights;
* a face in the source but none in the result → 0: the identity was lost;
* otherwise → max(0, cosine similarity).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .base import Judge, Judgement, RewardConfigError, Sample


def _require_folder(name: str, path: str, hint: str) -> None:
    if not path or not Path(path).exists():
        raise RewardConfigError(f"judge {name!r}: model_path {path!r} does not exist; {hint}")


class CLIPPreference(Judge):
    kind = "clip_preference"
    tasks = ("t2i",)

    @dataclass
    class Config:
        model_path: str = ""
        #: cosine similarity mapped to score 0 (at or below) and to 1 (at or above)
        low: float = 0.15
        high: float = 0.35
        batch_size: int = 32
        device: str = "auto"

        def __post_init__(self) -> None:
            if not self.high > self.low:
                raise ValueError(f"high ({self.high}) must be above low ({self.low})")

    def __init__(self, name: str | None = None, config: dict[str, Any] | None = None) -> None:
        super().__init__(name, config)
        _require_folder(self.name, self.options.model_path, "point it at a local CLIP folder (config.json, weights, processor files)")
        self._model: Any = None
        self._processor: Any = None

    def load(self) -> None:
        if self._model is not None:
            return
        import torch
        from transformers import AutoModel, AutoProcessor

        device = self.options.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self._model = AutoModel.from_pretrained(self.options.model_path, local_files_only=True).to(device).eval()
        self._processor = AutoProcessor.from_pretrained(self.options.model_path, local_files_only=True)

    def similarity(self, images: list[np.ndarray], texts: list[str]) -> np.ndarray:
        """Cosine similarity of each image with its text."""
        import torch

        self.load()
        inputs = self._processor(text=texts, images=list(images), return_tensors="pt", padding=True, truncation=True)
        inputs = inputs.to(self._model.device)
        with torch.inference_mode():
            img = self._model.get_image_features(pixel_values=inputs["pixel_values"])
            txt = self._model.get_text_features(
                **{k: v for k, v in inputs.items() if k in ("input_ids", "attention_mask")}
            )
            img = getattr(img, "pooler_output", img)
            txt = getattr(txt, "pooler_output", txt)
            img = torch.nn.functional.normalize(img.float(), dim=-1)
            txt = torch.nn.functional.normalize(txt.float(), dim=-1)
        return (img * txt).sum(-1).cpu().numpy()

    def __call__(self, samples: list[Sample]) -> list[Judgement]:
        out: list[Judgement] = []
        lo, hi = self.options.low, self.options.high
        for i in range(0, len(samples), self.options.batch_size):
            chunk = samples[i : i + self.options.batch_size]
            sims = self.similarity([s.image for s in chunk], [s.prompt for s in chunk])
            for s, sim in zip(chunk, sims):
                score = float(np.clip((sim - lo) / (hi - lo), 0.0, 1.0))
                out.append(
                    Judgement(
                        score,
                        f"{self.name}: cosine similarity {sim:.3f} between the image and \"{s.prompt}\", "
                        f"mapped from [{lo:g}, {hi:g}] to {score:.2f}.",
                        {"cosine": float(sim)},
                        self.name,
                    )
                )
        return out


class FaceIdentity(Judge):
    kind = "face_identity"
    tasks = ("edit",)

    @dataclass
    class Config:
        #: folder holding an insightface model pack (e.g. ``buffalo_l``: detection + ArcFace ONNX files)
        model_path: str = ""
        det_size: int = 640

    def __init__(self, name: str | None = None, config: dict[str, Any] | None = None) -> None:
        super().__init__(name, config)
        _require_folder(self.name, self.options.model_path, "point it at a local insightface model pack (e.g. buffalo_l)")
        self._app: Any = None

    def embed(self, image: np.ndarray) -> np.ndarray | None:
        """Unit ArcFace embedding of the largest face in ``image`` (RGB uint8), or None."""
        if self._app is None:
            try:
                from insightface.app import FaceAnalysis
            except ImportError as exc:
                raise RewardConfigError(
                    f"judge {self.name!r} needs insightface and onnxruntime: pip install insightface onnxruntime"
                ) from exc
            pack = Path(self.options.model_path)
            self._app = FaceAnalysis(name=pack.name, root=str(pack.parent.parent), providers=["CPUExecutionProvider"])
            self._app.prepare(ctx_id=-1, det_size=(self.options.det_size, self.options.det_size))
        faces = self._app.get(np.ascontiguousarray(image[:, :, ::-1]))  # insightface expects BGR
        if not faces:
            return None
        face = max(faces, key=lambda f: (f.bbox[2] - f.bbox[0]) * (f.bbox[3] - f.bbox[1]))
        e = np.asarray(face.normed_embedding, dtype=np.float32)
        return e / (np.linalg.norm(e) + 1e-12)

    def __call__(self, samples: list[Sample]) -> list[Judgement]:
        out = []
        for s in samples:
            if s.task != "edit":
                out.append(self.not_applicable(s, "face identity compares an edit with its source"))
                continue
            src = self.embed(s.source)
            if src is None:
                out.append(self.not_applicable(s, "no face in the source image"))
                continue
            res = self.embed(s.image)
            if res is None:
                out.append(Judgement(0.0, f"{self.name}: a face in the source, none in the result: identity lost, 0.", {"cosine": 0.0}, self.name))
                continue
            cos = float(src @ res)
            score = max(0.0, cos)
            out.append(
                Judgement(score, f"{self.name}: ArcFace cosine similarity of the largest faces {cos:.3f} → {score:.2f}.", {"cosine": cos}, self.name)
            )
        return out
