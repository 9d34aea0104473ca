"""Vision-language judges: a local transformers model, or an OpenAI-compatible server.

Both send, per sample, the image (for editing: the source image, then the result) and a
rubric prompt read from a text file (``rubrics/<name>.txt``, or any path), followed by the
answer format of the mode:

* ``pointwise`` — answer with one line ``Score: x/10``;
* ``cot`` — reason step by step first, then one final line ``Score: x/10``.

``parse_score`` is strict and honest: exactly one score, on the last line, between 0 and 10
(and, if a scale is written, ``/10``) gives ``x / 10``; anything else — no score, two
scores, out of range, text after the score — gives None, keeps the raw answer as the
rationale and adds one to the judge's ``unparsed`` counter. A score is never guessed.

Local: ``AutoModelForImageTextToText`` + ``AutoProcessor`` and its chat template from a
local folder, batched, greedy. Served: ``POST {base_url}/chat/completions`` (vLLM, SGLang)
with concurrent requests, a timeout, retries with exponential backoff on timeouts,
connection errors and 408/429/5xx, images inline as ``data:image/png;base64`` URLs.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .base import Judge, Judgement, RewardConfigError, Sample

RUBRIC_DIR = Path(__file__).parent / "rubrics"
MODES = ("pointwise", "cot")
RETRY_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})

# "Score: 7/10", "score = 7", "**Score:** 7.5 / 10"; the word must start a token.
_SCORE_RE = re.compile(
    r"\bscore\b\s*\**\s*[:=]?\s*\**\s*(?P<value>[+-]?\d+(?:\.\d+)?)\s*(?:/\s*(?P<scale>\d+(?:\.\d+)?))?",
    re.IGNORECASE,
)
_BARE_RE = re.compile(r"^(?P<value>[+-]?\d+(?:\.\d+)?)\s*(?:/\s*(?P<scale>\d+(?:\.\d+)?))?$")
_TRAILING_OK = re.compile(r"^[\s*_.`)\]]*$")


def parse_score(text: str, mode: str = "cot") -> tuple[float | None, str]:
    """``(score in [0, 1], "")`` for an answer with exactly one final ``Score: x/10`` line,
    else ``(None, why)``. ``pointwise`` also accepts a bare ``7`` or ``7/10`` as the whole answer."""
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; expected one of {MODES}")
    stripped = (text or "").strip()
    if not stripped:
        return None, "empty answer"
    matches = list(_SCORE_RE.finditer(stripped))
    if not matches:
        bare = _BARE_RE.match(stripped.strip("*_`. \n"))
        if mode == "pointwise" and bare:
            return _check_value(bare.group("value"), bare.group("scale"))
        return None, "no 'Score: x/10' line"
    if len(matches) > 1:
        values = ", ".join(m.group(0).strip() for m in matches)
        return None, f"{len(matches)} scores ({values}); expected exactly one"
    m = matches[0]
    if not _TRAILING_OK.match(stripped[m.end() :]):
        return None, "text after the score line; the score must come last"
    return _check_value(m.group("value"), m.group("scale"))


def _check_value(value: str, scale: str | None) -> tuple[float | None, str]:
    v = float(value)
    if scale is not None and float(scale) != 10:
        return None, f"score {value}/{scale} is not on the /10 scale"
    if not 0 <= v <= 10:
        return None, f"score {value} outside 0-10"
    return v / 10.0, ""


@dataclass(frozen=True)
class Rubric:
    """A rubric prompt and the answer format of a mode, read from text files."""

    path: Path
    text: str
    format_text: str

    def render(self, sample: Sample) -> str:
        body = self.text.replace("{prompt}", sample.prompt).replace("{instruction}", sample.prompt)
        return f"{body.strip()}\n\n{self.format_text.strip()}"


def load_rubric(rubric: str, rubric_dir: str | None, mode: str) -> Rubric:
    """Rubric ``rubric`` (a name in ``rubric_dir`` without ``.txt``, or a file path) with the
    mode's format file (``format_<mode>.txt`` in the rubric's folder, else the bundled one)."""
    if mode not in MODES:
        raise RewardConfigError(f"unknown mode {mode!r}; expected one of {MODES}")
    folder = Path(rubric_dir) if rubric_dir else RUBRIC_DIR
    as_path = Path(rubric)
    path = as_path if (as_path.suffix or as_path.parent != Path(".")) else folder / f"{rubric}.txt"
    if not path.is_file():
        known = sorted(p.stem for p in folder.glob("*.txt") if not p.stem.startswith("format_")) if folder.is_dir() else []
        raise RewardConfigError(
            f"rubric file {path} not found; give a path to a .txt file or one of {known} in {folder}"
        )
    fmt = path.parent / f"format_{mode}.txt"
    if not fmt.is_file():
        fmt = RUBRIC_DIR / f"format_{mode}.txt"
    return Rubric(path=path, text=path.read_text(), format_text=fmt.read_text())


def upscale(image: np.ndarray, size: int | None) -> np.ndarray:
    """Nearest-neighbour resize to ``size``×``size`` (Shapes images are 32 px; VLMs see ≥ 224)."""
    if not size or image.shape[0] == size and image.shape[1] == size:
        return image
    from PIL import Image

    return np.asarray(Image.fromarray(image).resize((size, size), Image.NEAREST))


def png_data_url(image: np.ndarray) -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG", compress_level=1)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


class _VLMJudge(Judge):
    """What local and served judges share: rubric, mode, images, answer parsing, metrics."""

    @dataclass
    class Config:
        rubric: str = "alignment"
        rubric_dir: str | None = None
        mode: str = "cot"
        image_size: int | None = None
        #: pass/fail judging: 1 when the answer's score (0–10) is at least this, else 0; the
        #: answer's own score stays in the rationale and in the part ``score`` (null: the score itself)
        pass_at: float | None = None

    def __init__(self, name: str | None = None, config: dict[str, Any] | None = None) -> None:
        super().__init__(name, config)
        if self.options.pass_at is not None and not 0 < self.options.pass_at <= 10:
            raise RewardConfigError(f"judge {self.name!r}: pass_at is {self.options.pass_at}; use a score in (0, 10] (10: only a perfect answer passes) or null")
        self.rubric = load_rubric(self.options.rubric, self.options.rubric_dir, self.options.mode)
        self.metrics = {"requests": 0, "scored": 0, "unparsed": 0, "failed": 0, "retries": 0}
        self._metrics_lock = threading.Lock()

    def hash_extra(self) -> Any:
        return {"rubric": self.rubric.text, "format": self.rubric.format_text}

    def count(self, key: str, n: int = 1) -> None:
        with self._metrics_lock:
            self.metrics[key] = self.metrics.get(key, 0) + n

    def images_for(self, sample: Sample) -> list[np.ndarray]:
        imgs = [sample.source, sample.image] if sample.task == "edit" else [sample.image]
        return [upscale(im, self.options.image_size) for im in imgs]

    def judgement_from_answer(self, answer: str) -> Judgement:
        score, why = parse_score(answer, self.options.mode)
        if score is None:
            self.count("unparsed")
            return Judgement(None, f"{self.name}: no score ({why}). Raw answer:\n{answer}", {}, self.name)
        self.count("scored")
        head = f"{self.name} ({self.options.mode}, rubric {self.rubric.path.stem}): {score * 10:g}/10"
        if self.options.pass_at is None:
            return Judgement(score, f"{head}.\n{answer.strip()}", {}, self.name)
        passed = score * 10 >= self.options.pass_at - 1e-9
        verdict = f"{'passes' if passed else 'fails'} (pass at {self.options.pass_at:g}/10)"
        return Judgement(float(passed), f"{head}, {verdict}.\n{answer.strip()}", {"score": score}, self.name)


# ---------------------------------------------------------------------------------------
# Local model
# ---------------------------------------------------------------------------------------


class VLMLocalJudge(_VLMJudge):
    """A transformers image-text-to-text model from a local folder, batched and greedy."""

    kind = "vlm_local"

    @dataclass
    class Config(_VLMJudge.Config):
        model_path: str = ""
        batch_size: int = 8
        #: default 16 tokens in pointwise mode, 512 in cot mode
        max_new_tokens: int | None = None
        dtype: str = "auto"
        device: str = "auto"
        #: ``text``: the score the answer writes (greedy); ``expected``: the mean of the score
        #: token's distribution where the answer writes its score (``expected_score``), the
        #: written one staying in the part ``greedy``
        score_from: str = "text"

        def __post_init__(self) -> None:
            if not self.model_path:
                raise ValueError("model_path is required (a local folder with config.json and weights)")
            if self.score_from not in ("text", "expected"):
                raise ValueError(f"score_from must be 'text' or 'expected', got {self.score_from!r}")
            if self.batch_size < 1:
                raise ValueError(f"batch_size must be at least 1, got {self.batch_size}")
            if self.dtype not in ("auto", "float32", "bfloat16", "float16"):
                raise ValueError(f"dtype must be auto, float32, bfloat16 or float16, got {self.dtype!r}")

    def __init__(self, name: str | None = None, config: dict[str, Any] | None = None) -> None:
        super().__init__(name, config)
        path = Path(self.options.model_path)
        if not (path / "config.json").is_file():
            raise RewardConfigError(
                f"judge {self.name!r}: model_path {path} is not a local model folder (no config.json); "
                "download the weights first (e.g. `hf download Qwen/Qwen2.5-VL-7B-Instruct --local-dir DIR`)"
            )
        #: the only image size the model reads, when its folder's manifest.json names one (a
        #: judge trained on Shapes-world images); None: any size the processor accepts
        self.input_size = model_input_size(path)
        if self.input_size and self.options.image_size and self.options.image_size != self.input_size:
            raise RewardConfigError(
                f"judge {self.name!r}: the model at {path} reads {self.input_size}×{self.input_size} images "
                f"(its manifest.json), but image_size is {self.options.image_size}; set image_size: null or {self.input_size}"
            )
        self._model: Any = None
        self._processor: Any = None

    def load(self) -> None:
        """Load the model and processor (done on first use)."""
        if self._model is not None:
            return
        import torch
        from transformers import AutoModelForImageTextToText, AutoProcessor

        path = self.options.model_path
        device = self.options.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        dtype = {"auto": "auto", "float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[
            self.options.dtype
        ]
        self._model = AutoModelForImageTextToText.from_pretrained(path, dtype=dtype, local_files_only=True)
        self._model.to(device).eval()
        try:
            self._processor = AutoProcessor.from_pretrained(path, local_files_only=True)
        except ImportError:
            # transformers builds Qwen-VL processors with a video sub-processor that needs
            # torchvision; without it, compose the tokenizer and image processor ourselves.
            self._processor = QwenStyleProcessor.from_pretrained(path)
        self._processor.tokenizer.padding_side = "left"

    def __call__(self, samples: list[Sample]) -> list[Judgement]:
        out: list[Judgement] = []
        bs = self.options.batch_size
        for i in range(0, len(samples), bs):
            if self.options.score_from == "expected":
                answers, expected = self.generate_with_expected(samples[i : i + bs])
                out.extend(self.with_expected(self.judgement_from_answer(a), e) for a, e in zip(answers, expected))
            else:
                out.extend(self.judgement_from_answer(a) for a in self.generate(samples[i : i + bs]))
        return out

    def with_expected(self, j: Judgement, expected: float | None) -> Judgement:
        """A judgement scored by the expected score (the written one kept as ``greedy``); an
        answer without a readable score stays unscored."""
        if j.score is None or expected is None:
            return j
        written = j.parts.get("score", j.score) if self.options.pass_at is not None else j.score
        score = expected if self.options.pass_at is None else float(expected * 10 >= self.options.pass_at - 1e-9)
        return Judgement(score, f"{j.rationale}\nExpected score (from the score token's probabilities): {expected * 10:.2f}/10.",
                         {**j.parts, "greedy": written, "expected": expected}, j.judge)

    def requests_for(self, samples: list[Sample]) -> list[tuple[list[np.ndarray], str]]:
        """(images, rubric text) per sample, refusing images of a size the model cannot read."""
        requests = []
        for s in samples:
            imgs = self.images_for(s)
            if self.input_size:
                for im in imgs:
                    if im.shape[:2] != (self.input_size, self.input_size):
                        raise ValueError(
                            f"judge {self.name!r}: the model at {self.options.model_path} reads "
                            f"{self.input_size}×{self.input_size} images; got {im.shape[1]}×{im.shape[0]} "
                            f"(set image_size: {self.input_size} to resize, nearest-neighbour)"
                        )
            requests.append((imgs, self.rubric.render(s)))
        return requests

    def generate(self, samples: list[Sample]) -> list[str]:
        """The model's raw answers for ``samples`` (one batch, greedy)."""
        self.load()
        requests = self.requests_for(samples)
        ids = generate_token_ids(self._model, self._processor, requests, self.max_new_tokens)
        self.count("requests", len(samples))
        return self.decode(ids)

    @property
    def max_new_tokens(self) -> int:
        return self.options.max_new_tokens or (16 if self.options.mode == "pointwise" else 512)

    def generate_with_expected(self, samples: list[Sample]) -> tuple[list[str], list[float | None]]:
        """The raw answers (greedy) and each answer's expected score in [0, 1] (None where the
        answer writes no one-token score after ``Score:``)."""
        self.load()
        requests = self.requests_for(samples)
        values = score_token_values(self._processor.tokenizer)
        ids, probs = generate_token_ids(self._model, self._processor, requests, self.max_new_tokens, watch=sorted(values))
        self.count("requests", len(samples))
        tok = self._processor.tokenizer
        expected = []
        for row in range(ids.shape[0]):
            t = score_position(tok, ids[row].tolist(), values)
            if t is None:
                expected.append(None)
                continue
            dist: dict[int, float] = {}
            for k, tid in enumerate(sorted(values)):
                dist[values[tid]] = dist.get(values[tid], 0.0) + float(probs[t][row, k])
            expected.append(expected_score(dist))
        return self.decode(ids), expected

    def decode(self, token_ids: Any) -> list[str]:
        return self._processor.batch_decode(token_ids, skip_special_tokens=True)


