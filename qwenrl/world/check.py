"""Strict GenEval-style checks of an image against a prompt or an edit task, with reasons.

An image passes only when every requirement is met. For text-to-image: exactly the
described objects (colour, shape, count, and size where the prompt names it), nothing
else, the relation between centroids, and the background where the prompt names it. For
editing: the instruction's change happened *and* everything else was preserved (other
objects in place with the same attributes, the background unless the edit is about it,
no extra objects).

Objects whose best shape template overlaps them less than ``MIN_SHAPE_CONFIDENCE``
(intersection over union) are unrecognisable: they satisfy no requirement and count as
extra, so a blob cannot pass for a shape.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Union

import numpy as np

from .grammar import EditTask, T2IPrompt, describe, noun
from .parse import ParsedObject, ParsedScene, object_centroid, parse
from .scene import Obj

PRESERVE_TOLERANCE = 2.0  # px a preserved object's centroid may drift
PLACE_TOLERANCE = 3.0  # px an edited (recoloured, replaced, resized) object may drift
RELATION_MARGIN = 2.0  # px by which centroids must differ along a relation's axis
MOVE_MIN = 4.0  # px a moved object must travel in the asked direction
MOVE_MAX_ACROSS = 3.0  # px it may drift across that direction
MIN_SHAPE_CONFIDENCE = 0.5  # template IoU below which an object is unrecognisable

Task = Union[T2IPrompt, EditTask]


@dataclass
class CheckResult:
    """``passed`` is True when every requirement is met; ``reasons`` say why not."""

    passed: bool
    reasons: list[str]
    requirements: list[tuple[str, bool]]
    parsed: ParsedScene | None = field(default=None, repr=False)

    @property
    def fraction_met(self) -> float:
        if not self.requirements:
            return 1.0
        return sum(met for _, met in self.requirements) / len(self.requirements)

    def to_dict(self) -> dict:
        return {
            "passed": self.passed,
            "reasons": list(self.reasons),
            "requirements": [[d, bool(m)] for d, m in self.requirements],
        }


class Ledger:
    """Requirements and reasons as they are checked, plus which objects are accounted for."""

    def __init__(self, parsed: ParsedScene) -> None:
        self.parsed = parsed
        self.objects = parsed.objects
        self.claimed: set[int] = set()
        self.requirements: list[tuple[str, bool]] = []
        self.reasons: list[str] = []

    def require(self, description: str, met: bool, reason: str = "") -> None:
        self.requirements.append((description, bool(met)))
        if not met:
            self.reasons.append(reason or f"not met: {description}")

    def candidates(self, color: str | None = None, shape: str | None = None, size: str | None = None) -> list[int]:
        """Unclaimed recognisable objects of that colour, shape and size (None: any)."""
        return [
            i
            for i, o in enumerate(self.objects)
            if i not in self.claimed
            and recognisable(o)
            and (color is None or o.color == color)
            and (shape is None or o.shape == shape)
            and (size is None or o.size == size)
        ]

    def closest(self, indices: list[int], point: tuple[float, float]) -> tuple[int | None, float]:
        if not indices:
            return None, float("inf")
        dists = [_distance(self.objects[i].centroid, point) for i in indices]
        k = int(np.argmin(dists))
        return indices[k], dists[k]

    def require_no_extra(self) -> None:
        extra = [o for i, o in enumerate(self.objects) if i not in self.claimed]
        reasons = [_describe_extra(o) for o in extra]
        self.require("no other objects", not extra, "; ".join(reasons))

    def result(self) -> CheckResult:
        passed = all(met for _, met in self.requirements)
        return CheckResult(passed, self.reasons, self.requirements, self.parsed)


def recognisable(o: ParsedObject) -> bool:
    return o.shape_confidence >= MIN_SHAPE_CONFIDENCE


def _distance(a: tuple[float, float], b: tuple[float, float]) -> float:
    return float(np.hypot(a[0] - b[0], a[1] - b[1]))


def _at(point: tuple[float, float]) -> str:
    return f"({point[0]:.0f}, {point[1]:.0f})"


def _describe_extra(o: ParsedObject) -> str:
    if not recognisable(o):
        return (
            f"unrecognisable {o.color} blob at {_at(o.centroid)} "
            f"(best fit {o.shape}, IoU {o.shape_confidence:.2f})"
        )
    return f"extra {o.size} {o.color} {o.shape} at {_at(o.centroid)}"


def _name(o: Obj, with_size: bool = True) -> str:
    return describe(o.color, o.shape, o.size if with_size else None)


# ---------------------------------------------------------------------------------------
# Text to image
# ---------------------------------------------------------------------------------------


def _relation_holds(rel: str, a: tuple[float, float], b: tuple[float, float]) -> bool:
    if rel == "left of":
        return a[0] < b[0] - RELATION_MARGIN
    if rel == "right of":
        return a[0] > b[0] + RELATION_MARGIN
    if rel == "above":
        return a[1] < b[1] - RELATION_MARGIN
    if rel == "below":
        return a[1] > b[1] + RELATION_MARGIN
    raise ValueError(f"unknown relation {rel!r}")


def check_t2i(prompt: T2IPrompt, parsed: ParsedScene) -> CheckResult:
    """Whether ``parsed`` shows exactly what ``prompt`` describes."""
    spec = prompt.spec
    ledger = Ledger(parsed)
    found: list[list[int]] = []
    for o in spec["objects"]:
        color, shape, count, size = o["color"], o["shape"], o["count"], o.get("size")
        matches = ledger.candidates(color, shape, size)
        name = describe(color, noun(shape, count), size)
        reason = f"expected {count} {name}, found {len(matches)}"
        if size:
            other_size = [i for i in ledger.candidates(color, shape) if i not in matches]
            if other_size:
                reason += f" (and {len(other_size)} of the other size)"
        ledger.require(f"exactly {count} {name}", len(matches) == count, reason)
        ledger.claimed.update(matches)
        found.append(matches)

    rel = spec.get("relation")
    if rel:
        a_spec, b_spec = spec["objects"][rel["a"]], spec["objects"][rel["b"]]
        a_name = describe(a_spec["color"], a_spec["shape"], a_spec.get("size"))
        b_name = describe(b_spec["color"], b_spec["shape"], b_spec.get("size"))
        description = f"the {a_name} is {rel['rel']} the {b_name}"
        a_found, b_found = found[rel["a"]], found[rel["b"]]
        if len(a_found) != 1 or len(b_found) != 1:
            ledger.require(description, False, f"cannot check '{rel['rel']}': need one {a_name} and one {b_name}")
        else:
            a, b = parsed.objects[a_found[0]].centroid, parsed.objects[b_found[0]].centroid
            holds = _relation_holds(rel["rel"], a, b)
            ledger.require(
                description,
                holds,
                f"the {a_name} at {a[0]:.1f}, {a[1]:.1f} is not {rel['rel']} the {b_name} at {b[0]:.1f}, {b[1]:.1f}",
            )

    ledger.require_no_extra()
    if spec.get("background"):
        bg = spec["background"]
        ledger.require(f"{bg} background", parsed.background == bg, f"background is {parsed.background}, not {bg}")
    return ledger.result()


# ---------------------------------------------------------------------------------------
# Editing
# ---------------------------------------------------------------------------------------


def _what_is_there(ledger: Ledger, point: tuple[float, float]) -> str:
    """A note on an unclaimed object near ``point``, for reasons."""
    near = [i for i, o in enumerate(ledger.objects) if i not in ledger.claimed and _distance(o.centroid, point) <= 4.0]
    if not near:
        return ""
    o = ledger.objects[near[0]]
    return f"; a {o.size} {o.color} {o.shape} is there instead"


def _require_kept(ledger: Ledger, obj: Obj) -> None:
    """``obj`` is still there: same attributes, centroid within PRESERVE_TOLERANCE."""
    expected = object_centroid(obj)
    i, d = ledger.closest(ledger.candidates(obj.color, obj.shape, obj.size), expected)
    name = _name(obj)
    if i is not None and d <= PRESERVE_TOLERANCE:
        ledger.claimed.add(i)
        ledger.require(f"the {name} is unchanged", True)
        return
    if i is not None:
        ledger.claimed.add(i)
        reason = f"the {name} moved by {d:.1f} px"
    else:
        reason = f"the {name} is missing" + _what_is_there(ledger, expected)
    ledger.require(f"the {name} is unchanged", False, reason)


def _require_changed_in_place(ledger: Ledger, before: Obj, after: Obj, description: str) -> None:
    """``before`` became ``after`` where it stood (recolour, replace, resize)."""
    expected = object_centroid(after)
    i, d = ledger.closest(ledger.candidates(after.color, after.shape, after.size), expected)
    if i is not None and d <= PLACE_TOLERANCE:
        ledger.claimed.add(i)
        ledger.require(description, True)
        return
    if i is not None:
        ledger.claimed.add(i)
        reason = f"a {_name(after)} appeared {d:.1f} px from where the {_name(before)} was"
    else:
        j, dj = ledger.closest(ledger.candidates(before.color, before.shape, before.size), object_centroid(before))
        if j is not None and dj <= PRESERVE_TOLERANCE:
            ledger.claimed.add(j)
            reason = f"the {_name(before)} is unchanged"
        else:
            reason = f"no {_name(after)} where the {_name(before)} was" + _what_is_there(ledger, expected)
    ledger.require(description, False, reason)


def move_shift(start: tuple[float, float], end: tuple[float, float], at: tuple[float, float]) -> tuple[float, float]:
    """(along, across) in px: how far ``at`` lies from ``start`` along the move's direction
    (the sign of ``end − start`` per axis) and how far beside it."""
    unit = np.sign([end[0] - start[0], end[1] - start[1]])
    shift = np.array([at[0] - start[0], at[1] - start[1]])
    return float(shift @ unit), float(abs(shift[0] * unit[1] - shift[1] * unit[0]))


def _require_moved(ledger: Ledger, before: Obj, after: Obj, direction: str) -> None:
    start = object_centroid(before)
    end = object_centroid(after)
    description = f"the {_name(before, False)} moved {direction}"
    i, _ = ledger.closest(ledger.candidates(before.color, before.shape, before.size), end)
    if i is None:
        ledger.require(description, False, f"the {_name(before)} is missing" + _what_is_there(ledger, end))
        return
    ledger.claimed.add(i)
    along, across = move_shift(start, end, ledger.objects[i].centroid)
    ok = along >= MOVE_MIN and across <= MOVE_MAX_ACROSS
    if along < MOVE_MIN:
        reason = f"the {_name(before, False)} moved {along:.1f} px {direction} (needs {MOVE_MIN:.0f})"
    else:
        reason = f"the {_name(before, False)} drifted {across:.1f} px sideways (at most {MOVE_MAX_ACROSS:.0f})"
    ledger.require(description, ok, reason)


def check_edit(task: EditTask, parsed: ParsedScene) -> CheckResult:
    """Whether ``parsed`` (the edited image) carries out ``task`` and preserves the rest."""
    src, tgt = task.source, task.target
    ledger = Ledger(parsed)
    family = task.family
    k = task.target_index

    # Preserved objects first: the edited object never shares their colour and shape, so
    # they claim nothing it needs, and a stray object near an edit is not taken for them.
    for _, ti in task.preserved:
        _require_kept(ledger, tgt.objects[ti])
    if family == "background":
        ledger.require(
            f"{tgt.background} background",
            parsed.background == tgt.background,
            f"background is {parsed.background}, not {tgt.background}",
        )
    elif family in ("recolor", "replace", "resize"):
        before, after = src.objects[k], tgt.objects[k]
        change = {"recolor": after.color, "replace": f"a {after.shape}", "resize": after.size}[family]
        _require_changed_in_place(ledger, before, after, f"the {_name(before, False)} is now {change}")
    elif family == "move":
        before, after = src.objects[k], tgt.objects[k]
        direction = task.instruction.split()[-1]
        _require_moved(ledger, before, after, direction)
    elif family == "add":
        new = tgt.objects[k]
        size = new.size if new.size in task.instruction.split() else None
        name = describe(new.color, new.shape, size)
        i, _ = ledger.closest(ledger.candidates(new.color, new.shape, size), object_centroid(new))
        reason = f"no {name} was added"
        if i is None and size:
            other = ledger.candidates(new.color, new.shape)
            if other:
                ledger.claimed.add(other[0])
                reason = f"the added {new.color} {new.shape} is {ledger.objects[other[0]].size}, not {size}"
        if i is not None:
            ledger.claimed.add(i)
        ledger.require(f"a {name} was added", i is not None, reason)
    elif family == "remove":
        kept_sources = {si for si, _ in task.preserved}
        for si, gone in enumerate(src.objects):
            if si in kept_sources:
                continue
            # Any remaining object of its colour and shape means it is still there.
            left = ledger.candidates(gone.color, gone.shape)
            at = f" at {_at(ledger.objects[left[0]].centroid)}" if left else ""
            ledger.claimed.update(left)
            ledger.require(f"the {_name(gone, False)} is gone", not left, f"the {_name(gone, False)} is still there{at}")
    else:
        raise ValueError(f"unknown edit family {family!r}")

    if family != "background":
        ledger.require(
            f"background stays {src.background}",
            parsed.background == src.background,
            f"background changed to {parsed.background} (was {src.background})",
        )
    ledger.require_no_extra()
    return ledger.result()


def check_image(task: Task, image: np.ndarray) -> CheckResult:
    """Parse ``image`` (RGB uint8, IMAGE_SIZE square) and check it against ``task``."""
    parsed = parse(image)
    if isinstance(task, T2IPrompt):
        return check_t2i(task, parsed)
    if isinstance(task, EditTask):
        return check_edit(task, parsed)
    raise TypeError(f"check_image expects a T2IPrompt or an EditTask, got {type(task).__name__}")
