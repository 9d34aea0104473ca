"""Contrastive prompts: a prompt or edit instruction with exactly one fact changed.

A judge that only learns "this image matches its own prompt" learns to approve. Shown the same
image with its own prompt and with a minimally wrong one, it has to read the prompt against the
image. ``minimally_wrong`` makes the wrong one:

* text to image — one object's colour, or its shape, or its size (when the prompt names one),
  the count (``counting``), the relation turned round (``left of`` ↔ ``right of``, ``above`` ↔
  ``below``), or the background colour; every other field of the spec stays;
* editing — the same source scene and family with the edit's one parameter changed: another
  colour (``recolor``), shape (``replace``), direction (``move``), added object (``add``) or
  background; for ``remove`` and ``resize``, whose parameter is the object, another object.

The new text is written as the grammar writes it (``t2i_text``), and only texts of the asked
split are returned (the judge's data: ``train``), so a test prompt never enters training data.
An image that is right for the original fails the strict checker for the wrong one.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from .grammar import (
    BACKGROUND_COLORS,
    BACKGROUND_TEMPLATES,
    DIRECTIONS,
    MOVE_STEP,
    NUMBERS,
    OBJECT_COLORS,
    SHAPES,
    EditTask,
    T2IPrompt,
    describe,
    noun,
)
from .scene import SIZES, Obj, Scene, fits

OPPOSITE = {"left of": "right of", "right of": "left of", "above": "below", "below": "above"}


def t2i_text(family: str, spec: dict) -> str:
    """The grammar's text for a text-to-image spec of ``family``."""
    objs = spec["objects"]
    d = [describe(o["color"], o["shape"], o.get("size")) for o in objs]
    if family == "single":
        return f"a {d[0]}"
    if family == "two_objects":
        return f"a {d[0]} and a {d[1]}"
    if family == "counting":
        o = objs[0]
        return f"{NUMBERS[o['count'] - 1]} {o['color']} {noun(o['shape'], o['count'])}"
    if family == "position":
        return f"a {d[0]} {spec['relation']['rel']} a {d[1]}"
    if family == "background":
        return f"a {d[0]} on a {spec['background']} background"
    raise ValueError(f"unknown text-to-image family {family!r}")


def _t2i_changes(prompt: T2IPrompt) -> list[tuple[str, dict]]:
    """Every spec one fact away from ``prompt``'s (what changed, the new spec)."""
    spec, out = prompt.spec, []
    pairs = [(o["color"], o["shape"]) for o in spec["objects"]]

    def with_object(i: int, **change) -> dict:
        objs = [dict(o) for o in spec["objects"]]
        objs[i].update(change)
        return {**spec, "objects": objs}

    for i, o in enumerate(spec["objects"]):
        others = set(pairs[:i] + pairs[i + 1:])
        out += [(f"colour of object {i + 1}", with_object(i, color=c)) for c in OBJECT_COLORS
                if c != o["color"] and (c, o["shape"]) not in others]
        out += [(f"shape of object {i + 1}", with_object(i, shape=s)) for s in SHAPES
                if s != o["shape"] and (o["color"], s) not in others]
        if o.get("size"):
            out.append((f"size of object {i + 1}", with_object(i, size="large" if o["size"] == "small" else "small")))
        if prompt.family == "counting":
            out += [("count", with_object(i, count=n)) for n in range(1, len(NUMBERS) + 1) if n != o["count"]]
    if spec.get("relation"):
        out.append(("relation", {**spec, "relation": {**spec["relation"], "rel": OPPOSITE[spec["relation"]["rel"]]}}))
    if spec.get("background"):
        out += [("background", {**spec, "background": b}) for b in BACKGROUND_COLORS if b != spec["background"]]
    return out


def _ref(o: Obj) -> str:
    return f"the {describe(o.color, o.shape)}"


