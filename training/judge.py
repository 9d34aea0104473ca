"""Train the Shapes world's chain-of-thought judge: a tiny Qwen2-VL from scratch, taught by the
programmatic judges, in one file that reads top to bottom.

The judge reads the image (for editing: the source, then the result) and a short rubric with
the prompt or instruction, then writes the compact chain of thought of
``qwenrl.rewards.shapes_cot`` — the strict checker's requirements, what it sees, each
requirement met or not — and a final ``Score: x/10`` line (10 exactly when the checker passes).

1. **Data** (``RUN/data/``, chunks of safetensors images and JSON lines, each written once):
   prompts and edit tasks drawn from the grammar's ``train`` split only (test and
   compositional texts never), turned into images two ways — the bundled models' own samples
   (``models``, under several sampling settings, so the judge sees their real failures:
   fragments, blobs, wrong colour binding, wrong relations) and grammar renders, correct or
   with one thing wrong, some with noise; every image is labelled by the strict checker and
   the partial-credit judges (``target_for``). A separate validation set (model samples on
   other draws) gives the learning curve.
2. **Training**, in two stages: first the judge learns to say what it sees (each image alone,
   asked ``CAPTION_PROMPT``, answered with the Seen line), then to judge (the whole answer);
   next-token cross-entropy on the answer only, AdamW with warm-up and one cosine decay,
   seeded batch draws (a function of the step), resumable from ``RUN/state/``
   (safetensors + JSON); every ``eval_every`` steps the judge answers the validation samples
   greedily through the same path as ``vlm_local``, and its pass/fail agreement with the
   checker and parse rate go to ``metrics.jsonl``.
3. **Export**: ``RUN/checkpoints/step-N`` (and ``--export DIR``): transformers weights
   (safetensors), tokenizer, image processor, chat template, the rubrics it was trained on,
   ``training_texts.json`` (every prompt it saw) and ``manifest.json`` (data, step, config).

    python -m training.judge --config training/configs/judge.yaml --run runs/judge
    python -m training.judge --config training/configs/judge.yaml --run runs/judge --export data/models/shapes-judge

Rerunning the same command resumes (data chunks already written are kept, training continues
from the last state). On 2 CPU cores, run it under the shared lock:
``flock /tmp/qwenrl-cpu.lock python -m training.judge ...``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import re
import shutil
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from qwenrl.rewards.base import Sample
from qwenrl.rewards.shapes_cot import BLOB, corpus_words, read_answer, target_for
from qwenrl.rewards.vlm import QwenStyleProcessor, generate_token_ids, load_rubric
from qwenrl.world.contrast import minimally_wrong
from qwenrl.world.grammar import (
    BACKGROUND_COLORS,
    EDIT_FAMILIES,
    T2I_FAMILIES,
    EditTask,
    T2IPrompt,
    sample_edit,
    sample_t2i_prompt_in_split,
    scene_for_prompt,
)
from qwenrl.world.parse import noisy_render
from qwenrl.world.scene import IMAGE_SIZE, OBJECT_COLORS, SHAPES, SIZES, Obj, Scene, fits, place, render
from qwenrl.tasks import TASKS
from training.common import ConfigError, RunFolder, config_dict, load_config, load_train_state, log, lr_at, save_train_state

RUBRIC_DIR = Path(__file__).resolve().parents[1] / "qwenrl" / "rewards" / "rubrics" / "shapes_judge"
RUBRIC_FOR_TASK = {"t2i": "t2i", "edit": "edit"}
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>",
                  "<|video_pad|>"]
UNK = "<unk>"
# Word-level pieces: a numbered step "(3)", the "/10" of a score, a word, a number or one mark,
# each with the whitespace before it (as GPT-2 does), so that decoding gives back the text exactly.
PIECE_PATTERN = r"\s*\(\d+\)|\s*/10|\s*[A-Za-z]+|\s*\d+|\s*[^\sA-Za-z\d]|\s+"
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n"
    "{% if m['content'] is string %}{{ m['content'] }}{% else %}{% for c in m['content'] %}"
    "{% if c['type'] == 'image' or c['type'] == 'image_url' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% else %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
#: what the first training stage asks about each image (its answer: the Seen line)
CAPTION_PROMPT = "What do you see?"
DEFAULT_MODELS = ["data/models/shapes-base", "data/models/shapes-grpo-t2i", "data/models/shapes-grpo-edit",
                  "data/models/shapes-distilled"]


@dataclass
class JudgeConfig:
    seed: int = 0
    """Seeds every prompt draw, render, model sample, batch draw and the weight initialisation."""

    # -- data ---------------------------------------------------------------------------------
    models: list[str] = field(default_factory=lambda: list(DEFAULT_MODELS))
    """Image models whose own samples (on train-split prompts) the judge learns from."""
    sampling: list[list[float]] = field(default_factory=lambda: [[20, 2.0], [10, 1.0], [20, 1.0], [10, 3.0]])
    """(steps, guidance scale) settings the model samples cycle through: more kinds of failures."""
    model_examples: int = 12288
    """Model samples per task (a multiple of chunk_size)."""
    render_examples: int = 8192
    """Grammar renders per task (a multiple of chunk_size): correct or with one thing wrong."""
    render_wrong_fraction: float = 0.6
    """Share of renders with one thing wrong (a colour, shape, size, count, relation, background or object)."""
    render_noisy_fraction: float = 0.5
    """Share of renders drawn with edge jitter, specks and pixel noise (``noisy_render``)."""
    val_examples: int = 512
    """Validation model samples per task (other draws of train-split prompts; a multiple of chunk_size), for the learning curve."""
    contrast_fraction: float = 0.0
    """Share of model samples and renders that are also shown with a minimally wrong prompt
    (``qwenrl.world.contrast``: one colour, shape, size, count, relation, background or edit
    parameter changed), answered by the checker: the judge has to read the prompt against the image."""
    family_weights: dict[str, dict[str, float]] = field(default_factory=dict)
    """Per task, the relative weight of each prompt family in the draws (missing: the grammar's
    uniform draw); e.g. the test split's mix, so the data is as hard as what the judge is measured on."""
    pair_examples: int = 0
    """Pairwise examples per task (a multiple of chunk_size): two images of one prompt (two model
    samples, or a model sample and a grammar render), answered with the pairwise comparison
    (``qwenrl.rewards.pairwise``). 0: a pointwise-only judge."""
    val_pair_examples: int = 0
    """Validation pairs per task (a multiple of chunk_size)."""
    pair_render_fraction: float = 0.3
    """Share of pairs whose second image is a grammar render (correct or one thing wrong) instead of a model sample."""
    seen_positions: bool = False
    """Answers give each object's centroid in pixels (``small red circle at 12 20``) and, for an
    edit, a ``Before:`` line reading the source image (``qwenrl.rewards.shapes_cot``), so that the
    relation, kept-in-place and move verdicts follow from numbers the answer has written."""
    chunk_size: int = 512
    """Examples per data chunk (the unit written to the data folder and resumed)."""
    data_dir: str | None = None
    """Folder of the data chunks (default RUN/data); runs with the same data fields may share one."""

    # -- architecture (Qwen2-VL) ---------------------------------------------------------------
    hidden_size: int = 192
    """Width of the language model (and of the vision tokens it reads)."""
    num_layers: int = 4
    """Language-model decoder layers."""
    num_heads: int = 6
    """Attention heads of the language model (head size hidden_size / num_heads; must be 32 for the M-RoPE split)."""
    num_kv_heads: int = 2
    """Key/value heads of the language model (grouped-query attention)."""
    intermediate_size: int = 512
    """MLP width of the language model."""
    vision_hidden_size: int = 128
    """Width of the vision encoder."""
    vision_layers: int = 3
    """Vision encoder blocks."""
    vision_heads: int = 4
    """Vision attention heads."""
    patch_size: int = 4
    """Pixels per vision patch side; 2×2 patches merge into one language-model token."""
    init_from: str | None = None
    """An exported judge folder whose weights start this run (same architecture and vocabulary;
    anything else is refused); None: random initialisation. A fine-tune of a bundled judge."""
    perception_weight: float = 0.0
    """Weight of a dense perception loss added to every step: each vision token the language model
    reads (an 8×8-pixel cell with 4-pixel patches) predicts, through a linear head kept with the
    checkpoint (``PERCEPTION_HEAD``; judging never reads it), the shape class of the object
    covering most of the cell in the parser's reading (``cell_shape_labels``: none, circle,
    square, triangle, or blob below the checker's IoU 0.5).
    Next-token loss on a Seen line teaches shapes only through a few words per image; this
    supervises every cell of every image. 0: off."""

    # -- optimisation ------------------------------------------------------------------------
    caption_steps: int = 1000
    """First stage: steps in which the judge only learns to say what it sees (the Seen part of
    its answer, for every image of the data, asked with ``CAPTION_PROMPT``), so that it reads
    the image before it learns to judge instead of guessing from the prompt."""
    caption_batch_size: int = 64
    """Images per caption step (a caption example is about a third as long as a judge example)."""
    steps: int = 1600
    """Second stage: judge steps (the whole answer), after the caption steps."""
    batch_size: int = 32
    """Examples per judge step."""
    edit_fraction: float = 0.5
    """Share of editing examples in each batch."""
    pair_fraction: float = 0.3
    """Share of pairwise examples in each judge batch (when there are any)."""
    length_buckets: int = 1
    """Draw this many steps' examples at once and batch them by length (``draw_batch``): fewer
    padded tokens, so faster steps over the same examples. 1: each step draws its own batch."""
    lr: float = 1e-3
    """Peak AdamW learning rate."""
    warmup_steps: int = 200
    """Linear warm-up steps."""
    min_lr_ratio: float = 0.1
    """Cosine decay ends at lr × this."""
    weight_decay: float = 0.01
    """AdamW weight decay (matrices only)."""
    grad_clip: float = 1.0
    """Gradient-norm clip."""

    # -- bookkeeping -------------------------------------------------------------------------
    eval_every: int = 250
    """Greedy validation (pass/fail agreement, parse rate) every N steps (0: only at the end)."""
    eval_examples: int = 128
    """Validation samples per task answered greedily at each evaluation."""
    max_new_tokens: int = 112
    """Longest answer generated (the longest training answer is about 80 tokens)."""
    state_every: int = 100
    """Write the resumable state every N steps (and at the end)."""
    log_every: int = 25
    """Progress line and metrics row every N steps."""
    threads: int = 2
    """torch CPU threads (0: torch's default)."""

    def __post_init__(self) -> None:
        if not self.models:
            raise ConfigError("models is empty: give at least one image model whose samples the judge learns from")
        for s in self.sampling:
            if len(s) != 2 or int(s[0]) < 1 or s[1] < 1.0:
                raise ConfigError(f"sampling entries are [steps >= 1, guidance >= 1.0], got {s}")
        if self.chunk_size < 1:
            raise ConfigError("chunk_size must be at least 1")
        for name in ("model_examples", "render_examples", "val_examples", "pair_examples", "val_pair_examples"):
            n = getattr(self, name)
            if n < 0 or n % self.chunk_size:
                raise ConfigError(f"{name} ({n}) must be a non-negative multiple of chunk_size ({self.chunk_size})")
        if self.model_examples + self.render_examples == 0:
            raise ConfigError("no training data: model_examples and render_examples are both 0")
        fractions = ("render_wrong_fraction", "render_noisy_fraction", "edit_fraction", "contrast_fraction", "pair_fraction",
                     "pair_render_fraction")
        for name in fractions:
            if not 0 <= getattr(self, name) <= 1:
                raise ConfigError(f"{name} must lie in [0, 1], got {getattr(self, name)}")
        families = {"t2i": T2I_FAMILIES, "edit": EDIT_FAMILIES}
        for task, weights in self.family_weights.items():
            if task not in families:
                raise ConfigError(f"family_weights: unknown task {task!r}; expected {list(TASKS)}")
            unknown = sorted(set(weights) - set(families[task]))
            if unknown or any(w < 0 for w in weights.values()) or not sum(weights.values()) > 0:
                raise ConfigError(f"family_weights.{task}: families {unknown or ''} unknown or weights not >= 0 with a positive sum; "
                                  f"families: {list(families[task])}")
        if self.hidden_size % self.num_heads or self.hidden_size // self.num_heads != 32:
            raise ConfigError(f"hidden_size / num_heads must be 32 (the M-RoPE split [4, 6, 6]); got {self.hidden_size}/{self.num_heads}")
        if self.num_heads % self.num_kv_heads or self.vision_hidden_size % self.vision_heads:
            raise ConfigError("num_heads must be a multiple of num_kv_heads, and vision_hidden_size of vision_heads")
        if IMAGE_SIZE % (2 * self.patch_size):
            raise ConfigError(f"patch_size must divide {IMAGE_SIZE // 2} (2×2 patches merge into one token)")
        if self.caption_steps < 0 or self.caption_batch_size < 1:
            raise ConfigError("caption_steps >= 0 and caption_batch_size >= 1 are required")
        if self.length_buckets < 1:
            raise ConfigError(f"length_buckets must be >= 1 (1: off), got {self.length_buckets}")
        if self.steps < 0 or self.batch_size < 1 or self.lr <= 0 or self.warmup_steps < 0 or not 0 < self.min_lr_ratio <= 1:
            raise ConfigError("steps >= 0, batch_size >= 1, lr > 0, warmup_steps >= 0 and min_lr_ratio in (0, 1] are required")
        if min(self.eval_every, self.state_every) < 0 or self.log_every < 1 or self.eval_examples < 0:
            raise ConfigError("eval_every and state_every must be >= 0, log_every >= 1, eval_examples >= 0")
        if self.perception_weight < 0:
            raise ConfigError(f"perception_weight must be >= 0, got {self.perception_weight}")
        if self.init_from is not None and not (Path(self.init_from) / "config.json").is_file():
            raise ConfigError(f"init_from: {self.init_from!r} is not an exported judge folder (no config.json there)")
        if self.eval_examples > self.val_examples:
            raise ConfigError(f"eval_examples ({self.eval_examples}) cannot exceed val_examples ({self.val_examples})")

    @classmethod
    def from_yaml(cls, path: str | Path | None, overrides: list[str] | tuple[str, ...] = (), **values: Any) -> "JudgeConfig":
        return load_config(cls, path, overrides, **values)


