"""Programmatic judges of the Shapes world: no weights, a rationale a person can check.

Every judge parses the image with ``qwenrl.world.parse`` (once per sample: the parse is
memoised on the sample and shared by the judges of a composite) and mirrors the strict
checker's requirements (``qwenrl.world.check``) with soft partial credit, so that a
sample the checker passes scores 1 on alignment / instruction / identity and a near miss
scores a little less than 1 rather than 0.

* ``shapes_alignment`` (t2i): share of the prompt's requirements met — each object group
  (colour, shape, count, size), the relation, nothing else, the background.
* ``shapes_aesthetics`` (t2i, edit): colour purity, clean background, no specks or
  fragments, sharp edges — from the parse and pixel statistics, vectorised over the batch.
* ``shapes_fidelity`` (t2i, edit): how well each object's pixels match its shape's
  template (IoU) and one of the world's two sizes.
* ``shapes_instruction`` (edit): the instruction's change happened.
* ``shapes_identity`` (edit): what the instruction did not touch is unchanged — preserved
  objects, the background, no extra objects, and the pixels outside the edited region.
* ``shapes_oracle`` (t2i, edit): the strict checker, 1 if it passes, else 0.
* ``shapes_clarity`` (t2i, edit): how far each wanted object's shape and size sit from the
  checker's decision boundaries (a circle drawn halfway to a square scores about 0.5).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment

from ..world.check import (
    MOVE_MAX_ACROSS,
    MOVE_MIN,
    PLACE_TOLERANCE,
    PRESERVE_TOLERANCE,
    RELATION_MARGIN,
    Ledger,
    check_edit,
    check_t2i,
    recognisable,
)
from ..world.grammar import NUMBERS, EditTask, T2IPrompt, describe, noun
from ..world.parse import COLOR_THRESHOLD, LARGE_MIN_SIDE, UNKNOWN, ParsedObject, ParsedScene, object_centroid, parse
from ..world.scene import IMAGE_SIZE, PALETTE, PALETTE_INDEX, SIZES, Obj, object_mask, shape_mask
from .base import Judge, Judgement, Sample

_PALETTE_F = PALETTE.astype(np.float32)
_PALETTE_I = PALETTE.astype(np.int32)
_PALETTE_STEP = np.linalg.norm(_PALETTE_F[:, None] - _PALETTE_F[None], axis=-1)
PIXEL_CHANGE = 48  # max per-channel difference (0-255) for a pixel to count as unchanged
FRAGMENT_AREA = 24  # objects smaller than this (pixels) are fragments, not shapes


def parsed_scene(sample: Sample) -> ParsedScene | None:
    """The parse of the sample's image, memoised; None if it is not a Shapes-world image."""
    if "parsed" not in sample.memo:
        try:
            sample.memo["parsed"] = parse(sample.image)
        except ValueError:
            sample.memo["parsed"] = None
    return sample.memo["parsed"]


def _at(p: tuple[float, float]) -> str:
    return f"({p[0]:.0f}, {p[1]:.0f})"


def _seen(parsed: ParsedScene) -> str:
    if not parsed.objects:
        return f"nothing on a {parsed.background} background"
    return "; ".join(f"{o.size} {o.color} {o.shape} at {_at(o.centroid)}" for o in parsed.objects) + (
        f" on {parsed.background}"
    )


def _fmt_credit(c: float) -> str:
    return "met" if c >= 1.0 else ("not met" if c <= 0.0 else f"partly met ({c:.2f})")


def _t2i_prompt(sample: Sample) -> T2IPrompt | None:
    """The sample's T2IPrompt; a bare spec dict (``{"objects", "relation", "background"}``) is accepted."""
    spec = sample.spec
    if isinstance(spec, T2IPrompt):
        return spec
    if isinstance(spec, dict) and "objects" in spec:
        return T2IPrompt(sample.prompt, sample.family or "", spec)
    return None


class _ShapesJudge(Judge):
    """Shared plumbing: batch loop, applicability checks."""

    def __call__(self, samples: list[Sample]) -> list[Judgement]:
        return [self.judge_one(s) for s in samples]

    def judge_one(self, sample: Sample) -> Judgement:
        raise NotImplementedError

    def unparseable(self, sample: Sample) -> Judgement:
        return self.not_applicable(sample, f"not a {IMAGE_SIZE}×{IMAGE_SIZE} Shapes-world image, shape {sample.image.shape}")


# ---------------------------------------------------------------------------------------
# Text to image: alignment
# ---------------------------------------------------------------------------------------


