"""Text → spec: read a prompt or an edit instruction of the Shapes grammar back into what it asks for.

The grammar (``qwenrl.world.grammar``) writes prompts and instructions from specs; this module
reads a visitor's text the other way, so that a live prompt is refused unless it is a sentence
of the grammar (not merely its words: "circle red a blue blue" is refused) and an edit unless
it applies to its source (the object it names is there). What is read is exactly what the
checker then checks (a ``T2IPrompt`` spec, an ``EditTask`` with its target scene).

Text is read forgivingly: case and punctuation do not matter ("A red circle." and "a red
circle, left of a blue square" read as the grammar's sentences).

Prompts: one or two object phrases — ``a [size] colour shape`` or ``NUMBER [size] colour
shape(s)`` — joined by ``and`` or by a relation (``left of``, ``right of``, ``above``,
``below``; one object on each side), optionally ``on a BACKGROUND background``.

Instructions (over a source scene): ``change/make the [BACKGROUND] background (to) COLOUR``,
``add a [size] colour shape``, ``remove THE_OBJECT``, ``make THE_OBJECT COLOUR``, ``change
THE_OBJECT to COLOUR``, ``replace THE_OBJECT with a SHAPE``, ``turn THE_OBJECT into a SHAPE``,
``move THE_OBJECT left/right/up/down``, ``make THE_OBJECT larger/smaller``, where
``THE_OBJECT`` is ``the [size] colour shape`` and must name exactly one object of the source.
"""

from __future__ import annotations

import numpy as np

from .grammar import (
    DIRECTIONS,
    MOVE_STEP,
    NUMBERS,
    RELATIONS,
    EditTask,
    GrammarError,
    T2IPrompt,
    describe,
    words_of,
)
from .scene import BACKGROUND_COLORS, OBJECT_COLORS, SHAPES, SIZES, Obj, Scene, fits, place

PROMPT_EXAMPLES = "e.g. “a red circle left of a blue square”, “three green triangles”, “a small cyan square on a black background”"
EDIT_EXAMPLES = "e.g. “make the background blue”, “add a small red circle”, “move the green square left”"


def normalize(text: str) -> str:
    """The text as the grammar writes it: lower case, words only (punctuation dropped), single spaces."""
    return " ".join(words_of(text))


class _Words:
    """A cursor over the words of a sentence, with errors that say where reading stopped."""

    def __init__(self, text: str, what: str):
        self.words = words_of(text)
        self.pos = 0
        self.what = what

    def peek(self, k: int = 0) -> str | None:
        i = self.pos + k
        return self.words[i] if i < len(self.words) else None

    def take(self, *options: str) -> str | None:
        word = self.peek()
        if word is not None and (not options or word in options):
            self.pos += 1
            return word
        return None

    def expect(self, options, what: str) -> str:
        word = self.peek()
        if word is None or word not in options:
            self.fail(f"expected {what}")
        self.pos += 1
        return word

    def fail(self, why: str):
        seen = " ".join(self.words[: self.pos])
        at = f" after “{seen}”" if seen else " at the start"
        got = self.peek()
        found = f", found “{got}”" if got is not None else ", but the text ends"
        raise GrammarError(f"not a Shapes {self.what}: {why}{at}{found}")

    def done(self) -> bool:
        return self.pos >= len(self.words)


def _object_phrase(w: _Words, article: tuple[str, ...]) -> dict:
    """``a|NUMBER [size] colour shape(s)`` → {"color", "shape", "count", "size"?}."""
    counted = w.expect(article, "“a” or a number (one to four)")
    count = 1 if counted in ("a",) else NUMBERS.index(counted) + 1
    size = w.take(*SIZES)
    color = w.expect(tuple(OBJECT_COLORS), f"a colour ({', '.join(OBJECT_COLORS)})")
    plural = tuple(s + "s" for s in SHAPES)
    noun = w.expect(SHAPES + plural, f"a shape ({', '.join(SHAPES)})")
    shape = noun[:-1] if noun in plural else noun
    if (count == 1) != (noun in SHAPES):
        w.pos -= 1
        w.fail(f"“{counted}” needs “{shape if count == 1 else shape + 's'}”")
    return {"color": color, "shape": shape, "count": count} | ({"size": size} if size else {})