# ---------------------------------------------------------------------------------------------
# Tokenizer, image processor and model
# ---------------------------------------------------------------------------------------------


def build_tokenizer(rubric_dir: Path = RUBRIC_DIR) -> Any:
    """A word-level tokenizer over every piece the rubrics, the prompts and the answers use."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    pre = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(PIECE_PATTERN), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    texts = [p.read_text() for p in sorted(rubric_dir.glob("*.txt"))] + [CAPTION_PROMPT, "user\n", "assistant\n", "\n\n"]
    rubric_words = sorted({w for t in texts for w in re.findall(r"[A-Za-z]+", t)})
    items = corpus_words() + rubric_words + [str(i) for i in range(IMAGE_SIZE + 1)] + [f"({i})" for i in range(1, 13)] + ["/10"]
    items += list(".,;:?!\"'()<>/-_*")
    texts += [prefix + it for prefix in ("", " ", "\n", "\n\n") for it in items]
    pieces: set[str] = set()
    for t in texts:
        pieces.update(p for p, _ in pre.pre_tokenize_str(t))
    vocab = {UNK: 0, **{s: i + 1 for i, s in enumerate(SPECIAL_TOKENS)}}
    for p in sorted(pieces):
        vocab.setdefault(p, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    tok.pre_tokenizer = pre
    tok.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token=UNK, pad_token="<|endoftext|>", eos_token="<|im_end|>",
        additional_special_tokens=SPECIAL_TOKENS[1:], chat_template=CHAT_TEMPLATE,
    )
    tokenizer.padding_side = "left"
    return tokenizer


def build_image_processor(cfg: JudgeConfig) -> Any:
    """Qwen2-VL's image processor for 32×32 images: patches of ``patch_size`` px, one frame."""
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    pixels = IMAGE_SIZE * IMAGE_SIZE
    return Qwen2VLImageProcessorPil(min_pixels=pixels, max_pixels=pixels, patch_size=cfg.patch_size,
                                    temporal_patch_size=1, merge_size=2)