class ShapesAlignment(_ShapesJudge):
    kind = "shapes_alignment"
    tasks = ("t2i",)

    @dataclass
    class Config:
        #: credit when a required relation holds in direction but by less than the margin
        relation_near_credit: float = 0.5

        def __post_init__(self) -> None:
            if not 0 <= self.relation_near_credit <= 1:
                raise ValueError(f"relation_near_credit must be in [0, 1], got {self.relation_near_credit}")

    def judge_one(self, sample: Sample) -> Judgement:
        if sample.task != "t2i":
            return self.not_applicable(sample, "alignment scores text-to-image samples")
        prompt = _t2i_prompt(sample)
        if prompt is None:
            return self.not_applicable(sample, "needs the prompt's spec (a T2IPrompt)")
        parsed = parsed_scene(sample)
        if parsed is None:
            return self.unparseable(sample)
        return self.align(prompt.spec, parsed)

    def align(self, spec: dict[str, Any], parsed: ParsedScene) -> Judgement:
        objs = parsed.objects
        usable = [i for i, o in enumerate(objs) if recognisable(o)]
        # One slot per wanted object; an object fills at most one slot (optimal assignment).
        slots: list[tuple[int, dict[str, Any]]] = [(g, o) for g, o in enumerate(spec["objects"]) for _ in range(o["count"])]
        sim = np.zeros((len(slots), len(usable)))
        for r, (_, want) in enumerate(slots):
            for c, i in enumerate(usable):
                sim[r, c] = _similarity(want, objs[i])
        assigned: dict[int, tuple[int, float]] = {}  # slot → (object index, similarity)
        if sim.size:
            rows, cols = linear_sum_assignment(-sim)
            for r, c in zip(rows, cols):
                if sim[r, c] > 0:
                    assigned[r] = (usable[c], float(sim[r, c]))

        names: list[str] = []
        credits: list[float] = []
        notes: list[str] = []
        kinds: list[str] = []
        exact_kind: set[int] = set()
        first_slot: dict[int, int] = {}
        for g, want in enumerate(spec["objects"]):
            mine = [r for r, (gg, _) in enumerate(slots) if gg == g]
            first_slot[g] = mine[0]
            n = want["count"]
            exact = [i for i in usable if _similarity(want, objs[i]) == 1.0]
            exact_kind.update(exact)
            got = sum(assigned.get(r, (None, 0.0))[1] for r in mine)
            credit = got / max(n, len(exact))
            names.append(_want_name(want))
            credits.append(credit)
            kinds.append("objects")
            notes.append(self._object_note(want, mine, assigned, exact, objs, credit))

        rel = spec.get("relation")
        if rel:
            a_want, b_want = spec["objects"][rel["a"]], spec["objects"][rel["b"]]
            names.append(f"the {_short(a_want)} {rel['rel']} the {_short(b_want)}")
            credit, note = self._relation(rel["rel"], assigned.get(first_slot[rel["a"]]), assigned.get(first_slot[rel["b"]]), objs)
            credits.append(credit)
            kinds.append("relation")
            notes.append(note)

        claimed = {i for i, _ in assigned.values()} | exact_kind
        extras = [o for i, o in enumerate(objs) if i not in claimed]
        names.append("nothing else")
        credits.append(1.0 / (1 + len(extras)))
        kinds.append("nothing_else")
        notes.append(
            "met" if not extras else "not met: " + "; ".join(_extra(o) for o in extras) + f" (credit 1/{1 + len(extras)})"
        )

        if spec.get("background"):
            bg = spec["background"]
            names.append(f"a {bg} background")
            ok = parsed.background == bg
            credits.append(1.0 if ok else 0.0)
            kinds.append("background")
            notes.append("met" if ok else f"not met: background is {parsed.background}")

        score = float(np.mean(credits))
        req = ", ".join(f"({k}) {n}" for k, n in enumerate(names, 1))
        checks = "; ".join(f"({k}) {n}" for k, n in enumerate(notes, 1))
        rationale = (
            f"Requirements: {req}. Seen: {_seen(parsed)}. {checks}. "
            f"Alignment {sum(credits):.2f}/{len(credits)} = {score:.2f}."
        )
        parts: dict[str, float] = {}
        for kind in dict.fromkeys(kinds):
            parts[kind] = float(np.mean([c for c, k in zip(credits, kinds) if k == kind]))
        return Judgement(score, rationale, parts, self.name)

    @staticmethod
    def _object_note(want, slots, assigned, exact, objs, credit) -> str:
        n = want["count"]
        found = [assigned[r] for r in slots if r in assigned]
        if n == 1 and found and found[0][1] == 1.0 and len(exact) == 1:
            o = objs[found[0][0]]
            return f"met: {o.color} {o.shape} at {_at(o.centroid)}, colour distance {o.color_distance:.0f}, shape IoU {o.shape_confidence:.2f}"
        bits = []
        for i, s in found:
            o = objs[i]
            if s < 1.0:
                bits.append(f"closest is a {o.size} {o.color} {o.shape} at {_at(o.centroid)} ({_mismatch(want, o)})")
        head = f"{len(exact)} found" if n > 1 or len(exact) > 1 else ("found" if exact else f"no {_short(want)}")
        if len(exact) > n:
            head += f", {len(exact) - n} too many"
        return f"{_fmt_credit(credit)}: {head}" + (f"; {'; '.join(bits)}" if bits else "")

    def _relation(self, rel: str, a, b, objs) -> tuple[float, str]:
        if a is None or b is None:
            return 0.0, "not met: cannot check, an object is missing"
        pa, pb = objs[a[0]].centroid, objs[b[0]].centroid
        axis, sign = {"left of": (0, -1), "right of": (0, 1), "above": (1, -1), "below": (1, 1)}[rel]
        # along > 0 when a is on the asked side of b
        along = sign * (pa[axis] - pb[axis])
        coord = "x" if axis == 0 else "y"
        cmp = "<" if sign < 0 else ">"
        if along > RELATION_MARGIN:
            geo, how = 1.0, f"{coord} {pa[axis]:.0f} {cmp} {pb[axis]:.0f}"
        elif along > 0:
            geo = self.options.relation_near_credit
            how = f"{coord} {pa[axis]:.1f} vs {pb[axis]:.1f}, within the {RELATION_MARGIN:g} px margin"
        else:
            geo, how = 0.0, f"wrong side, {coord} {pa[axis]:.0f} vs {pb[axis]:.0f}"
        credit = geo * min(a[1], b[1])
        if geo > 0 and min(a[1], b[1]) < 1:
            how += ", between partly matching objects"
        return credit, f"{_fmt_credit(credit)}, {how}"