def _edit_changes(task: EditTask) -> list[tuple[str, EditTask]]:
    """Every edit of the same source and family one parameter away from ``task``."""
    src, fam, k = task.source, task.family, task.target_index
    objs = list(src.objects)
    out: list[tuple[str, EditTask]] = []
    used = {(o.color, o.shape) for o in objs}

    def changed(text: str, i: int, new: Obj) -> EditTask | None:
        others = objs[:i] + objs[i + 1:]
        if not fits(new, others):
            return None
        tgt = Scene(src.background, tuple(objs[:i]) + (new,) + tuple(objs[i + 1:]))
        return EditTask(text, fam, src, tgt, i, tuple((j, j) for j in range(len(objs)) if j != i))

    head = task.instruction.rsplit(" ", 1)[0]  # the instruction without its last word (the parameter)
    if fam == "background":
        bgs = [b for b in BACKGROUND_COLORS if b not in (src.background, task.target.background)]
        template = next((t for t in BACKGROUND_TEMPLATES if t.format(src=src.background, bg=task.target.background) == task.instruction),
                        BACKGROUND_TEMPLATES[0])
        out += [("background", EditTask(template.format(src=src.background, bg=b), fam, src, Scene(b, src.objects), None,
                                         task.preserved)) for b in bgs]
    elif fam == "recolor":
        o = objs[k]
        for c in OBJECT_COLORS:
            if c not in (o.color, task.target.objects[k].color) and (c, o.shape) not in used:
                out.append(("colour", changed(f"{head} {c}", k, dataclasses.replace(o, color=c))))
    elif fam == "replace":
        o = objs[k]
        for s in SHAPES:
            if s not in (o.shape, task.target.objects[k].shape) and (o.color, s) not in used:
                out.append(("shape", changed(f"{head} {s}", k, dataclasses.replace(o, shape=s))))
    elif fam == "move":
        o, said = objs[k], task.instruction.split()[-1]
        for d in DIRECTIONS:
            if d != said:
                dx, dy = {"left": (-MOVE_STEP, 0), "right": (MOVE_STEP, 0), "up": (0, -MOVE_STEP), "down": (0, MOVE_STEP)}[d]
                out.append(("direction", changed(f"{head} {d}", k, o.moved_to(o.x + dx, o.y + dy))))
    elif fam == "resize":
        for i, o in enumerate(objs):
            if i != k:
                size2 = "large" if o.size == "small" else "small"
                grow = SIZES["large"] - SIZES["small"]
                shift = -(grow // 2) if size2 == "large" else grow // 2
                word = "larger" if size2 == "large" else "smaller"
                out.append(("object", changed(f"make {_ref(o)} {word}", i, Obj(o.shape, o.color, size2, o.x + shift, o.y + shift))))
    elif fam == "remove":
        for i, o in enumerate(objs):
            if i != next(iter(set(range(len(objs))) - {si for si, _ in task.preserved})):
                tgt = Scene(src.background, tuple(objs[:i] + objs[i + 1:]))
                kept = tuple((j, j if j < i else j - 1) for j in range(len(objs)) if j != i)
                out.append(("object", EditTask(f"remove {_ref(o)}", fam, src, tgt, None, kept)))
    elif fam == "add":
        new = task.target.objects[k]
        size = new.size if new.size in task.instruction.split() else None
        for c in OBJECT_COLORS:
            if c != new.color and (c, new.shape) not in used:
                o2 = dataclasses.replace(new, color=c)
                out.append(("added colour", EditTask(f"add a {describe(c, new.shape, size)}", fam, src,
                                                     Scene(src.background, tuple(objs) + (o2,)), k, task.preserved)))
        for s in SHAPES:
            if s != new.shape and (new.color, s) not in used:
                o2 = dataclasses.replace(new, shape=s)
                if fits(o2, objs):
                    out.append(("added shape", EditTask(f"add a {describe(new.color, s, size)}", fam, src,
                                                        Scene(src.background, tuple(objs) + (o2,)), k, task.preserved)))
    else:
        raise ValueError(f"unknown edit family {fam!r}")
    return [(what, t) for what, t in out if t is not None]


def one_fact_away(item: T2IPrompt | EditTask, split: str | None = "train") -> list[tuple[str, T2IPrompt | EditTask]]:
    """Every (what changed, prompt or edit) with exactly one fact of ``item`` changed whose text
    belongs to ``split`` (None: any split), in a fixed order."""
    if item.task == "t2i":
        options = [(what, T2IPrompt(t2i_text(item.family, spec), item.family, spec)) for what, spec in _t2i_changes(item)]
    else:
        options = _edit_changes(item)
    return [(w, it) for w, it in options if it.text != item.text and (split is None or it.split == split)]


def minimally_wrong(item: T2IPrompt | EditTask, rng: np.random.Generator, split: str | None = "train"
                    ) -> tuple[str, T2IPrompt | EditTask] | None:
    """(what changed, the wrong prompt or edit) with exactly one fact of ``item`` changed, drawn
    among those whose text belongs to ``split`` (None: any split); None when there is none."""
    options = one_fact_away(item, split)
    if not options:
        return None
    return options[int(rng.integers(len(options)))]