def model_input_size(path: str | Path) -> int | None:
    """The image side a model folder's ``manifest.json`` fixes (``image_size``), else None."""
    mpath = Path(path) / "manifest.json"
    if not mpath.is_file():
        return None
    try:
        size = json.loads(mpath.read_text()).get("image_size")
    except (json.JSONDecodeError, AttributeError) as exc:
        raise RewardConfigError(f"{mpath}: not a JSON object ({exc})") from exc
    return int(size) if size else None


def chat_inputs(processor: Any, requests: list[tuple[list[np.ndarray], str]]) -> Any:
    """Model inputs for a batch of (images, text) user turns, each ending with the generation
    prompt: the chat template with one image placeholder per image, then the processor."""
    from PIL import Image

    texts, images = [], []
    for imgs, text in requests:
        content = [{"type": "image"} for _ in imgs] + [{"type": "text", "text": text}]
        texts.append(processor.apply_chat_template([{"role": "user", "content": content}], add_generation_prompt=True, tokenize=False))
        images.append([Image.fromarray(im) for im in imgs])
    return processor(text=texts, images=images, padding=True, return_tensors="pt")


def generate_token_ids(model: Any, processor: Any, requests: list[tuple[list[np.ndarray], str]], max_new_tokens: int,
                       watch: list[int] | None = None) -> Any:
    """Greedy answers (new token ids, left-padded batch) to (images, text) user turns, with the
    KV cache; the shared core of ``VLMLocalJudge`` and ``qwenrl judge serve``. With ``watch``
    (token ids) also returns, per generated position, the probabilities of those tokens
    (a list of (batch, len(watch)) arrays): only those columns are kept, never the whole vocabulary."""
    import torch
    from transformers import LogitsProcessorList

    inputs = chat_inputs(processor, requests).to(model.device)
    tok = processor.tokenizer
    captured: list[np.ndarray] = []

    def capture(input_ids: Any, scores: Any) -> Any:
        captured.append(torch.softmax(scores.float(), dim=-1)[:, watch].cpu().numpy())
        return scores

    with torch.inference_mode():
        ids = model.generate(
            **inputs, do_sample=False, max_new_tokens=max_new_tokens, use_cache=True,
            pad_token_id=tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id,
            logits_processor=LogitsProcessorList([capture]) if watch else None,
        )
    new = ids[:, inputs["input_ids"].shape[1] :]
    return (new, captured) if watch else new