def _similarity(want: dict[str, Any], o: ParsedObject) -> float:
    attrs = [o.color == want["color"], o.shape == want["shape"]]
    if want.get("size"):
        attrs.append(o.size == want["size"])
    return sum(attrs) / len(attrs)


def _mismatch(want: dict[str, Any], o: ParsedObject) -> str:
    bits = []
    if o.color != want["color"]:
        bits.append(f"colour {o.color}, expected {want['color']}")
    if o.shape != want["shape"]:
        bits.append(f"shape {o.shape}, expected {want['shape']}")
    if want.get("size") and o.size != want["size"]:
        bits.append(f"size {o.size}, expected {want['size']}")
    return ", ".join(bits)


def _want_name(want: dict[str, Any]) -> str:
    n = want["count"]
    if n == 1:
        return "a " + describe(want["color"], want["shape"], want.get("size"))
    return " ".join(w for w in (NUMBERS[n - 1], want.get("size"), want["color"], noun(want["shape"], n)) if w)


def _short(want: dict[str, Any]) -> str:
    return describe(want["color"], want["shape"], want.get("size"))


def _extra(o: ParsedObject) -> str:
    if not recognisable(o):
        return f"unrecognisable {o.color} blob at {_at(o.centroid)} (IoU {o.shape_confidence:.2f})"
    return f"extra {o.size} {o.color} {o.shape} at {_at(o.centroid)}"


# ---------------------------------------------------------------------------------------
# Aesthetics and fidelity (any task)
# ---------------------------------------------------------------------------------------


class ShapesAesthetics(_ShapesJudge):
    kind = "shapes_aesthetics"

    @dataclass
    class Config:
        #: weights of colour purity, clean background, no specks, sharp edges
        weights: dict[str, float] = field(
            default_factory=lambda: {"purity": 0.3, "background": 0.3, "specks": 0.2, "edges": 0.2}
        )
        #: mean distance to the palette (RGB units) at which purity reaches 0
        purity_scale: float = 60.0

        def __post_init__(self) -> None:
            need = {"purity", "background", "specks", "edges"}
            if set(self.weights) != need or any(w < 0 for w in self.weights.values()) or not sum(self.weights.values()):
                raise ValueError(f"weights must give each of {sorted(need)} a weight ≥ 0, not all 0")

    def __call__(self, samples: list[Sample]) -> list[Judgement]:
        out: list[Judgement | None] = [None] * len(samples)
        todo, parses = [], []
        for i, s in enumerate(samples):
            p = parsed_scene(s)
            if p is None:
                out[i] = self.unparseable(s)
            else:
                todo.append(i)
                parses.append(p)
        if todo:
            stats = _pixel_stats(np.stack([samples[i].image for i in todo]), parses)
            for k, i in enumerate(todo):
                out[i] = self._judgement(parses[k], {name: v[k] for name, v in stats.items()})
        return out  # type: ignore[return-value]

    def _judgement(self, p: ParsedScene, st: dict[str, float]) -> Judgement:
        w = self.options.weights
        purity = float(max(0.0, 1.0 - st["mean_distance"] / self.options.purity_scale))
        background = float(st["background_clean"])
        fragments = [o for o in p.objects if o.area < FRAGMENT_AREA or not recognisable(o)]
        specks = max(0.0, 1.0 - 0.2 * p.speck_count - 0.34 * len(fragments))
        edges = float(st["edge_sharpness"])
        parts = {"purity": purity, "background": background, "specks": specks, "edges": edges}
        score = sum(w[k] * parts[k] for k in parts) / sum(w.values())
        formula = " + ".join(f"{w[k]:g}·{parts[k]:.2f}" for k in parts)
        rationale = (
            f"Colour purity {purity:.2f} (mean distance to the palette {st['mean_distance']:.1f}, "
            f"{st['unknown_fraction']:.0%} of pixels far from every palette colour); "
            f"background {background:.2f} ({st['background_off']:.0f} of {st['background_pixels']:.0f} background pixels off-colour); "
            f"specks {specks:.2f} ({p.speck_count} specks of {p.speck_area} px, {len(fragments)} fragments); "
            f"edges {edges:.2f} (mean contrast kept across {st['edge_pairs']:.0f} colour boundaries). "
            f"Aesthetics = ({formula}) / {sum(w.values()):g} = {score:.2f}."
        )
        return Judgement(score, rationale, parts, self.name)