def build_model(cfg: JudgeConfig, tokenizer: Any) -> Any:
    """A randomly initialised Qwen2-VL of the configured size."""
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration

    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    config = Qwen2VLConfig(
        text_config=dict(
            vocab_size=len(tokenizer), hidden_size=cfg.hidden_size, intermediate_size=cfg.intermediate_size,
            num_hidden_layers=cfg.num_layers, num_attention_heads=cfg.num_heads, num_key_value_heads=cfg.num_kv_heads,
            max_position_embeddings=1024, tie_word_embeddings=True, bos_token_id=ids["<|im_start|>"],
            eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"],
            rope_parameters={"rope_type": "default", "mrope_section": [4, 6, 6], "rope_theta": 10000.0},
        ),
        vision_config=dict(
            depth=cfg.vision_layers, embed_dim=cfg.vision_hidden_size, hidden_size=cfg.hidden_size, mlp_ratio=2,
            num_heads=cfg.vision_heads, patch_size=cfg.patch_size, spatial_merge_size=2, temporal_patch_size=1,
        ),
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=True,
    )
    torch.manual_seed(cfg.seed)
    model = Qwen2VLForConditionalGeneration(config)
    gen = model.generation_config
    gen.do_sample, gen.eos_token_id, gen.pad_token_id = False, ids["<|im_end|>"], ids["<|endoftext|>"]
    gen.max_new_tokens = cfg.max_new_tokens
    return model


def load_initial_weights(model: Any, folder: str | Path) -> None:
    """``model``'s weights replaced by the exported judge's in ``folder``; a judge of another
    architecture or vocabulary is refused with what differs."""
    from transformers import Qwen2VLForConditionalGeneration

    files = sorted(Path(folder).glob("*.safetensors"))
    if not files:
        raise ConfigError(f"init_from: no safetensors weights in {folder}")
    source = Qwen2VLForConditionalGeneration.from_pretrained(folder, use_safetensors=True)
    want, have = model.state_dict(), source.state_dict()
    wrong = sorted(k for k in want if k not in have or have[k].shape != want[k].shape)
    if wrong:
        k = wrong[0]
        got = tuple(have[k].shape) if k in have else "missing"
        raise ConfigError(f"init_from: {folder} is not this config's architecture: {len(wrong)} tensors differ, "
                          f"e.g. {k} {tuple(want[k].shape)} here, {got} there")
    model.load_state_dict(have, strict=False)


#: the perception loss's classes per vision cell (``cell_shape_labels``)
PERCEPTION_CLASSES = ("none", *SHAPES, BLOB)
#: the perception head's file in an exported judge folder (safetensors: ``weight``, ``bias``)
PERCEPTION_HEAD = "perception_head.safetensors"


def perception_head(cfg: JudgeConfig) -> torch.nn.Linear:
    """The perception loss's linear head over the vision tokens: the one ``init_from`` left, when
    that folder has one of the right shape, else a new one seeded from ``cfg.seed``."""
    torch.manual_seed(cfg.seed + 1)
    head = torch.nn.Linear(cfg.hidden_size, len(PERCEPTION_CLASSES))
    saved = Path(cfg.init_from) / PERCEPTION_HEAD if cfg.init_from else None
    if saved is not None and saved.is_file():
        from safetensors.torch import load_file

        weights = load_file(str(saved))
        if {k: tuple(v.shape) for k, v in weights.items()} == {k: tuple(v.shape) for k, v in head.state_dict().items()}:
            head.load_state_dict(weights)
    return head


def cell_shape_labels(image: np.ndarray, cell: int) -> np.ndarray:
    """Per ``cell``×``cell`` cell of ``image`` (raster order, as Qwen2-VL orders its merged
    tokens), the index in ``PERCEPTION_CLASSES`` of the parsed object covering most of the cell's
    pixels, when it covers at least a sixteenth of them; else 0 (``none``). An object below the
    checker's template IoU is ``blob``, as the strict checker and the Seen line call it."""
    from qwenrl.world.check import recognisable
    from qwenrl.world.parse import parse

    side = IMAGE_SIZE // cell
    best = np.zeros((side, side), np.int64)
    cover = np.zeros((side, side), np.int64)
    for o in parse(image).objects:
        counts = o.mask.reshape(side, cell, side, cell).sum(axis=(1, 3))
        label = PERCEPTION_CLASSES.index(o.shape) if recognisable(o) else len(PERCEPTION_CLASSES) - 1
        more = counts > cover
        best[more], cover[more] = label, counts[more]
    best[cover * 16 < cell * cell] = 0
    return best.reshape(-1)


class PerceptionLoss:
    """The dense perception loss (``perception_weight``): a forward hook keeps the vision tower's
    merged tokens of the last forward pass (one row per language-model image token, images in
    batch order), and each predicts its cell's ``cell_shape_labels`` class through ``head``."""

    def __init__(self, cfg: JudgeConfig, model: Any) -> None:
        self.head = perception_head(cfg)
        self.weight = cfg.perception_weight
        self.cell = 2 * cfg.patch_size  # the pixels one merged vision token covers
        self.tokens: torch.Tensor | None = None
        self.seen: list[tuple[float, float]] = []  # (loss, accuracy on object cells) per step since the last log
        # each image's labels, parsed once: keyed by the array's id, the array kept beside them so the id stays its own
        self.labels: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        model.model.visual.register_forward_hook(self._keep)

    def _keep(self, module: Any, args: Any, output: Any) -> None:
        self.tokens = output.pooler_output if hasattr(output, "pooler_output") else output

    def __call__(self, batch: list[Example]) -> torch.Tensor:
        """The weighted loss of the forward pass just run on ``batch``."""
        labels = torch.from_numpy(np.concatenate([self.cells(im) for e in batch for im in e.images]))
        logits = self.head(self.tokens)
        loss = torch.nn.functional.cross_entropy(logits, labels)
        on_object = labels > 0
        right = (logits.argmax(-1) == labels)[on_object].float().mean().item() if on_object.any() else 0.0
        self.seen.append((loss.item(), right))
        return self.weight * loss

    def cells(self, image: np.ndarray) -> np.ndarray:
        """``cell_shape_labels`` of a training image, parsed the first time it is drawn."""
        if id(image) not in self.labels:
            self.labels[id(image)] = (image, cell_shape_labels(image, self.cell))
        return self.labels[id(image)][1]

    def metrics(self) -> dict[str, float]:
        """Mean loss and object-cell accuracy since the last call (empty when no step ran)."""
        if not self.seen:
            return {}
        loss, right = np.mean(self.seen, axis=0)
        self.seen = []
        return {"perception_loss": float(loss), "perception_accuracy": float(right)}


