"""Prompts and edit instructions of the Shapes world, generated from a small grammar.

Text-to-image families follow GenEval's: ``single``, ``two_objects`` (colour attribution),
``counting`` (1-4), ``position`` (left of / right of / above / below) and ``background``.
Edit families follow GEdit-Bench's: ``recolor``, ``background``, ``add``, ``remove``,
``replace``, ``move`` and ``resize``.

Every prompt carries a structured spec; every edit carries its source scene, its target
scene and what must be preserved. Held-out colour-shape pairs and relation triples
(``COMPOSITIONAL_*``) never appear in training data: they form the ``compositional`` split.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .scene import (
    BACKGROUND_COLORS,
    DEFAULT_BACKGROUND,
    IMAGE_SIZE,
    OBJECT_COLORS,
    SHAPES,
    SIZES,
    Obj,
    Scene,
    fits,
    place,
)

T2I_FAMILIES: tuple[str, ...] = ("single", "two_objects", "counting", "position", "background")
EDIT_FAMILIES: tuple[str, ...] = ("recolor", "background", "add", "remove", "replace", "move", "resize")
RELATIONS: tuple[str, ...] = ("left of", "right of", "above", "below")
NUMBERS: tuple[str, ...] = ("one", "two", "three", "four")
DIRECTIONS: tuple[str, ...] = ("left", "right", "up", "down")
EDIT_VERBS: tuple[str, ...] = ("add", "change", "make", "move", "remove", "replace", "turn")
"""The words an edit instruction starts with (every family's phrasings)."""
MOVE_STEP = 8  # pixels an object moves in a ``move`` edit
BACKGROUND_TEMPLATES: tuple[str, ...] = (
    "change the background to {bg}",
    "make the background {bg}",
    "change the {src} background to {bg}",
    "make the {src} background {bg}",
)

# Held out of every training split.
COMPOSITIONAL_PAIRS: frozenset[tuple[str, str]] = frozenset(
    {("purple", "triangle"), ("cyan", "square"), ("yellow", "circle")}
)
COMPOSITIONAL_RELATIONS: frozenset[tuple[str, str, str]] = frozenset(
    {("triangle", "above", "square"), ("circle", "right of", "triangle"), ("square", "below", "circle")}
)
TEST_FRACTION = 5  # one prompt text in five (by hash) belongs to the test split

VOCAB: tuple[str, ...] = tuple(
    sorted(
        set(OBJECT_COLORS)
        | set(BACKGROUND_COLORS)
        | set(SHAPES)
        | {s + "s" for s in SHAPES}
        | set(SIZES)
        | set(NUMBERS)
        | set(DIRECTIONS)
        | {
            "a", "and", "on", "background", "left", "right", "of", "above", "below",
            "make", "the", "change", "to", "add", "remove", "replace", "with", "move",
            "larger", "smaller", "turn", "into",
        }
    )
)


class GrammarError(ValueError):
    """A prompt or instruction outside the Shapes grammar."""


def words_of(text: str) -> list[str]:
    """The words of ``text`` as the grammar writes them: lower case, punctuation dropped
    ("A red circle, left of…" → ``["a", "red", "circle", "left", "of", …]``)."""
    return re.findall(r"[^\W_]+", text.lower())


def unknown_words(text: str) -> list[str]:
    """The distinct words of ``text`` outside the vocabulary, sorted (case and punctuation do not matter)."""
    return sorted({w for w in words_of(text) if w not in VOCAB})


def check_words(text: str) -> list[str]:
    """The words of ``text``; raises GrammarError naming any word outside the vocabulary."""
    words = words_of(text)
    unknown = unknown_words(text)
    if unknown:
        raise GrammarError(
            f"unknown word(s) {unknown} in {text!r}; the Shapes world knows: {' '.join(VOCAB)}"
        )
    return words


def noun(shape: str, n: int = 1) -> str:
    return shape if n == 1 else shape + "s"


def describe(color: str, shape: str, size: str | None = None) -> str:
    return " ".join(w for w in (size, color, shape) if w)


def split_of_text(text: str) -> str:
    """``train`` or ``test`` by a stable hash of the text."""
    h = int(hashlib.sha1(text.encode()).hexdigest(), 16)
    return "test" if h % TEST_FRACTION == 0 else "train"


# ---------------------------------------------------------------------------------------
# Text-to-image prompts
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class T2IPrompt:
    """A text-to-image prompt and its structured spec.

    ``spec``: ``{"objects": [{"color", "shape", "count", "size"?}], "relation": None |
    {"a": 0, "rel": "left of", "b": 1}, "background": None | name}``. The objects listed
    are exactly what the image must contain (no extra objects).
    """

    text: str
    family: str
    spec: dict[str, Any]
    task: str = "t2i"

    def to_dict(self) -> dict:
        return {"task": "t2i", "text": self.text, "family": self.family, "spec": self.spec}

    @classmethod
    def from_dict(cls, d: dict) -> "T2IPrompt":
        return cls(text=d["text"], family=d["family"], spec=d["spec"])

    @property
    def pairs(self) -> set[tuple[str, str]]:
        return {(o["color"], o["shape"]) for o in self.spec["objects"]}

    @property
    def is_compositional(self) -> bool:
        if self.pairs & COMPOSITIONAL_PAIRS:
            return True
        rel = self.spec.get("relation")
        if rel:
            objs = self.spec["objects"]
            triple = (objs[rel["a"]]["shape"], rel["rel"], objs[rel["b"]]["shape"])
            return triple in COMPOSITIONAL_RELATIONS
        return False

    @property
    def split(self) -> str:
        return "compositional" if self.is_compositional else split_of_text(self.text)


def _pick_pair(rng: np.random.Generator, avoid: set[tuple[str, str]] = frozenset()) -> tuple[str, str]:
    colors, shapes = tuple(OBJECT_COLORS), SHAPES
    while True:
        pair = (colors[rng.integers(len(colors))], shapes[rng.integers(len(shapes))])
        if pair not in avoid:
            return pair


def sample_t2i_prompt(rng: np.random.Generator, family: str | None = None) -> T2IPrompt:
    """One prompt drawn uniformly over families (or from ``family``), any split."""
    family = family or T2I_FAMILIES[rng.integers(len(T2I_FAMILIES))]
    bgs = tuple(BACKGROUND_COLORS)
    sized = rng.random() < 0.25
    if family == "single":
        c, s = _pick_pair(rng)
        size = tuple(SIZES)[rng.integers(2)] if sized else None
        obj = {"color": c, "shape": s, "count": 1} | ({"size": size} if size else {})
        return T2IPrompt(f"a {describe(c, s, size)}", family, {"objects": [obj], "relation": None, "background": None})
    if family == "two_objects":
        a = _pick_pair(rng)
        b = _pick_pair(rng, avoid={a})
        # Sizes, as in ``single``: without them there are 306 texts, and the hash split
        # leaves too few distinct test prompts for a 250-prompt test set.
        sa, sb = (tuple(SIZES)[rng.integers(2)], tuple(SIZES)[rng.integers(2)]) if sized else (None, None)
        objs = [{"color": a[0], "shape": a[1], "count": 1}, {"color": b[0], "shape": b[1], "count": 1}]
        if sized:
            objs[0]["size"], objs[1]["size"] = sa, sb
        spec = {"objects": objs, "relation": None, "background": None}
        return T2IPrompt(f"a {describe(*a, sa)} and a {describe(*b, sb)}", family, spec)
    if family == "counting":
        c, s = _pick_pair(rng)
        n = int(rng.integers(1, 5))
        spec = {"objects": [{"color": c, "shape": s, "count": n}], "relation": None, "background": None}
        return T2IPrompt(f"{NUMBERS[n - 1]} {c} {noun(s, n)}", family, spec)
    if family == "position":
        a = _pick_pair(rng)
        b = _pick_pair(rng, avoid={a})
        rel = RELATIONS[rng.integers(len(RELATIONS))]
        spec = {"objects": [{"color": a[0], "shape": a[1], "count": 1}, {"color": b[0], "shape": b[1], "count": 1}],
                "relation": {"a": 0, "rel": rel, "b": 1}, "background": None}
        return T2IPrompt(f"a {describe(*a)} {rel} a {describe(*b)}", family, spec)
    if family == "background":
        c, s = _pick_pair(rng)
        bg = bgs[rng.integers(len(bgs))]
        size = tuple(SIZES)[rng.integers(2)] if sized else None
        obj = {"color": c, "shape": s, "count": 1} | ({"size": size} if size else {})
        spec = {"objects": [obj], "relation": None, "background": bg}
        return T2IPrompt(f"a {describe(c, s, size)} on a {bg} background", family, spec)
    raise GrammarError(f"unknown text-to-image family {family!r}; expected one of {T2I_FAMILIES}")


def sample_t2i_prompt_in_split(rng: np.random.Generator, split: str, family: str | None = None) -> T2IPrompt:
    """Rejection-sample a prompt that belongs to ``split`` (train, test or compositional)."""
    for _ in range(10_000):
        p = sample_t2i_prompt(rng, family)
        if p.split == split:
            return p
    raise GrammarError(f"no {family or 'any'} prompt found in split {split!r}")


def _relation_region(rel: str, anchor: Obj, mover_side: int) -> tuple[int, int, int, int]:
    """Centre region (cx0, cy0, cx1, cy1) where an object satisfies ``rel`` w.r.t. ``anchor``
    clearly: the displacement along the relation's axis dominates the other axis."""
    ax, ay = anchor.center
    big = IMAGE_SIZE
    if rel == "left of":
        return (0, ay - 6, ax - 8, ay + 6)
    if rel == "right of":
        return (ax + 8, ay - 6, big, ay + 6)
    if rel == "above":
        return (ax - 6, 0, ax + 6, ay - 8)
    if rel == "below":
        return (ax - 6, ay + 8, ax + 6, big)
    raise GrammarError(f"unknown relation {rel!r}")


def scene_for_prompt(prompt: T2IPrompt, rng: np.random.Generator, max_tries: int = 100) -> Scene:
    """A random scene that satisfies ``prompt`` (used as training data and as a reference)."""
    spec = prompt.spec
    for _ in range(max_tries):
        objs: list[Obj] = []
        ok = True
        for i, o in enumerate(spec["objects"]):
            for _k in range(o["count"]):
                size = o.get("size") or tuple(SIZES)[rng.integers(2)]
                new = place(rng, o["shape"], o["color"], size, objs)
                if new is None:
                    ok = False
                    break
                objs.append(new)
            if not ok:
                break
        if not ok:
            continue
        rel = spec.get("relation")
        if rel:
            # Re-place object a relative to object b so the relation holds clearly.
            a_spec = spec["objects"][rel["a"]]
            b_obj = objs[rel["b"]]
            size = a_spec.get("size") or tuple(SIZES)[rng.integers(2)]
            region = _relation_region(rel["rel"], b_obj, SIZES[size])
            new_a = place(rng, a_spec["shape"], a_spec["color"], size, [b_obj], region=region)
            if new_a is None:
                continue
            objs[rel["a"]] = new_a
        return Scene(background=spec.get("background") or DEFAULT_BACKGROUND, objects=tuple(objs))
    raise GrammarError(f"could not lay out a scene for {prompt.text!r}")


# ---------------------------------------------------------------------------------------
# Edit instructions
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EditTask:
    """An edit instruction with its source and target scenes.

    ``target_index``: index (in ``target.objects``) of the object the instruction creates or
    changes, None for ``background`` and ``remove``. ``preserved``: pairs (source index,
    target index) of the objects that must stay as they were.
    """

    instruction: str
    family: str
    source: Scene
    target: Scene
    target_index: int | None
    preserved: tuple[tuple[int, int], ...] = field(default_factory=tuple)
    task: str = "edit"

    @property
    def text(self) -> str:
        return self.instruction

    def to_dict(self) -> dict:
        return {
            "task": "edit",
            "text": self.instruction,
            "family": self.family,
            "source": self.source.to_dict(),
            "target": self.target.to_dict(),
            "target_index": self.target_index,
            "preserved": [list(p) for p in self.preserved],
        }

    @classmethod
    def from_dict(cls, d: dict) -> "EditTask":
        return cls(
            instruction=d["text"],
            family=d["family"],
            source=Scene.from_dict(d["source"]),
            target=Scene.from_dict(d["target"]),
            target_index=d["target_index"],
            preserved=tuple(tuple(p) for p in d["preserved"]),
        )

    @property
    def pairs(self) -> set[tuple[str, str]]:
        return {(o.color, o.shape) for o in self.source.objects + self.target.objects}

    @property
    def split(self) -> str:
        if self.pairs & COMPOSITIONAL_PAIRS:
            return "compositional"
        return split_of_text(self.instruction)


def random_scene(
    rng: np.random.Generator,
    n_objects: int,
    background: str | None = None,
    avoid_pairs: frozenset[tuple[str, str]] = frozenset(),
) -> Scene | None:
    """A scene of ``n_objects`` objects with distinct (colour, shape) pairs."""
    objs: list[Obj] = []
    used: set[tuple[str, str]] = set(avoid_pairs)
    for _ in range(n_objects):
        c, s = _pick_pair(rng, avoid=used)
        used.add((c, s))
        o = place(rng, s, c, tuple(SIZES)[rng.integers(2)], objs)
        if o is None:
            return None
        objs.append(o)
    bg = background or (DEFAULT_BACKGROUND if rng.random() < 0.6 else tuple(BACKGROUND_COLORS)[rng.integers(3)])
    return Scene(bg, tuple(objs))


def _edit_once(rng: np.random.Generator, family: str, src: Scene, avoid: frozenset) -> EditTask | None:
    objs = list(src.objects)
    n = len(objs)
    keep_all = tuple((i, i) for i in range(n))
    if family == "background":
        choices = [b for b in BACKGROUND_COLORS if b != src.background]
        bg = choices[rng.integers(len(choices))]
        # Several phrasings: with one template there are only three instructions, too few
        # for the hash split to put every target colour in both train and test.
        template = BACKGROUND_TEMPLATES[rng.integers(len(BACKGROUND_TEMPLATES))]
        text = template.format(src=src.background, bg=bg)
        return EditTask(text, family, src, Scene(bg, src.objects), None, keep_all)
    if family == "add":
        used = {(o.color, o.shape) for o in objs} | set(avoid)
        c, s = _pick_pair(rng, avoid=used)
        size = tuple(SIZES)[rng.integers(2)]
        new = place(rng, s, c, size, objs)
        if new is None or n >= 4:
            return None
        return EditTask(f"add a {describe(c, s, size)}", family, src, Scene(src.background, tuple(objs) + (new,)), n, keep_all)
    if n == 0:
        return None
    k = int(rng.integers(n))
    o = objs[k]
    # The size is named half the time: without it ``remove`` has only 15 instructions and
    # the hash split left none of them in test.
    ref = f"the {describe(o.color, o.shape, o.size if rng.random() < 0.5 else None)}"
    others = objs[:k] + objs[k + 1 :]
    keep_others = tuple((i, i) for i in range(n) if i != k)
    if family == "remove":
        tgt = Scene(src.background, tuple(others))
        preserved = tuple((i, i if i < k else i - 1) for i in range(n) if i != k)
        return EditTask(f"remove {ref}", family, src, tgt, None, preserved)
    if family == "recolor":
        used = {(x.color, x.shape) for x in objs} | set(avoid)
        options = [c for c in OBJECT_COLORS if (c, o.shape) not in used]
        if not options:
            return None
        c2 = options[rng.integers(len(options))]
        new = Obj(o.shape, c2, o.size, o.x, o.y)
        text = f"make {ref} {c2}" if rng.random() < 0.5 else f"change {ref} to {c2}"
    elif family == "replace":
        used = {(x.color, x.shape) for x in objs} | set(avoid)
        options = [s for s in SHAPES if (o.color, s) not in used]
        if not options:
            return None
        s2 = options[rng.integers(len(options))]
        new = Obj(s2, o.color, o.size, o.x, o.y)
        text = f"replace {ref} with a {s2}" if rng.random() < 0.5 else f"turn {ref} into a {s2}"
    elif family == "move":
        d = DIRECTIONS[rng.integers(4)]
        dx, dy = {"left": (-MOVE_STEP, 0), "right": (MOVE_STEP, 0), "up": (0, -MOVE_STEP), "down": (0, MOVE_STEP)}[d]
        new = o.moved_to(o.x + dx, o.y + dy)
        text = f"move {ref} {d}"
    elif family == "resize":
        size2 = "large" if o.size == "small" else "small"
        grow = SIZES["large"] - SIZES["small"]
        shift = -(grow // 2) if size2 == "large" else grow // 2
        new = Obj(o.shape, o.color, size2, o.x + shift, o.y + shift)
        text = f"make {ref} {'larger' if size2 == 'large' else 'smaller'}"
    else:
        raise GrammarError(f"unknown edit family {family!r}; expected one of {EDIT_FAMILIES}")
    if not fits(new, others):
        return None
    tgt_objs = tuple(objs[:k]) + (new,) + tuple(objs[k + 1 :])
    return EditTask(text, family, src, Scene(src.background, tgt_objs), k, keep_others)


def sample_edit(
    rng: np.random.Generator,
    family: str | None = None,
    split: str | None = None,
    max_tries: int = 1000,
) -> EditTask:
    """One edit task (source scene, instruction, target scene), optionally from ``split``."""
    if family is not None and family not in EDIT_FAMILIES:
        raise GrammarError(f"unknown edit family {family!r}; expected one of {EDIT_FAMILIES}")
    avoid = frozenset() if split == "compositional" else COMPOSITIONAL_PAIRS
    for _ in range(max_tries):
        fam = family or EDIT_FAMILIES[rng.integers(len(EDIT_FAMILIES))]
        n = int(rng.integers(1, 4))
        src = random_scene(rng, n, avoid_pairs=avoid)
        if src is None:
            continue
        task = _edit_once(rng, fam, src, avoid)
        if task is None:
            continue
        if split is None or task.split == split:
            return task
    raise GrammarError(f"could not sample a {family or 'any'} edit in split {split!r}")