def _pixel_stats(images: np.ndarray, parses: list[ParsedScene]) -> dict[str, np.ndarray]:
    """Per-image pixel statistics, vectorised over the batch (B, H, W, 3)."""
    b = len(parses)
    x = images.astype(np.int32)
    labels = np.stack([p.labels for p in parses])
    known = labels != UNKNOWN
    # Distance of each pixel to the palette colour of its (cleaned) label; for the pixels
    # the parser could not name, to the nearest palette colour.
    d = x - _PALETTE_I[np.where(known, labels, 0)]
    dist = np.sqrt((d * d).sum(-1).astype(np.float32))
    if not known.all():
        xu = x[~known].astype(np.float32)
        dist[~known] = np.sqrt(((xu[:, None, :] - _PALETTE_F[None]) ** 2).sum(-1).min(1))
    bg = np.array([PALETTE_INDEX[p.background] for p in parses])
    objects = np.zeros(labels.shape, dtype=bool)
    for k, p in enumerate(parses):
        for o in p.objects:
            objects[k] |= o.mask
    # Background pixels: everything not inside a found object.
    bgpix = ~objects
    off = bgpix & ((labels != bg[:, None, None]) | (dist > COLOR_THRESHOLD / 2))
    n_bg = bgpix.reshape(b, -1).sum(1)
    n_off = off.reshape(b, -1).sum(1)
    # Edge sharpness: across each pair of neighbours with different (cleaned) labels, the
    # colour step kept relative to the palette step; a blend or an unknown pixel keeps less.
    kept_sum = np.zeros(b)
    pairs = np.zeros(b)
    for axis in (1, 2):
        la, lb = _neighbours(labels, axis)
        diff = la != lb
        which = np.nonzero(diff)[0]
        la, lb = la[diff], lb[diff]
        xa, xb = _neighbours(x, axis)
        step = np.sqrt(((xa[diff] - xb[diff]) ** 2).sum(-1).astype(np.float32))
        ok = (la != UNKNOWN) & (lb != UNKNOWN)
        pal_step = _PALETTE_STEP[np.where(ok, la, 0), np.where(ok, lb, 0)]
        ratio = np.where(ok, np.minimum(1.0, step / np.maximum(pal_step, 1e-6)), 0.0)
        kept_sum += np.bincount(which, weights=ratio, minlength=b)
        pairs += np.bincount(which, minlength=b)
    return {
        "mean_distance": dist.reshape(b, -1).mean(1),
        "unknown_fraction": (~known).reshape(b, -1).mean(1),
        "background_clean": np.where(n_bg > 0, 1.0 - n_off / np.maximum(n_bg, 1), 1.0),
        "background_off": n_off,
        "background_pixels": n_bg,
        "edge_sharpness": np.where(pairs > 0, kept_sum / np.maximum(pairs, 1), 1.0),
        "edge_pairs": pairs,
    }