def _relation(w: _Words) -> str | None:
    for rel in RELATIONS:
        parts = rel.split()
        if [w.peek(k) for k in range(len(parts))] == parts:
            w.pos += len(parts)
            return rel
    return None


def read_prompt(text: str) -> T2IPrompt:
    """The text-to-image prompt ``text`` reads as (GrammarError, saying where, when it is not one)."""
    w = _Words(text, "prompt")
    if w.done():
        raise GrammarError(f"not a Shapes prompt: it has no words; {PROMPT_EXAMPLES}")
    numbers = ("a",) + NUMBERS
    objects = [_object_phrase(w, numbers)]
    relation = None
    if w.take("and"):
        objects.append(_object_phrase(w, numbers))
    elif (rel := _relation(w)) is not None:
        objects.append(_object_phrase(w, numbers))
        if objects[0]["count"] != 1 or objects[1]["count"] != 1:
            raise GrammarError(f"not a Shapes prompt: “{rel}” relates one object to one object (“a … {rel} a …”)")
        relation = {"a": 0, "rel": rel, "b": 1}
    background = None
    if w.take("on"):
        w.expect(("a",), "“a BACKGROUND background”")
        background = w.expect(tuple(BACKGROUND_COLORS), f"a background colour ({', '.join(BACKGROUND_COLORS)})")
        w.expect(("background",), "“background”")
    if not w.done():
        w.fail("expected the end of the prompt")
    if len(objects) == 2 and (objects[0]["color"], objects[0]["shape"]) == (objects[1]["color"], objects[1]["shape"]):
        raise GrammarError("not a Shapes prompt: both objects are the same colour and shape; "
                           "count them instead (e.g. “two red circles”)")
    family = ("background" if background else "position" if relation else "two_objects" if len(objects) == 2
              else "counting" if normalize(text).split()[0] in NUMBERS else "single")
    spec = {"objects": objects, "relation": relation, "background": background}
    return T2IPrompt(normalize(text), family, spec)


def _the_object(w: _Words, source: Scene) -> int:
    """``the [size] colour shape`` → the index of the one source object it names."""
    w.expect(("the",), "“the” and the object to edit")
    size = w.take(*SIZES)
    color = w.expect(tuple(OBJECT_COLORS), f"a colour ({', '.join(OBJECT_COLORS)})")
    shape = w.expect(SHAPES, f"a shape ({', '.join(SHAPES)})")
    found = [i for i, o in enumerate(source.objects)
             if o.color == color and o.shape == shape and (size is None or o.size == size)]
    name = describe(color, shape, size)
    if not found:
        raise GrammarError(f"the source image has no {name}; it has {_scene_words(source)}")
    if len(found) > 1:
        raise GrammarError(f"the source image has {len(found)} {name}s; name the size (small or large)")
    return found[0]


def _scene_words(scene: Scene) -> str:
    objects = ", ".join(f"a {describe(o.color, o.shape, o.size)}" for o in scene.objects) or "no objects"
    return f"{objects} on {scene.background}"