def score_token_values(tokenizer: Any) -> dict[int, int]:
    """Token id → score for the scores 0–10 a tokenizer writes as one token (with or without a
    leading space); scores that take two tokens are left out of the expected score."""
    out: dict[int, int] = {}
    for v in range(11):
        for text in (str(v), f" {v}"):
            ids = tokenizer.encode(text, add_special_tokens=False)
            if len(ids) == 1:
                out[ids[0]] = v
    return out


_SCORE_PREFIX = re.compile(r"score\s*\**\s*[:=]\s*\**\s*$", re.IGNORECASE)


def score_position(tokenizer: Any, ids: list[int], values: dict[int, int]) -> int | None:
    """The position of the last generated token that writes a score: a one-token score right
    after ``Score:``; None when there is none."""
    pieces = tokenizer.batch_decode([[i] for i in ids], skip_special_tokens=False)
    text, found = "", None
    for t, (tid, piece) in enumerate(zip(ids, pieces)):
        if tid in values and _SCORE_PREFIX.search(text):
            found = t
        text += piece
    return found


def expected_score(distribution: dict[int, float]) -> float | None:
    """The mean score (in [0, 1]) of a distribution over scores 0–10 (value → probability),
    renormalised over the values given; None when they carry no probability."""
    total = sum(max(p, 0.0) for p in distribution.values())
    if total <= 0:
        return None
    return sum(v * max(p, 0.0) for v, p in distribution.items()) / total / 10