def _neighbours(a: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    if axis == 1:
        return a[:, :-1], a[:, 1:]
    return a[:, :, :-1], a[:, :, 1:]


class ShapesFidelity(_ShapesJudge):
    kind = "shapes_fidelity"

    @dataclass
    class Config:
        #: share of an object's fidelity that comes from its side matching small (8) or large (14)
        size_weight: float = 0.25

        def __post_init__(self) -> None:
            if not 0 <= self.size_weight <= 1:
                raise ValueError(f"size_weight must be in [0, 1], got {self.size_weight}")

    def judge_one(self, sample: Sample) -> Judgement:
        parsed = parsed_scene(sample)
        if parsed is None:
            return self.unparseable(sample)
        if not parsed.objects:
            if _wanted_objects(sample) == []:  # an edit that removes the last object: an empty scene is right
                return Judgement(1.0, "No object wanted and none drawn. Fidelity 1.", {"iou": 1.0, "size_fit": 1.0}, self.name)
            return Judgement(0.0, "No object drawn, so no shape to judge. Fidelity 0.", {"iou": 0.0, "size_fit": 0.0}, self.name)
        sw = self.options.size_weight
        notes, scores, ious, fits = [], [], [], []
        for k, o in enumerate(parsed.objects, 1):
            fit = 1.0 - min(abs(o.side - SIZES[o.size]), 4) / 4.0
            s = o.shape_confidence * (1 - sw + sw * fit)
            ranked = sorted(o.shape_scores.items(), key=lambda kv: kv[1], reverse=True)
            runner = f", runner-up {ranked[1][0]} {ranked[1][1]:.2f}" if len(ranked) > 1 else ""
            notes.append(
                f"({k}) {o.color} {o.shape} at {_at(o.centroid)}: IoU with a {o.shape} {o.shape_confidence:.2f}{runner}; "
                f"side {o.side} px for {o.size} ({SIZES[o.size]}), size fit {fit:.2f} → {s:.2f}"
            )
            scores.append(s)
            ious.append(o.shape_confidence)
            fits.append(fit)
        score = float(np.mean(scores))
        rationale = f"Objects: {'; '.join(notes)}. Fidelity = mean over {len(scores)} object(s) = {score:.2f}."
        return Judgement(score, rationale, {"iou": float(np.mean(ious)), "size_fit": float(np.mean(fits))}, self.name)


def _wanted_objects(sample: Sample) -> list[tuple[str, str, str | None]] | None:
    """(colour, shape, size or None) for each object the checker will look for: the prompt's
    objects for text to image, the target scene's for an edit; None when the spec is missing."""
    if sample.task == "t2i":
        prompt = _t2i_prompt(sample)
        if prompt is None:
            return None
        return [(o["color"], o["shape"], o.get("size")) for o in prompt.spec["objects"] for _ in range(o["count"])]
    if isinstance(sample.spec, EditTask):
        return [(o.color, o.shape, o.size) for o in sample.spec.target.objects]
    return None


class ShapesClarity(_ShapesJudge):
    """How far each wanted object sits from the strict checker's decision boundaries.

    The checker names a shape by its best template IoU and a size by the fitted side, so an
    object drawn between a circle and a square passes or fails on a pixel. This judge gives
    each wanted object (matched by colour to a drawn one) a lead: its wanted shape's IoU minus
    the best other shape's, and for a wanted size the fitted side's distance from the
    small/large boundary on the wanted side. A lead of ``shape_margin`` (``size_margin`` px)
    or more scores 1, a tie 0.5, the mirror image 0; an object's score is the product of the
    two, and the image's is the mean over the wanted objects (an unmatched one scores 0).
    Used beside the strict pass, it ranks images that the pass alone calls equal by how
    surely they would pass again (docs/training.md, "Round five")."""

    kind = "shapes_clarity"

    @dataclass
    class Config:
        #: IoU lead of the wanted shape over the runner-up that scores full marks
        shape_margin: float = 0.15
        #: pixels of fitted side beyond the small/large boundary that score full marks
        size_margin: float = 2.0

        def __post_init__(self) -> None:
            if not 0 < self.shape_margin <= 1:
                raise ValueError(f"shape_margin must be in (0, 1], got {self.shape_margin}")
            if self.size_margin <= 0:
                raise ValueError(f"size_margin must be positive, got {self.size_margin}")

    def object_clarity(self, want: tuple[str, str, str | None], o: ParsedObject) -> tuple[float, float, float]:
        """(score, shape lead, size lead in px; 0 when no size is wanted) of ``o`` as ``want``."""
        _, shape, size = want
        others = [v for k, v in o.shape_scores.items() if k != shape]
        lead = o.shape_scores.get(shape, 0.0) - (max(others) if others else 0.0)
        score = float(np.clip(0.5 + lead / (2 * self.options.shape_margin), 0.0, 1.0))
        size_lead = 0.0
        if size:
            boundary = LARGE_MIN_SIDE - 0.5
            size_lead = (o.side - boundary) if size == "large" else (boundary - o.side)
            score *= float(np.clip(0.5 + size_lead / (2 * self.options.size_margin), 0.0, 1.0))
        return score, lead, size_lead

    def judge_one(self, sample: Sample) -> Judgement:
        wanted = _wanted_objects(sample)
        if wanted is None:
            return self.not_applicable(sample, "needs the prompt's spec (a T2IPrompt or an EditTask)")
        parsed = parsed_scene(sample)
        if parsed is None:
            return self.unparseable(sample)
        if not wanted:
            return Judgement(1.0, "No object is wanted, so nothing can be ambiguous. Clarity 1.", {"shape": 1.0, "size": 1.0}, self.name)
        objs = parsed.objects
        # the drawn objects of each wanted one's colour are its candidates, even at clarity 0
        pairs = {(r, c): self.object_clarity(w, o) for r, w in enumerate(wanted) for c, o in enumerate(objs) if o.color == w[0]}
        table = np.zeros((len(wanted), len(objs)))
        for (r, c), (s, _, _) in pairs.items():
            table[r, c] = s + 1e-6
        scores, notes = [0.0] * len(wanted), [f"no {w[0]} object drawn for it" for w in wanted]
        shape_ok, size_ok = [], []
        if table.size:
            for r, c in zip(*linear_sum_assignment(-table)):
                if (r, c) not in pairs:
                    continue
                s, lead, size_lead = pairs[(r, c)]
                scores[r] = s
                shape_ok.append(lead > 0)
                size_ok.append(size_lead > 0 or not wanted[r][2])
                notes[r] = (f"{objs[c].color} object at {_at(objs[c].centroid)}, {wanted[r][1]} lead "
                            f"{lead:+.2f} IoU" + (f", side {objs[c].side} px ({size_lead:+.1f} px on the {wanted[r][2]} side)"
                                                   if wanted[r][2] else "") + f" → {s:.2f}")
        score = float(np.mean(scores))
        names = ", ".join(f"({k}) {describe(c, sh, sz)}: {n}" for k, ((c, sh, sz), n) in enumerate(zip(wanted, notes), 1))
        parts = {"shape": float(np.mean(shape_ok)) if shape_ok else 0.0, "size": float(np.mean(size_ok)) if size_ok else 0.0}
        return Judgement(score, f"Wanted objects: {names}. Clarity = mean over {len(wanted)} = {score:.2f}.", parts, self.name)


# ---------------------------------------------------------------------------------------
# Editing: what changed, what stayed
# ---------------------------------------------------------------------------------------


@dataclass
class EditAnalysis:
    """The soft counterpart of ``check_edit``: the change, then each preserved thing."""

    change_name: str
    change: float
    change_note: str
    kept: list[tuple[str, float, str]]  # (requirement, credit, note)
    extras: list[ParsedObject]
    pixels: float
    pixel_note: str


def _name(o: Obj, with_size: bool = True) -> str:
    return describe(o.color, o.shape, o.size if with_size else None)


def analyse_edit(task: EditTask, parsed: ParsedScene, source: np.ndarray, image: np.ndarray) -> EditAnalysis:
    src, tgt, fam = task.source, task.target, task.family
    led = Ledger(parsed)
    kept: list[tuple[str, float, str]] = []

    def keep(obj: Obj) -> None:
        expected = object_centroid(obj)
        i, d = led.closest(led.candidates(obj.color, obj.shape, obj.size), expected)
        req = f"the {_name(obj)} unchanged"
        if i is not None and d <= PRESERVE_TOLERANCE:
            led.claimed.add(i)
            kept.append((req, 1.0, f"met, {d:.1f} px from {_at(expected)}"))
        elif i is not None:
            led.claimed.add(i)
            c = 0.75 * max(0.0, 1.0 - (d - PRESERVE_TOLERANCE) / 6.0)
            kept.append((req, c, f"{_fmt_credit(c)}, moved {d:.1f} px"))
        else:
            # Something else stands where it stood: half credit, scaled by what it kept.
            j, dj = led.closest(led.candidates(), expected)
            if j is not None and dj <= 4.0:
                led.claimed.add(j)
                o = led.objects[j]
                same = [o.color == obj.color, o.shape == obj.shape, o.size == obj.size]
                c = 0.5 * sum(same) / 3
                kept.append((req, c, f"{_fmt_credit(c)}, a {o.size} {o.color} {o.shape} is there instead"))
            else:
                kept.append((req, 0.0, "not met, missing"))

    if fam == "add":
        for _, ti in task.preserved:
            keep(tgt.objects[ti])
    change_name, change, note = _change(task, led, parsed)
    if fam != "add":
        for _, ti in task.preserved:
            keep(tgt.objects[ti])
    if fam != "background":
        ok = parsed.background == src.background
        kept.append((f"background stays {src.background}", float(ok), "met" if ok else f"not met, now {parsed.background}"))
    extras = [o for i, o in enumerate(parsed.objects) if i not in led.claimed]
    pixels, pixel_note = _pixels_outside(task, source, image)
    return EditAnalysis(change_name, change, note, kept, extras, pixels, pixel_note)


def _change(task: EditTask, led: Ledger, parsed: ParsedScene) -> tuple[str, float, str]:
    src, tgt, fam, k = task.source, task.target, task.family, task.target_index
    if fam == "background":
        ok = parsed.background == tgt.background
        return f"a {tgt.background} background", float(ok), "met" if ok else f"not met, background is {parsed.background}"
    if fam in ("recolor", "replace", "resize"):
        before, after = src.objects[k], tgt.objects[k]
        what = {"recolor": after.color, "replace": f"a {after.shape}", "resize": after.size}[fam]
        name = f"the {_name(before, False)} is now {what}"
        expected = object_centroid(after)
        i, d = led.closest(led.candidates(after.color, after.shape, after.size), expected)
        if i is not None and d <= PLACE_TOLERANCE:
            led.claimed.add(i)
            return name, 1.0, f"met, a {_name(after)} at {_at(led.objects[i].centroid)}"
        if i is not None:
            led.claimed.add(i)
            c = 0.5 * max(0.0, 1.0 - (d - PLACE_TOLERANCE) / 8.0)
            return name, c, f"{_fmt_credit(c)}, a {_name(after)} appeared {d:.1f} px away"
        # The changed attribute is right but something else is off (shape, size).
        attr = {"recolor": {"color": after.color}, "replace": {"shape": after.shape}, "resize": {"size": after.size}}[fam]
        j, dj = led.closest(led.candidates(**attr), expected)
        if j is not None and dj <= 4.0:
            led.claimed.add(j)
            o = led.objects[j]
            return name, 0.5, f"partly met (0.50), a {o.size} {o.color} {o.shape} is there"
        j, dj = led.closest(led.candidates(before.color, before.shape, before.size), object_centroid(before))
        if j is not None and dj <= PRESERVE_TOLERANCE:
            led.claimed.add(j)
            return name, 0.0, f"not met, the {_name(before)} is unchanged"
        return name, 0.0, f"not met, no {_name(after)} near {_at(expected)}"
    if fam == "move":
        before, after = src.objects[k], tgt.objects[k]
        direction = task.instruction.split()[-1]
        name = f"the {_name(before, False)} moved {direction}"
        start, end = object_centroid(before), object_centroid(after)
        unit = np.sign([end[0] - start[0], end[1] - start[1]])
        i, _ = led.closest(led.candidates(before.color, before.shape, before.size), end)
        if i is None:
            return name, 0.0, "not met, it is missing"
        led.claimed.add(i)
        c = led.objects[i].centroid
        shift = np.array([c[0] - start[0], c[1] - start[1]])
        along = float(shift @ unit)
        across = float(abs(shift[0] * unit[1] - shift[1] * unit[0]))
        credit = min(1.0, max(0.0, along) / MOVE_MIN) * (1.0 if across <= MOVE_MAX_ACROSS else 0.5)
        return name, credit, f"{_fmt_credit(credit)}, {along:.1f} px {direction} (needs {MOVE_MIN:g}), {across:.1f} px sideways (at most {MOVE_MAX_ACROSS:g})"
    if fam == "add":
        new = tgt.objects[k]
        size = new.size if new.size in task.instruction.split() else None
        name = f"a {describe(new.color, new.shape, size)} added"
        i, _ = led.closest(led.candidates(new.color, new.shape, size), object_centroid(new))
        if i is not None:
            led.claimed.add(i)
            return name, 1.0, f"met, at {_at(led.objects[i].centroid)}"
        i, _ = led.closest(led.candidates(new.color, new.shape), object_centroid(new))
        if i is not None:
            led.claimed.add(i)
            return name, 0.5, f"partly met (0.50), it is {led.objects[i].size}"
        for attr in ({"color": new.color}, {"shape": new.shape}):
            i, _ = led.closest(led.candidates(**attr), object_centroid(new))
            if i is not None:
                led.claimed.add(i)
                o = led.objects[i]
                return name, 0.25, f"partly met (0.25), a {o.color} {o.shape} was added instead"
        return name, 0.0, "not met, nothing was added"
    if fam == "remove":
        kept_sources = {si for si, _ in task.preserved}
        gone = [o for si, o in enumerate(src.objects) if si not in kept_sources][0]
        name = f"the {_name(gone, False)} removed"
        left = led.candidates(gone.color, gone.shape)
        led.claimed.update(left)
        if left:
            return name, 0.0, f"not met, still at {_at(led.objects[left[0]].centroid)}"
        return name, 1.0, "met"
    raise ValueError(f"unknown edit family {fam!r}")


@lru_cache(maxsize=4096)
def _regions(task: EditTask) -> tuple[np.ndarray, np.ndarray]:
    """Pixels that must not change, split into the preserved objects' pixels and the rest
    (background), outside what the instruction may change dilated by 2 px. Memoised: the
    samples of a group share their task."""
    preserved = np.zeros((IMAGE_SIZE, IMAGE_SIZE), dtype=bool)
    for si, _ in task.preserved:
        preserved |= object_mask(task.source.objects[si])
    if task.family == "background":
        may_change = ~preserved  # the whole background
    else:
        k = task.target_index
        if task.family == "remove":
            kept_sources = {si for si, _ in task.preserved}
            changed = [o for si, o in enumerate(task.source.objects) if si not in kept_sources]
        elif task.family == "add":
            changed = [task.target.objects[k]]
        else:
            changed = [task.source.objects[k], task.target.objects[k]]
        may_change = np.zeros((IMAGE_SIZE, IMAGE_SIZE), dtype=bool)
        for o in changed:
            may_change |= _dilated_object_mask(o)
    objects, rest = preserved & ~may_change, ~preserved & ~may_change
    objects.flags.writeable = rest.flags.writeable = False
    return objects, rest


_DIAMOND2 = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3) if abs(dy) + abs(dx) <= 2]