def make_processor(tokenizer: Any, image_processor: Any) -> QwenStyleProcessor:
    """The processor ``vlm_local`` builds from the exported folder, built in memory."""
    return QwenStyleProcessor(tokenizer, image_processor, CHAT_TEMPLATE)


# ---------------------------------------------------------------------------------------------
# Data: train-split prompts, model samples and grammar renders, labelled by the checker
# ---------------------------------------------------------------------------------------------


def draw_item(rng: np.random.Generator, task: str, weights: dict[str, float] | None = None) -> T2IPrompt | EditTask:
    """One train-split prompt or edit task (never a test or compositional text), its family drawn
    by ``weights`` when given."""
    family = None
    if weights:
        names = sorted(weights)
        p = np.array([weights[n] for n in names], dtype=np.float64)
        family = names[int(rng.choice(len(names), p=p / p.sum()))]
    item = sample_t2i_prompt_in_split(rng, "train", family) if task == "t2i" else sample_edit(rng, family, split="train")
    if item.split != "train":  # the grammar guarantees it; the judge's data must not depend on luck
        raise AssertionError(f"drew {item.text!r} of split {item.split}")
    return item


def _recolored(o: Obj, rng: np.random.Generator) -> Obj:
    colors = [c for c in OBJECT_COLORS if c != o.color]
    return dataclasses.replace(o, color=colors[rng.integers(len(colors))])


def _reshaped(o: Obj, rng: np.random.Generator) -> Obj:
    shapes = [s for s in SHAPES if s != o.shape]
    return dataclasses.replace(o, shape=shapes[rng.integers(len(shapes))])


def _resized(o: Obj) -> Obj:
    size = "large" if o.size == "small" else "small"
    shift = (SIZES[o.size] - SIZES[size]) // 2
    return Obj(o.shape, o.color, size, o.x + shift, o.y + shift)


def perturb(scene: Scene, rng: np.random.Generator) -> Scene:
    """``scene`` with one thing wrong: an object recoloured, reshaped, resized, moved, dropped
    or added, or the background changed (falls back to another change when one does not fit)."""
    objs = list(scene.objects)
    for _ in range(20):
        kind = ("recolor", "reshape", "resize", "move", "drop", "add", "background")[rng.integers(7)]
        if kind == "background":
            bgs = [b for b in BACKGROUND_COLORS if b != scene.background]
            return Scene(bgs[rng.integers(len(bgs))], scene.objects)
        if kind == "add" or not objs:
            c, s = tuple(OBJECT_COLORS)[rng.integers(6)], SHAPES[rng.integers(3)]
            new = place(rng, s, c, tuple(SIZES)[rng.integers(2)], objs)
            if new is not None and len(objs) < 5:
                return Scene(scene.background, tuple(objs) + (new,))
            continue
        k = int(rng.integers(len(objs)))
        others = objs[:k] + objs[k + 1:]
        if kind == "drop":
            return Scene(scene.background, tuple(others))
        if kind == "move":
            new = place(rng, objs[k].shape, objs[k].color, objs[k].size, others)
        else:
            new = {"recolor": _recolored, "reshape": _reshaped, "resize": lambda o, r: _resized(o)}[kind](objs[k], rng)
            new = new if fits(new, others) else None
        if new is not None:
            return Scene(scene.background, tuple(objs[:k]) + (new,) + tuple(objs[k + 1:]))
    return scene


def render_example(item: T2IPrompt | EditTask, rng: np.random.Generator, cfg: JudgeConfig) -> tuple[np.ndarray, str]:
    """A grammar render for ``item`` (correct or with one thing wrong, clean or noisy) and what it is."""
    if item.task == "t2i":
        scene, kind = scene_for_prompt(item, rng), "correct"
    elif rng.random() < 0.25:  # a failed edit is often "nothing happened": the source as it was
        scene, kind = item.source, "unchanged"
    else:
        scene, kind = item.target, "correct"
    if rng.random() < cfg.render_wrong_fraction:
        scene, kind = perturb(scene, rng), "perturbed"
    if rng.random() < cfg.render_noisy_fraction:
        image = noisy_render(scene, rng, sigma=float(rng.uniform(0, 25)), n_specks=int(rng.integers(0, 5)),
                             jitter=float(rng.uniform(0, 0.3)))
        return image, f"render:{kind}:noisy"
    return render(scene), f"render:{kind}"


def label(item: T2IPrompt | EditTask, image: np.ndarray, origin: str, positions: bool = False) -> dict[str, Any]:
    """One example's record: the prompt, its spec, where the image came from and the answer to
    learn (with object positions when ``positions``)."""
    t = target_for(Sample.from_spec(image, item), positions=positions)
    return {"task": item.task, "text": item.text, "family": item.family, "spec": item.to_dict(), "origin": origin,
            "answer": t.text, "score10": t.score10, "passed": t.passed, "soft": t.soft}


SOURCES = {"model": 1, "render": 2, "val": 3, "pair": 4, "valpair": 5}
"""Data sources and their random streams: training model samples, grammar renders, validation
model samples, training pairs, validation pairs."""


def source_count(cfg: JudgeConfig, source: str) -> int:
    return {"model": cfg.model_examples, "render": cfg.render_examples, "val": cfg.val_examples,
            "pair": cfg.pair_examples, "valpair": cfg.val_pair_examples}[source]