class QwenStyleProcessor:
    """Tokenizer + image processor + chat template of a Qwen-VL style model folder.

    Used only when ``AutoProcessor`` cannot be built (Qwen2-VL/2.5-VL/3-VL processors need
    torchvision for their video part). Each image placeholder token in the chat text is
    expanded to the number of vision tokens the image processor's grid gives.
    """

    def __init__(self, tokenizer: Any, image_processor: Any, chat_template: str) -> None:
        self.tokenizer = tokenizer
        self.image_processor = image_processor
        self.chat_template = chat_template
        self.image_token = getattr(tokenizer, "image_token", None) or "<|image_pad|>"
        if tokenizer.convert_tokens_to_ids(self.image_token) in (None, tokenizer.unk_token_id):
            raise RewardConfigError(
                f"the model's processor could not be built ({self.image_token} is not in the tokenizer); "
                "install torchvision so that transformers' AutoProcessor can load it"
            )

    @classmethod
    def from_pretrained(cls, path: str | Path) -> "QwenStyleProcessor":
        from transformers import AutoImageProcessor, AutoTokenizer

        path = Path(path)
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        image_processor = AutoImageProcessor.from_pretrained(path, local_files_only=True)
        template = getattr(tokenizer, "chat_template", None)
        if not template and (path / "chat_template.jinja").is_file():
            template = (path / "chat_template.jinja").read_text()
        if not template and (path / "chat_template.json").is_file():
            template = json.loads((path / "chat_template.json").read_text())["chat_template"]
        if not template:
            raise RewardConfigError(f"{path}: no chat template (chat_template.jinja or in tokenizer_config.json)")
        return cls(tokenizer, image_processor, template)

    def apply_chat_template(self, messages: list[dict], add_generation_prompt: bool = True, tokenize: bool = False) -> str:
        return self.tokenizer.apply_chat_template(
            messages, chat_template=self.chat_template, add_generation_prompt=add_generation_prompt, tokenize=tokenize
        )

    def __call__(self, text: list[str], images: list[list[Any]], padding: bool = True, return_tensors: str = "pt") -> Any:
        flat = [im for per_sample in images for im in per_sample]
        vision = self.image_processor(images=flat, return_tensors=return_tensors)
        merge = getattr(self.image_processor, "merge_size", 2) ** 2
        counts = iter(int(g.prod()) // merge for g in vision["image_grid_thw"])
        expanded = []
        for t in text:
            parts = t.split(self.image_token)
            expanded.append(parts[0] + "".join(self.image_token * next(counts) + p for p in parts[1:]))
        enc = self.tokenizer(expanded, padding=padding, return_tensors=return_tensors)
        # Which tokens are image tokens: transformers builds the 3D (M-RoPE) positions of the
        # vision tokens from this; without it they would get plain 1D text positions.
        enc["mm_token_type_ids"] = (enc["input_ids"] == self.tokenizer.convert_tokens_to_ids(self.image_token)).int()
        enc.update(vision)
        return enc

    def batch_decode(self, token_ids: Any, skip_special_tokens: bool = True) -> list[str]:
        return self.tokenizer.batch_decode(token_ids, skip_special_tokens=skip_special_tokens)


# ---------------------------------------------------------------------------------------
# Served model (OpenAI-compatible chat completions)
# ---------------------------------------------------------------------------------------


class VLMServedJudge(_VLMJudge):
    """A model behind an OpenAI-compatible ``/v1/chat/completions`` endpoint."""

    kind = "vlm_served"

    @dataclass
    class Config(_VLMJudge.Config):
        base_url: str = "http://127.0.0.1:8000/v1"
        model: str = ""
        #: name of the environment variable holding the API key (vLLM accepts any key)
        api_key_env: str | None = None
        concurrency: int = 16
        timeout_s: float = 60.0
        max_retries: int = 3
        backoff_s: float = 0.5
        #: default 16 tokens in pointwise mode, 1024 in cot mode
        max_tokens: int | None = None
        temperature: float = 0.0

        def __post_init__(self) -> None:
            if not self.model:
                raise ValueError("model is required (the name the server serves, e.g. Qwen/Qwen2.5-VL-7B-Instruct)")
            if not self.base_url.startswith(("http://", "https://")):
                raise ValueError(f"base_url must start with http:// or https://, got {self.base_url!r}")
            if self.concurrency < 1 or self.max_retries < 0 or self.timeout_s <= 0 or self.backoff_s < 0:
                raise ValueError("concurrency ≥ 1, max_retries ≥ 0, timeout_s > 0 and backoff_s ≥ 0 are required")

    def __init__(self, name: str | None = None, config: dict[str, Any] | None = None) -> None:
        super().__init__(name, config)
        self.url = self.options.base_url.rstrip("/") + "/chat/completions"
        self._client: Any = None
        self._client_lock = threading.Lock()
        #: waits between retries; tests replace it to run without sleeping
        self.sleep: Callable[[float], None] = time.sleep

    def client(self) -> Any:
        import httpx

        with self._client_lock:
            if self._client is None:
                self._client = httpx.Client(
                    timeout=httpx.Timeout(self.options.timeout_s),
                    limits=httpx.Limits(max_connections=self.options.concurrency, max_keepalive_connections=self.options.concurrency),
                )
            return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def image_urls(self, sample: Sample) -> list[str]:
        """PNG data URLs of the sample's images, memoised: the components of a composite
        that share a server send the same images."""
        key = f"png_urls_{self.options.image_size}"
        if key not in sample.memo:
            sample.memo[key] = [png_data_url(im) for im in self.images_for(sample)]
        return sample.memo[key]

    def payload(self, sample: Sample) -> dict[str, Any]:
        content: list[dict[str, Any]] = [
            {"type": "image_url", "image_url": {"url": url}} for url in self.image_urls(sample)
        ]
        content.append({"type": "text", "text": self.rubric.render(sample)})
        max_tokens = self.options.max_tokens or (16 if self.options.mode == "pointwise" else 1024)
        return {
            "model": self.options.model,
            "messages": [{"role": "user", "content": content}],
            "max_tokens": max_tokens,
            "temperature": self.options.temperature,
        }

    def __call__(self, samples: list[Sample]) -> list[Judgement]:
        if not samples:
            return []
        workers = min(self.options.concurrency, len(samples))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"judge-{self.name}") as pool:
            return list(pool.map(self._judge_one, samples))

    def _judge_one(self, sample: Sample) -> Judgement:
        answer, error = self.request(self.payload(sample))
        if answer is None:
            self.count("failed")
            return Judgement(None, f"{self.name}: no score (request failed: {error}).", {}, self.name, transient=True)
        return self.judgement_from_answer(answer)

    def request(self, payload: dict[str, Any]) -> tuple[str | None, str]:
        """``(answer text, "")`` or ``(None, error)`` after retries with exponential backoff."""
        import httpx

        headers = {"Content-Type": "application/json"}
        if self.options.api_key_env:
            headers["Authorization"] = f"Bearer {os.environ.get(self.options.api_key_env, '')}"
        tries = self.options.max_retries + 1
        error = ""
        for attempt in range(tries):
            self.count("requests")
            try:
                resp = self.client().post(self.url, json=payload, headers=headers)
                if resp.status_code in RETRY_STATUS:
                    error = f"HTTP {resp.status_code}"
                elif resp.status_code >= 400:
                    return None, f"HTTP {resp.status_code}: {resp.text[:300]}"
                else:
                    return _answer_text(resp.json()), ""
            except httpx.TimeoutException:
                error = f"timed out after {self.options.timeout_s:g} s"
            except httpx.TransportError as exc:
                error = f"{type(exc).__name__}: {exc}"
            except (ValueError, KeyError, IndexError, TypeError) as exc:
                return None, f"malformed response ({type(exc).__name__}: {exc})"
            if attempt + 1 < tries:
                self.count("retries")
                self.sleep(self.options.backoff_s * (2**attempt))
        return None, f"{error} (after {tries} tries)"


def _answer_text(body: dict[str, Any]) -> str:
    content = body["choices"][0]["message"]["content"]
    if isinstance(content, list):  # some servers return content parts
        content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
    if not isinstance(content, str):
        raise TypeError(f"message content is {type(content).__name__}")
    return content