def _dilate2(mask: np.ndarray) -> np.ndarray:
    """Binary dilation by 2 px (4-connected, twice): ``ndimage.binary_dilation(mask, iterations=2)``."""
    h, w = mask.shape
    padded = np.pad(mask, 2)
    out = np.zeros_like(mask)
    for dy, dx in _DIAMOND2:
        out |= padded[2 + dy : 2 + dy + h, 2 + dx : 2 + dx + w]
    return out


@lru_cache(maxsize=None)
def _dilated_template(shape: str, side: int) -> np.ndarray:
    return _dilate2(np.pad(shape_mask(shape, side), 2))


def _dilated_object_mask(obj: Obj) -> np.ndarray:
    """``_dilate2(object_mask(obj))``, from a dilated template placed on the canvas."""
    out = np.zeros((IMAGE_SIZE, IMAGE_SIZE), dtype=bool)
    t = _dilated_template(obj.shape, obj.side)
    x0, y0 = obj.x - 2, obj.y - 2
    cx0, cy0 = max(x0, 0), max(y0, 0)
    cx1, cy1 = min(x0 + t.shape[1], IMAGE_SIZE), min(y0 + t.shape[0], IMAGE_SIZE)
    if cx0 < cx1 and cy0 < cy1:
        out[cy0:cy1, cx0:cx1] = t[cy0 - y0 : cy1 - y0, cx0 - x0 : cx1 - x0]
    return out