def model_samples(cfg: JudgeConfig, items: list, index: int, policies: dict[str, Any], rng: np.random.Generator,
                  copies: int = 1) -> tuple[np.ndarray, str]:
    """``copies`` samples per item from the chunk's model and sampling setting (both cycle with the
    chunk index), each on its own seed: images (copies, n, ...) and where they came from."""
    from qwenrl.evaluation import generate_for
    from training.common import load_model

    model = cfg.models[index % len(cfg.models)]
    steps, guidance = cfg.sampling[(index // len(cfg.models)) % len(cfg.sampling)]
    if model not in policies:
        policies[model] = load_model(model)
    seed0 = int(rng.integers(2**31))
    seeds = [seed0 + i for i in range(copies * len(items))]
    images = generate_for(policies[model], items * copies, seeds=seeds, num_steps=int(steps), guidance_scale=float(guidance),
                          batch_size=64)
    return images.reshape(copies, len(items), *images.shape[1:]), f"model:{Path(model).name}:steps{int(steps)}:cfg{guidance:g}"


def contrast_records(cfg: JudgeConfig, items: list, images: np.ndarray, origins: list[str], rng: np.random.Generator) -> list[dict]:
    """For about ``contrast_fraction`` of the images, the same image with a minimally wrong prompt
    (train split only), labelled by the checker; each record names its image (``image_index``)."""
    out = []
    for k, (item, image, origin) in enumerate(zip(items, images, origins)):
        if rng.random() >= cfg.contrast_fraction:
            continue
        wrong = minimally_wrong(item, rng, split="train")
        if wrong is not None:
            out.append({**label(wrong[1], image, f"{origin}:contrast", cfg.seen_positions), "image_index": k, "changed": wrong[0]})
    return out


def build_chunk(cfg: JudgeConfig, task: str, source: str, index: int, policies: dict[str, Any]) -> tuple[np.ndarray, list[dict]]:
    """``chunk_size`` images: source ``model`` (training model samples), ``val`` (validation
    model samples) or ``render`` (grammar renders), one record each, then the contrastive records
    (training sources only). A pure function of (seed, task, source, index)."""
    rng = np.random.default_rng([cfg.seed, SOURCES[source], TASKS.index(task), index])
    items = [draw_item(rng, task, cfg.family_weights.get(task)) for _ in range(cfg.chunk_size)]
    if source == "render":
        made = [render_example(it, rng, cfg) for it in items]
        images, origins = np.stack([m[0] for m in made]), [m[1] for m in made]
    else:
        samples, origin = model_samples(cfg, items, index, policies, rng)
        images, origins = samples[0], [origin] * len(items)
    records = [label(it, img, o, cfg.seen_positions) for it, img, o in zip(items, images, origins)]
    if source != "val":
        records += contrast_records(cfg, items, images, origins, rng)
    return images, records


def build_pair_chunk(cfg: JudgeConfig, task: str, source: str, index: int, policies: dict[str, Any]
                     ) -> tuple[np.ndarray, np.ndarray, list[dict]]:
    """``chunk_size`` pairs (source ``pair`` or ``valpair``): two model samples of one prompt on
    two seeds, or (``pair_render_fraction`` of them) a model sample and a grammar render, in a
    random order; each answered with the pairwise comparison the checker writes."""
    from qwenrl.rewards.pairwise import pair_target

    rng = np.random.default_rng([cfg.seed, SOURCES[source], TASKS.index(task), index])
    items = [draw_item(rng, task, cfg.family_weights.get(task)) for _ in range(cfg.chunk_size)]
    samples, origin = model_samples(cfg, items, index, policies, rng, copies=2)
    first, second = samples[0].copy(), samples[1].copy()
    origins_b = [origin] * len(items)
    records = []
    for k, item in enumerate(items):
        if rng.random() < cfg.pair_render_fraction:
            second[k], origins_b[k] = render_example(item, rng, cfg)
        if rng.random() < 0.5:
            first[k], second[k] = second[k].copy(), first[k].copy()
            oa, ob = origins_b[k], origin
        else:
            oa, ob = origin, origins_b[k]
        t = pair_target(Sample.from_spec(first[k], item), Sample.from_spec(second[k], item), positions=cfg.seen_positions)
        records.append({"task": task, "text": item.text, "family": item.family, "spec": item.to_dict(), "origin": f"{oa}|{ob}",
                        "answer": t.text, "winner": t.winner, "passed": list(t.passed), "pair": True})
    return first, second, records


def chunk_path(data_dir: Path, task: str, source: str, index: int) -> Path:
    return data_dir / f"{task}-{source}-{index:04d}"


def write_chunk(path: Path, items_images: np.ndarray, sources: np.ndarray | None, records: list[dict],
                second: np.ndarray | None = None) -> None:
    """Images (safetensors: ``image``, the edits' ``source``, the pairs' ``image_b``) and records
    (JSON lines), atomically: a chunk folder exists only complete."""
    from safetensors.numpy import save_file

    tmp = path.parent / f".{path.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir(parents=True)
    tensors = {"image": np.ascontiguousarray(items_images)}
    if sources is not None:
        tensors["source"] = np.ascontiguousarray(sources)
    if second is not None:
        tensors["image_b"] = np.ascontiguousarray(second)
    save_file(tensors, str(tmp / "images.safetensors"))
    (tmp / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    os.rename(tmp, path)


def ensure_data(cfg: JudgeConfig, data_dir: Path) -> dict[str, int]:
    """Write every chunk the config asks for that is not there yet; returns counts per kind."""
    from qwenrl.world.scene import render as render_scene

    plan = [(task, source, i) for task in TASKS for source in SOURCES
            for i in range(math.ceil(source_count(cfg, source) / cfg.chunk_size))]
    todo = [p for p in plan if not chunk_path(data_dir, *p).is_dir()]
    policies: dict[str, Any] = {}
    bar = tqdm(todo, desc="judge data", unit="chunk", file=sys.stderr, disable=not todo)
    for task, source, i in bar:
        second = None
        if source in ("pair", "valpair"):
            images, second, records = build_pair_chunk(cfg, task, source, i, policies)
        else:
            images, records = build_chunk(cfg, task, source, i, policies)
        pass_rate = np.mean([r["passed"] for r in records])
        spec_of = [r["spec"] for r in records if "image_index" not in r]
        sources = np.stack([render_scene(EditTask.from_dict(sp).source) for sp in spec_of]) if task == "edit" else None
        write_chunk(chunk_path(data_dir, task, source, i), images, sources, records, second)
        bar.set_postfix(task=task, source=source, passed=f"{pass_rate:.2f}")
    counts: dict[str, int] = {}
    for task, source, i in plan:
        path = chunk_path(data_dir, task, source, i)
        counts[f"{task}/{source}"] = counts.get(f"{task}/{source}", 0) + sum(1 for line in (path / "records.jsonl").open() if line.strip())
    return counts


@dataclass
class Example:
    """One training example, ready to batch: its images, prompt and answer token ids, labels."""

    images: list[np.ndarray]
    prompt_ids: list[int]
    answer_ids: list[int]
    record: dict[str, Any]


def chat_ids(tokenizer: Any, n_images: int, text: str, per_image: int) -> list[int]:
    """Token ids of one user turn (``n_images`` images, then ``text``) with the generation prompt,
    each image placeholder expanded to its tokens, as ``vlm_local`` sends it."""
    content = [{"type": "image"} for _ in range(n_images)] + [{"type": "text", "text": text}]
    chat = tokenizer.apply_chat_template([{"role": "user", "content": content}], add_generation_prompt=True, tokenize=False)
    return tokenizer(chat.replace("<|image_pad|>", "<|image_pad|>" * per_image), add_special_tokens=False)["input_ids"]


def load_examples(cfg: JudgeConfig, data_dir: Path, tokenizer: Any, image_processor: Any, sources: tuple[str, ...],
                  task: str) -> list[Example]:
    """The examples of ``task`` from chunks of ``sources``, tokenised as ``vlm_local`` (pointwise
    records) and ``PairwiseLocalJudge`` (pair records) will see them."""
    from safetensors.numpy import load_file

    from qwenrl.rewards.pairwise import load_pair_rubric

    rubric = load_rubric(RUBRIC_FOR_TASK[task], str(RUBRIC_DIR), "cot")
    pair_rubric = load_pair_rubric(RUBRIC_DIR, task)
    per_image = image_tokens(image_processor)
    out: list[Example] = []
    for source in sources:
        for i in range(math.ceil(source_count(cfg, source) / cfg.chunk_size)):
            path = chunk_path(data_dir, task, source, i)
            arrays = load_file(str(path / "images.safetensors"))
            records = [json.loads(line) for line in (path / "records.jsonl").read_text().splitlines() if line]
            for k, rec in enumerate(records):
                at = rec.get("image_index", k)
                imgs = [arrays["image"][at], arrays["image_b"][at]] if rec.get("pair") else [arrays["image"][at]]
                if task == "edit":
                    imgs = [arrays["source"][at]] + imgs
                sample = Sample(imgs[1 if task == "edit" else 0], rec["text"], task=task, source=imgs[0] if task == "edit" else None)
                text = (pair_rubric if rec.get("pair") else rubric).render(sample)
                answer_ids = tokenizer(rec["answer"], add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
                out.append(Example(imgs, chat_ids(tokenizer, len(imgs), text, per_image), answer_ids, rec))
    return out


def caption_examples(examples: list[Example], tokenizer: Any, image_processor: Any) -> list[Example]:
    """First-stage examples: each judged image alone (the text-to-image image, the edit's
    result), asked ``CAPTION_PROMPT``, answered with the Seen line of its judge answer."""
    prompt_ids = chat_ids(tokenizer, 1, CAPTION_PROMPT, image_tokens(image_processor))
    out = []
    for e in examples:
        if e.record.get("pair") or "image_index" in e.record:  # each image once, with its own prompt's answer
            continue
        seen = next(line for line in e.record["answer"].splitlines() if line.startswith("Seen:"))
        out.append(Example([e.images[-1]], prompt_ids, tokenizer(seen, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id],
                           {**e.record, "answer": seen}))
    return out


def image_tokens(image_processor: Any) -> int:
    """Language-model tokens per 32×32 image: (32 / patch)² patches, merged 2×2."""
    side = IMAGE_SIZE // image_processor.patch_size
    return side * side // image_processor.merge_size**2


def collate(batch: list[Example], tokenizer: Any, image_processor: Any) -> dict[str, torch.Tensor]:
    """Right-padded input ids, attention mask, labels (the answer only), image inputs."""
    length = max(len(e.prompt_ids) + len(e.answer_ids) for e in batch)
    pad = tokenizer.pad_token_id
    ids = torch.full((len(batch), length), pad, dtype=torch.long)
    labels = torch.full((len(batch), length), -100, dtype=torch.long)
    mask = torch.zeros((len(batch), length), dtype=torch.long)
    for r, e in enumerate(batch):
        seq = e.prompt_ids + e.answer_ids
        ids[r, : len(seq)] = torch.tensor(seq)
        labels[r, len(e.prompt_ids): len(seq)] = torch.tensor(e.answer_ids)
        mask[r, : len(seq)] = 1
    vision = image_processor(images=[im for e in batch for im in e.images], return_tensors="pt")
    image_id = tokenizer.convert_tokens_to_ids("<|image_pad|>")
    return {"input_ids": ids, "attention_mask": mask, "labels": labels, "mm_token_type_ids": (ids == image_id).int(),
            "pixel_values": vision["pixel_values"], "image_grid_thw": vision["image_grid_thw"]}


# ---------------------------------------------------------------------------------------------
# Validation: greedy answers through the vlm_local path, compared with the checker
# ---------------------------------------------------------------------------------------------


def validate(model: Any, processor: QwenStyleProcessor, examples: dict[str, list[Example]], cfg: JudgeConfig,
             batch_size: int = 64, pairs: dict[str, list[Example]] | None = None) -> dict[str, float]:
    """Pass/fail agreement with the strict checker, parse rate and exact-answer rate per task,
    the share of images whose Seen line (asked ``CAPTION_PROMPT``) is exactly right, and on the
    validation pairs the winner's accuracy (all pairs, and those where exactly one image passes)."""
    model.eval()
    captions = [e for exs in examples.values() for e in exs[: cfg.eval_examples // 2]]
    ids = generate_token_ids(model, processor, [([e.images[-1]], CAPTION_PROMPT) for e in captions], 64)
    seen = [next(line for line in e.record["answer"].splitlines() if line.startswith("Seen:")) for e in captions]
    said = processor.batch_decode(ids, skip_special_tokens=True)
    out = {"val/seen_exact": float(np.mean([a.strip() == s for a, s in zip(said, seen)])),
           "val/seen_objects": float(np.mean([_same_objects(a, s) for a, s in zip(said, seen)]))}
    rubrics = {t: load_rubric(RUBRIC_FOR_TASK[t], str(RUBRIC_DIR), "cot") for t in TASKS}
    for task, exs in examples.items():
        exs = exs[: cfg.eval_examples]
        if not exs:
            continue
        agree = parsed = exact = 0
        for start in range(0, len(exs), batch_size):
            chunk = exs[start:start + batch_size]
            requests = [(e.images, rubrics[task].render(Sample(e.images[-1], e.record["text"], task=task,
                                                                 source=e.images[0] if task == "edit" else None)))
                        for e in chunk]
            ids = generate_token_ids(model, processor, requests, cfg.max_new_tokens)
            for e, answer in zip(chunk, processor.batch_decode(ids, skip_special_tokens=True)):
                reading = read_answer(answer)
                parsed += reading.score is not None
                agree += reading.passes is not None and reading.passes == e.record["passed"]
                exact += answer.strip() == e.record["answer"]
        n = len(exs)
        out.update({f"val/{task}/agreement": agree / n, f"val/{task}/parsed": parsed / n, f"val/{task}/exact": exact / n})
    for task, exs in (pairs or {}).items():
        out.update(validate_pairs(model, processor, task, exs[: cfg.eval_examples], batch_size))
    model.train()
    return out


def _same_objects(said: str, seen: str) -> bool:
    """Whether a Seen line names the same objects and background as the target's, positions aside."""
    a, b = read_answer(said.strip() + "\n"), read_answer(seen + "\n")
    return a.seen is not None and a.background == b.background and sorted(a.seen) == sorted(b.seen)


def validate_pairs(model: Any, processor: QwenStyleProcessor, task: str, exs: list[Example], batch_size: int) -> dict[str, float]:
    """The pairwise answers' winner against the checker's: accuracy over all pairs, over the pairs
    where exactly one image passes (``decisive``), and the share refused as unreadable."""
    from qwenrl.rewards.pairwise import load_pair_rubric, read_pairwise

    if not exs:
        return {}
    rubric = load_pair_rubric(RUBRIC_DIR, task)
    right = decisive = decisive_right = unread = 0
    for start in range(0, len(exs), batch_size):
        chunk = exs[start:start + batch_size]
        requests = [(e.images, rubric.render(Sample(e.images[-2], e.record["text"], task=task,
                                                    source=e.images[0] if task == "edit" else None))) for e in chunk]
        ids = generate_token_ids(model, processor, requests, 160)
        for e, answer in zip(chunk, processor.batch_decode(ids, skip_special_tokens=True)):
            winner = read_pairwise(answer).winner
            unread += winner is None
            right += winner == e.record["winner"]
            if e.record["passed"][0] != e.record["passed"][1]:
                decisive += 1
                decisive_right += winner == e.record["winner"]
    n = len(exs)
    return {f"val/{task}/pair_accuracy": right / n, f"val/{task}/pair_decisive": decisive_right / max(decisive, 1),
            f"val/{task}/pair_unread": unread / n}


# ---------------------------------------------------------------------------------------------
# Export
# ---------------------------------------------------------------------------------------------


def export_judge(folder: Path, model: Any, tokenizer: Any, image_processor: Any, manifest: dict[str, Any],
                 training_texts: dict[str, list[str]], head: torch.nn.Module | None = None) -> Path:
    """A folder ``vlm_local`` loads: weights, tokenizer, image processor, chat template, rubrics,
    the training prompts and the manifest, written to a temporary sibling and renamed into place.
    With the perception loss on, its head too (``PERCEPTION_HEAD``: judging never reads it; a
    fine-tune that starts from this folder does)."""
    folder = Path(folder)
    tmp = folder.parent / f".{folder.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir(parents=True)
    try:
        model.save_pretrained(tmp)
        if head is not None:
            from safetensors.torch import save_file

            save_file({k: v.detach().contiguous() for k, v in head.state_dict().items()}, str(tmp / PERCEPTION_HEAD))
        tokenizer.save_pretrained(tmp)
        image_processor.save_pretrained(tmp)
        (tmp / "chat_template.jinja").write_text(CHAT_TEMPLATE)
        shutil.copytree(RUBRIC_DIR, tmp / "rubrics")
        (tmp / "training_texts.json").write_text(json.dumps(training_texts, indent=0, sort_keys=True))
        full = {"format": "qwenrl-checkpoint", "format_version": 1, "kind": "judge", "created": time.time(), **manifest}
        (tmp / "manifest.json").write_text(json.dumps(full, indent=2, sort_keys=True))
        if folder.exists():
            old = folder.parent / f".{folder.name}.old-{uuid.uuid4().hex[:8]}"
            os.rename(folder, old)
            os.rename(tmp, folder)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


# ---------------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------------


def judge_lr(step: int, cfg: JudgeConfig) -> float:
    """Linear warm-up, then one cosine decay over both stages (``lr_at`` with the stages' steps
    + 1: the decay reaches ``lr · min_lr_ratio`` one step past the last, as it always has)."""
    return lr_at(step, cfg.lr, cfg.warmup_steps, cfg.caption_steps + cfg.steps + 1, "cosine", cfg.min_lr_ratio)


def load_splits(cfg: JudgeConfig, data_dir: Path, tokenizer, image_processor) -> tuple[dict, dict, list, dict, dict]:
    """The pointwise training examples per task (model samples, renders and their contrastive
    twins), the validation examples per task, the caption examples of the first stage, and the
    training and validation pairs per task."""
    train_set = {t: load_examples(cfg, data_dir, tokenizer, image_processor, ("model", "render"), t) for t in TASKS}
    captions = caption_examples(train_set["t2i"] + train_set["edit"], tokenizer, image_processor)
    val_set = {t: load_examples(cfg, data_dir, tokenizer, image_processor, ("val",), t) for t in TASKS}
    pair_set = {t: load_examples(cfg, data_dir, tokenizer, image_processor, ("pair",), t) for t in TASKS}
    val_pairs = {t: load_examples(cfg, data_dir, tokenizer, image_processor, ("valpair",), t) for t in TASKS}
    unknown = sum(e.answer_ids.count(tokenizer.unk_token_id) for sets in (train_set, pair_set) for exs in sets.values() for e in exs)
    if unknown:
        raise AssertionError(f"{unknown} answer tokens are outside the tokenizer's vocabulary")
    return train_set, val_set, captions, pair_set, val_pairs


def draw_batch(cfg: JudgeConfig, step: int, captions: list, train_set: dict, pair_set: dict | None = None) -> list:
    """The examples of one step, a function of (seed, step) so that a resumed run draws what it would have:
    captions during the first stage, then judgements with about edit_fraction of them editing and,
    when there are pairs, about pair_fraction of them pairwise.

    With ``length_buckets`` k > 1 the draws of k steps are made together, sorted by length and cut
    into k batches taken in a shuffled order, so that each batch pads to a length close to its own
    examples' (the same examples in expectation, about a quarter fewer tokens)."""
    caption = step < cfg.caption_steps
    stage_step = step if caption else step - cfg.caption_steps

    def one(rng: np.random.Generator) -> list:
        if caption:
            return [captions[i] for i in rng.integers(len(captions), size=cfg.caption_batch_size)]
        return _judge_draw(cfg, rng, train_set, pair_set)

    k = cfg.length_buckets
    if k <= 1:
        return one(np.random.default_rng([cfg.seed, 7, step]))
    rng = np.random.default_rng([cfg.seed, 8, int(caption), stage_step // k])
    draws = [one(rng) for _ in range(k)]
    sizes = [len(d) for d in draws]
    pool = sorted((e for d in draws for e in d), key=lambda e: len(e.prompt_ids) + len(e.answer_ids))
    at = rng.permutation(k)[stage_step % k]
    start = sum(sizes[:at])
    return pool[start: start + sizes[at]]


def _judge_draw(cfg: JudgeConfig, rng: np.random.Generator, train_set: dict, pair_set: dict | None) -> list:
    """One judge step's draw (see ``draw_batch``)."""
    has_pairs = bool(pair_set) and all(pair_set.get(t) for t in TASKS)
    n_pair = int(rng.binomial(cfg.batch_size, cfg.pair_fraction)) if has_pairs else 0
    batch = []
    for pool, n in ((train_set, cfg.batch_size - n_pair), (pair_set, n_pair)):
        if n == 0:
            continue
        n_edit = int(rng.binomial(n, cfg.edit_fraction))
        batch += [pool["t2i"][i] for i in rng.integers(len(pool["t2i"]), size=n - n_edit)]
        batch += [pool["edit"][i] for i in rng.integers(len(pool["edit"]), size=n_edit)]
    return batch


def judge_manifest(cfg: JudgeConfig, model, counts: dict, train_set: dict, metrics: dict,
                   train_minutes: float, train_cpu_minutes: float) -> dict[str, Any]:
    """The exported judge's manifest: what it is, what it was trained on and how it scored."""
    return {
        "name": "shapes-judge",
        "judges": list(TASKS),
        "architecture": type(model).__name__,
        "parameters": sum(p.numel() for p in model.parameters()),
        "image_size": IMAGE_SIZE,
        "step": cfg.caption_steps + cfg.steps,
        "caption_steps": cfg.caption_steps,
        "train_minutes": round(train_minutes, 1),
        "train_cpu_minutes": round(train_cpu_minutes, 1),
        "threads": torch.get_num_threads(),
        "rubrics": {t: f"rubrics/{RUBRIC_FOR_TASK[t]}.txt" for t in TASKS},
        "answer_format": "qwenrl/rewards/shapes_cot.py",
        "data": {
            "examples": counts,
            "splits": "train only: prompts and edit tasks drawn from the grammar's train split; the texts are in training_texts.json",
            "models": cfg.models,
            "sampling": cfg.sampling,
            "pass_rate": {t: float(np.mean([e.record["passed"] for e in train_set[t]])) for t in TASKS},
        },
        "training": config_dict(cfg),
        "final_metrics": metrics,
        **parent_summary(cfg, train_minutes),
    }


def last_logged(run: RunFolder, step: int) -> dict[str, Any]:
    """The metrics row last logged at ``step`` (``{"step": step}`` when there is none)."""
    rows = [json.loads(line) for line in run.metrics_path.read_text().splitlines() if line.strip()] if run.metrics_path.is_file() else []
    return next((r for r in reversed(rows) if r.get("step") == step), {"step": step})


def parent_summary(cfg: JudgeConfig, train_minutes: float) -> dict[str, Any]:
    """For a fine-tune (``init_from``): the judge it started from (path, steps, minutes) and the
    training minutes of the whole line, its own included, so that the manifest tells what the
    judge cost. Empty for a judge trained from scratch."""
    if not cfg.init_from:
        return {}
    parent = json.loads((Path(cfg.init_from) / "manifest.json").read_text()) if (Path(cfg.init_from) / "manifest.json").is_file() else {}
    before = parent.get("train_minutes_total", parent.get("train_minutes"))
    return {"parent": {"path": cfg.init_from, "step": parent.get("step"), "train_minutes_total": before},
            "train_minutes_total": None if before is None else round(before + train_minutes, 1)}


def seen_texts(cfg: JudgeConfig, own: dict[str, list[str]]) -> dict[str, list[str]]:
    """Every prompt and instruction the exported judge has learned from, per task: this run's and,
    for a fine-tune, those its ``init_from`` judge lists (its weights have seen them too), so that
    ``training_texts.json`` stays the whole answer to "did it train on this text?"."""
    texts = {t: set(own.get(t, [])) for t in TASKS}
    parent = Path(cfg.init_from) / "training_texts.json" if cfg.init_from else None
    if parent is not None and parent.is_file():
        for t, seen in json.loads(parent.read_text()).items():
            texts.setdefault(t, set()).update(seen)
    return {t: sorted(v) for t, v in texts.items()}


def build_trainable(cfg: JudgeConfig, tokenizer: Any) -> tuple[Any, dict[str, torch.nn.Parameter], torch.optim.Optimizer,
                                                               PerceptionLoss | None]:
    """The model (``init_from``'s weights or new ones), every trained parameter by name (the
    perception head's under ``perception_head.``), AdamW over them (no decay on vectors), and the
    perception loss when it is on."""
    model = build_model(cfg, tokenizer)
    if cfg.init_from:
        load_initial_weights(model, cfg.init_from)
        log("judge", f"weights from {cfg.init_from}")
    params = dict(model.named_parameters())
    perception = PerceptionLoss(cfg, model) if cfg.perception_weight > 0 else None
    if perception is not None:
        params.update({f"perception_head.{n}": p for n, p in perception.head.named_parameters()})
    decay = [p for p in params.values() if p.ndim >= 2]
    no_decay = [p for p in params.values() if p.ndim < 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr, betas=(0.9, 0.98))
    return model, params, optimizer, perception


def train(cfg: JudgeConfig, run_dir: str | Path, export: str | Path | None = None, data_only: bool = False) -> dict[str, Any]:
    """Build the data, train (resuming when RUN/state exists), export; returns the final metrics.
    ``data_only``: stop once the data is written."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    run = RunFolder(run_dir, "judge")
    run.check_and_write_config(config_dict(cfg))
    data_dir = Path(cfg.data_dir) if cfg.data_dir else run.path / "data"
    t_data = time.time()
    counts = ensure_data(cfg, data_dir)
    data_minutes = (time.time() - t_data) / 60
    if data_only:
        log("judge", f"data ready in {data_dir}: {counts} ({data_minutes:.1f} min this call)")
        return {"run": str(run.path), "data": counts, "data_minutes": data_minutes}

    tokenizer = build_tokenizer()
    image_processor = build_image_processor(cfg)
    processor = make_processor(tokenizer, image_processor)
    train_set, val_set, captions, pair_set, val_pairs = load_splits(cfg, data_dir, tokenizer, image_processor)
    model, params, optimizer, perception = build_trainable(cfg, tokenizer)
    start, train_seconds, cpu_seconds = 0, 0.0, 0.0
    if run.resumable():
        state = load_train_state(run.state, params=params, optimizer=optimizer, ema=None)
        start, train_seconds, cpu_seconds = int(state["step"]), float(state["train_seconds"]), float(state["train_cpu_seconds"])
        log("judge", f"resuming {run.path} at step {start}")
    run.truncate_metrics(start)
    n_params = sum(p.numel() for p in params.values())
    log("judge", f"{n_params / 1e6:.2f} M parameters; data {counts} ({data_minutes:.1f} min this call)")

    model.train()
    metrics = last_logged(run, start)  # a finished run, exported again, keeps its final metrics
    losses: list[float] = []
    t0, c0 = time.time(), time.process_time()
    total = cfg.caption_steps + cfg.steps
    bar = tqdm(range(start, total), initial=start, total=total, desc="judge", unit="step", file=sys.stderr)
    for step in bar:
        batch = draw_batch(cfg, step, captions, train_set, pair_set)
        inputs = collate(batch, tokenizer, image_processor)
        lr = judge_lr(step, cfg)
        for g in optimizer.param_groups:
            g["lr"] = lr
        loss = model(**inputs).loss
        losses.append(loss.item())  # the next-token loss alone; the perception loss is logged apart
        if perception is not None:
            loss = loss + perception(batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = float(torch.nn.utils.clip_grad_norm_(list(params.values()), cfg.grad_clip))
        optimizer.step()
        done = step + 1
        if done % cfg.log_every == 0 or done == total:
            elapsed = train_seconds + time.time() - t0
            metrics = {"step": done, "stage": "caption" if step < cfg.caption_steps else "judge",
                       "loss": float(np.mean(losses)), "lr": lr, "grad_norm": grad_norm,
                       "train_minutes": elapsed / 60, "train_cpu_minutes": (cpu_seconds + time.process_time() - c0) / 60}
            losses = []
            metrics.update(perception.metrics() if perception is not None else {})
            if (cfg.eval_every and done % cfg.eval_every == 0) or done == total:
                metrics.update(validate(model, processor, val_set, cfg, pairs=val_pairs))
            run.write_metrics(metrics)
            bar.set_postfix({k.split("/")[-2] + "_" + k.split("/")[-1] if k.startswith("val/") else k: round(v, 3)
                             for k, v in metrics.items() if k in ("loss",) or k.endswith("agreement")})
        if (cfg.state_every and done % cfg.state_every == 0) or done == total:
            save_train_state(run.state, step=done, params={n: p.detach() for n, p in params.items()}, optimizer=optimizer,
                             ema=None, extra={"trainer": "judge", "train_seconds": train_seconds + time.time() - t0,
                                              "train_cpu_seconds": cpu_seconds + time.process_time() - c0})
    bar.close()
    train_minutes = (train_seconds + time.time() - t0) / 60
    train_cpu_minutes = (cpu_seconds + time.process_time() - c0) / 60

    texts = seen_texts(cfg, {t: [e.record["text"] for e in train_set[t] + val_set[t] + pair_set[t] + val_pairs[t]] for t in TASKS})
    manifest = judge_manifest(cfg, model, counts, train_set, metrics, train_minutes, train_cpu_minutes)
    head = perception.head if perception is not None else None
    ckpt = export_judge(run.checkpoint_path(total), model, tokenizer, image_processor, manifest, texts, head)
    if export:
        export_judge(Path(export), model, tokenizer, image_processor, manifest, texts, head)
    log("judge", f"done: {ckpt} ({train_minutes:.1f} min of training)")
    return {"run": str(run.path), "checkpoint": str(ckpt), "metrics": metrics}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", help="YAML config (training/configs/judge.yaml)")
    ap.add_argument("--run", required=True, help="run folder (created; resumed when it has state)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config field")
    ap.add_argument("--export", help="also write the finished judge here (e.g. data/models/shapes-judge)")
    ap.add_argument("--data-only", action="store_true", help="write the data chunks, then stop")
    args = ap.parse_args(argv)
    try:
        cfg = JudgeConfig.from_yaml(args.config, args.set)
    except ConfigError as exc:
        sys.exit(f"error: {exc}")
    result = train(cfg, args.run, args.export, data_only=args.data_only)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