def read_instruction(text: str, source: Scene, seed: int = 0) -> EditTask:
    """The edit of ``source`` that ``text`` asks for, with its target scene (GrammarError when
    it is not an instruction of the grammar, or does not apply to ``source``). ``seed`` places
    an added object."""
    w = _Words(text, "edit instruction")
    verbs = ("add", "change", "make", "move", "remove", "replace", "turn")
    verb = w.expect(verbs, f"an edit verb ({', '.join(verbs)}); {EDIT_EXAMPLES}")
    objs = list(source.objects)
    keep_all = tuple((i, i) for i in range(len(objs)))
    instruction = normalize(text)

    if verb in ("change", "make") and (w.peek() == "background" or w.peek(1) == "background" or w.peek(2) == "background"):
        w.expect(("the",), "“the background”")
        named = w.take(*BACKGROUND_COLORS)
        w.expect(("background",), "“background”")
        if verb == "change":
            w.expect(("to",), "“to” and the new background colour")
        bg = w.expect(tuple(BACKGROUND_COLORS), f"a background colour ({', '.join(BACKGROUND_COLORS)})")
        _end(w)
        if named is not None and named != source.background:
            raise GrammarError(f"the source background is {source.background}, not {named}")
        if bg == source.background:
            raise GrammarError(f"the background is {bg} already")
        return EditTask(instruction, "background", source, Scene(bg, source.objects), None, keep_all)

    if verb == "add":
        new = _object_phrase(w, ("a",))
        _end(w)
        if len(objs) >= 4:
            raise GrammarError("the source image already has four objects, the most a Shapes scene holds")
        size = new.get("size") or "small"
        placed = place(np.random.default_rng(seed), new["shape"], new["color"], size, objs, tries=5000)
        if placed is None:
            raise GrammarError(f"there is no room for a {describe(new['color'], new['shape'], size)} in the source image")
        return EditTask(instruction, "add", source, Scene(source.background, tuple(objs) + (placed,)), len(objs), keep_all)

    k = _the_object(w, source)
    o = objs[k]
    others = objs[:k] + objs[k + 1:]
    keep_others = tuple((i, i) for i in range(len(objs)) if i != k)
    if verb == "remove":
        _end(w)
        preserved = tuple((i, i if i < k else i - 1) for i in range(len(objs)) if i != k)
        return EditTask(instruction, "remove", source, Scene(source.background, tuple(others)), None, preserved)
    if verb == "move":
        direction = w.expect(DIRECTIONS, f"a direction ({', '.join(DIRECTIONS)})")
        _end(w)
        dx, dy = {"left": (-MOVE_STEP, 0), "right": (MOVE_STEP, 0), "up": (0, -MOVE_STEP), "down": (0, MOVE_STEP)}[direction]
        new, family = o.moved_to(o.x + dx, o.y + dy), "move"
    elif verb in ("make", "change") and w.peek() in ("larger", "smaller"):
        grow = w.take()
        _end(w)
        size2 = "large" if grow == "larger" else "small"
        if size2 == o.size:
            raise GrammarError(f"the {describe(o.color, o.shape)} is {o.size} already")
        delta = SIZES["large"] - SIZES["small"]
        shift = -(delta // 2) if size2 == "large" else delta // 2
        new, family = Obj(o.shape, o.color, size2, o.x + shift, o.y + shift), "resize"
    elif verb in ("make", "change"):
        if verb == "change":
            w.expect(("to",), "“to” and the new colour")
        color = w.expect(tuple(OBJECT_COLORS), f"a colour ({', '.join(OBJECT_COLORS)}) or larger/smaller")
        _end(w)
        if color == o.color:
            raise GrammarError(f"the {describe(o.color, o.shape)} is {color} already")
        new, family = Obj(o.shape, color, o.size, o.x, o.y), "recolor"
    else:  # replace … with a SHAPE, turn … into a SHAPE
        w.expect(("with",) if verb == "replace" else ("into",), "“with a SHAPE”" if verb == "replace" else "“into a SHAPE”")
        w.expect(("a",), "“a” and a shape")
        shape = w.expect(SHAPES, f"a shape ({', '.join(SHAPES)})")
        _end(w)
        if shape == o.shape:
            raise GrammarError(f"the {describe(o.color, o.shape)} is a {shape} already")
        new, family = Obj(shape, o.color, o.size, o.x, o.y), "replace"
    if any((x.color, x.shape) == (new.color, new.shape) for x in others):
        raise GrammarError(f"the source image has another {describe(new.color, new.shape)} already")
    if not fits(new, others):
        raise GrammarError(f"the {describe(o.color, o.shape)} has no room to be {'moved' if family == 'move' else 'changed'} that way")
    target = Scene(source.background, tuple(objs[:k]) + (new,) + tuple(objs[k + 1:]))
    return EditTask(instruction, family, source, target, k, keep_others)


def _end(w: _Words) -> None:
    if not w.done():
        w.fail("expected the end of the instruction")