def _pixels_outside(task: EditTask, source: np.ndarray, image: np.ndarray) -> tuple[float, str]:
    """Mean over (preserved objects' pixels, background pixels) of the share unchanged, so
    that a small object repainted counts as much as the large background."""
    same_px = np.abs(source.astype(np.int16) - image.astype(np.int16)).max(-1) <= PIXEL_CHANGE
    shares, notes = [], []
    for mask, what in zip(_regions(task), ("preserved-object", "background")):
        n = int(mask.sum())
        if n:
            same = int(same_px[mask].sum())
            shares.append(same / n)
            notes.append(f"{same} of {n} {what} pixels")
    if not shares:
        return 1.0, "no pixel outside the edited region"
    score = float(np.mean(shares))
    return score, f"{' and '.join(notes)} outside the edited region unchanged (within {PIXEL_CHANGE}/255)"


class _EditJudge(_ShapesJudge):
    tasks = ("edit",)

    def analysis(self, sample: Sample) -> EditAnalysis | Judgement:
        if sample.task != "edit":
            return self.not_applicable(sample, "scores editing samples")
        if not isinstance(sample.spec, EditTask):
            return self.not_applicable(sample, "needs the edit's spec (an EditTask)")
        parsed = parsed_scene(sample)
        if parsed is None or sample.source.shape != sample.image.shape:
            return self.unparseable(sample)
        if "edit_analysis" not in sample.memo:
            sample.memo["edit_analysis"] = analyse_edit(sample.spec, parsed, sample.source, sample.image)
        return sample.memo["edit_analysis"]


class ShapesInstruction(_EditJudge):
    kind = "shapes_instruction"

    def judge_one(self, sample: Sample) -> Judgement:
        a = self.analysis(sample)
        if isinstance(a, Judgement):
            return a
        parsed = parsed_scene(sample)
        rationale = (
            f"Instruction: \"{sample.prompt}\". Requirement: (1) {a.change_name}. Seen: {_seen(parsed)}. "
            f"(1) {a.change_note}. Instruction accuracy {a.change:.2f}."
        )
        return Judgement(a.change, rationale, {"change": a.change}, self.name)


class ShapesIdentity(_EditJudge):
    kind = "shapes_identity"

    @dataclass
    class Config:
        #: share of the score from unchanged pixels outside the edited region (the rest: objects, background, no extras)
        pixel_weight: float = 0.5

        def __post_init__(self) -> None:
            if not 0 <= self.pixel_weight <= 1:
                raise ValueError(f"pixel_weight must be in [0, 1], got {self.pixel_weight}")

    def judge_one(self, sample: Sample) -> Judgement:
        a = self.analysis(sample)
        if isinstance(a, Judgement):
            return a
        reqs = list(a.kept)
        extra_credit = 1.0 / (1 + len(a.extras))
        reqs.append(
            ("nothing added", extra_credit, "met" if not a.extras else "not met: " + "; ".join(_extra(o) for o in a.extras))
        )
        objects = float(np.mean([c for _, c, _ in reqs]))
        pw = self.options.pixel_weight
        score = (1 - pw) * objects + pw * a.pixels
        names = ", ".join(f"({i}) {r}" for i, (r, _, _) in enumerate(reqs, 1))
        notes = "; ".join(f"({i}) {n}" for i, (_, _, n) in enumerate(reqs, 1))
        rationale = (
            f"Must stay: {names}. Seen: {_seen(parsed_scene(sample))}. {notes}. "
            f"Objects and background {sum(c for _, c, _ in reqs):.2f}/{len(reqs)} = {objects:.2f}; "
            f"pixels: {a.pixel_note} = {a.pixels:.2f}. "
            f"Identity = {1 - pw:g}·{objects:.2f} + {pw:g}·{a.pixels:.2f} = {score:.2f}."
        )
        parts = {"objects": objects, "pixels": a.pixels, "extras": extra_credit}
        return Judgement(score, rationale, parts, self.name)


# ---------------------------------------------------------------------------------------
# The strict checker as a judge
# ---------------------------------------------------------------------------------------


class ShapesOracle(_ShapesJudge):
    kind = "shapes_oracle"

    def judge_one(self, sample: Sample) -> Judgement:
        parsed = parsed_scene(sample)
        if parsed is None:
            return self.unparseable(sample)
        if sample.task == "t2i":
            prompt = _t2i_prompt(sample)
            if prompt is None:
                return self.not_applicable(sample, "needs the prompt's spec (a T2IPrompt)")
            result = check_t2i(prompt, parsed)
        else:
            if not isinstance(sample.spec, EditTask):
                return self.not_applicable(sample, "needs the edit's spec (an EditTask)")
            result = check_edit(sample.spec, parsed)
        reqs = "; ".join(f"({i}) {d}: {'met' if m else 'not met'}" for i, (d, m) in enumerate(result.requirements, 1))
        verdict = "passes" if result.passed else "fails: " + "; ".join(result.reasons)
        rationale = f"Strict check: {reqs}. Seen: {_seen(parsed)}. The image {verdict}."
        return Judgement(1.0 if result.passed else 0.0, rationale, {"fraction_met": result.fraction_met}, self.name)
