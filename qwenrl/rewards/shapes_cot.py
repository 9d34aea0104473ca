"""The learned Shapes judge's chain of thought: what it is trained to write, and how to read it.

The programmatic judges explain themselves at length (every distance, IoU and partial
credit). A tiny vision-language judge has to write its reasoning token by token, inside a
reward call, so it is trained on a compact version that keeps the programmatic form and
what decides the verdict — the strict checker's requirements, what the image shows (the
parser's objects), and each requirement met or not — and drops the measurements:

    Requirements: (1) one red circle (2) one blue square (3) left of (4) nothing else.
    Seen: small red circle; large blue square; on white.
    (1) met (2) met (3) not met (4) met.
    Score: 7/10

* Requirements are the strict checker's, in its order (``qwenrl.world.check``): text to
  image — each object group, the relation, nothing else, the background when named;
  editing — each object that must stay, the change, the background kept (unless the edit is
  about it), nothing else.
* Seen lists the parser's objects of the (result) image in its order (top to bottom), each
  as ``size colour shape``; an object the checker cannot recognise (template IoU under 0.5)
  is a ``blob``; specks are not objects. Then the background.
* Where things are, by choice (``positions=True``): each object then ends with ``at X Y``, its
  centroid in whole pixels (column, row; 0-31), and an edit's answer has a ``Before:`` line, the
  source image read the same way, above the Seen line. The first judge was trained without them
  (its relation and move verdicts then have nothing in the chain of thought to come from, and
  position prompts were its worst family); with them "left of", "kept" and "moved left" are
  comparisons of numbers the answer has already written. ``read_answer`` reads both forms.

    Requirements: (1) small red circle kept (2) large blue square moved left (3) ...
    Before: small red circle at 8 7; large blue square at 22 20; on white.
    Seen: small red circle at 8 7; large blue square at 12 20; on white.
* Each requirement is ``met`` or ``not met``, as the strict checker decides.
* ``Score: 10/10`` exactly when the checker passes; otherwise the soft score, rounded to
  tenths and capped at 9: the alignment judge's for text to image, the mean of the
  instruction and identity judges' for editing. So pass/fail is "Score is 10", and the
  score still ranks the failures the way the partial-credit judges do.

``target_for`` writes the text for a sample; ``read_answer`` reads an answer back
(requirements, seen objects, verdicts, score); ``seen_agrees`` checks the seen objects
against the parser. Nothing here imports torch.
"""

from __future__ import annotations

import math
import re
from typing import Any
from dataclasses import dataclass, field
import numpy as np

from ..world.check import check_edit, check_t2i, recognisable
from ..world.grammar import NUMBERS, EditTask, T2IPrompt, describe, noun
from ..world.parse import ParsedScene
from ..world.scene import IMAGE_SIZE, Obj
from .base import Sample
from .vlm import parse_score

#: shape word for an object the checker cannot recognise
BLOB = "blob"


@dataclass(frozen=True)
class CotTarget:
    """What the judge should answer for one sample, and the facts it stands for."""

    text: str
    score10: int
    passed: bool
    soft: float
    verdicts: tuple[bool, ...]
    requirements: tuple[str, ...] = ()


# ---------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------


def _placed(o: Obj) -> str:
    """A source object by its size, colour and shape: ``small cyan triangle``."""
    return f"{o.size} {o.color} {o.shape}"


def t2i_requirements(prompt: T2IPrompt) -> list[str]:
    """Short names of the strict checker's text-to-image requirements, in its order."""
    spec = prompt.spec
    names = []
    for o in spec["objects"]:
        n = o["count"]
        names.append(" ".join(w for w in (NUMBERS[n - 1], o.get("size"), o["color"], noun(o["shape"], n)) if w))
    if spec.get("relation"):
        names.append(spec["relation"]["rel"])
    names.append("nothing else")
    if spec.get("background"):
        names.append(f"{spec['background']} background")
    return names


def edit_requirements(task: EditTask) -> list[str]:
    """Short names of the strict checker's editing requirements, in its order."""
    src, tgt, fam, k = task.source, task.target, task.family, task.target_index
    names = [f"{_placed(tgt.objects[ti])} kept" for _, ti in task.preserved]
    if fam == "background":
        names.append(f"{tgt.background} background")
    elif fam in ("recolor", "replace", "resize"):
        after = tgt.objects[k]
        what = {"recolor": after.color, "replace": after.shape, "resize": after.size}[fam]
        names.append(f"{_placed(src.objects[k])} now {what}")
    elif fam == "move":
        names.append(f"{_placed(src.objects[k])} moved {task.instruction.split()[-1]}")
    elif fam == "add":
        new = tgt.objects[k]
        size = new.size if new.size in task.instruction.split() else None
        names.append(f"{describe(new.color, new.shape, size)} added")
    elif fam == "remove":
        kept = {si for si, _ in task.preserved}
        names += [f"{_placed(o)} gone" for si, o in enumerate(src.objects) if si not in kept]
    else:
        raise ValueError(f"unknown edit family {fam!r}")
    if fam != "background":
        names.append("background kept")
    names.append("nothing else")
    return names


def _pixel(v: float) -> int:
    return min(IMAGE_SIZE - 1, max(0, int(math.floor(v + 0.5))))


def seen_text(parsed: ParsedScene, positions: bool = False) -> str:
    """The parser's objects and background: ``small red circle; on white`` (with ``positions``,
    ``small red circle at 12 20; on white``: the centroid's column and row in whole pixels)."""
    objs = []
    for o in parsed.objects:
        words = f"{o.size} {o.color} {o.shape if recognisable(o) else BLOB}"
        objs.append(f"{words} at {_pixel(o.centroid[0])} {_pixel(o.centroid[1])}" if positions else words)
    return "; ".join(objs + [f"on {parsed.background}"]) if objs else f"nothing on {parsed.background}"


def score10(passed: bool, soft: float) -> int:
    """10 for a pass; otherwise the soft score in tenths, rounded half up and capped at 9."""
    return 10 if passed else min(9, int(math.floor(10 * soft + 0.5)))


def answer_text(requirements: list[str], seen: str, verdicts: list[bool], score: int, before: str | None = None) -> str:
    req = " ".join(f"({i}) {n}" for i, n in enumerate(requirements, 1))
    checks = " ".join(f"({i}) {'met' if v else 'not met'}" for i, v in enumerate(verdicts, 1))
    before_line = f"Before: {before}.\n" if before is not None else ""
    return f"Requirements: {req}.\n{before_line}Seen: {seen}.\n{checks}.\nScore: {score}/10"


def soft_score(sample: Sample) -> float:
    """The partial-credit score the judge's failing scores follow: alignment (text to image),
    the mean of instruction and identity (editing)."""
    from .shapes import ShapesAlignment, ShapesIdentity, ShapesInstruction

    if sample.task == "t2i":
        judges = [ShapesAlignment()]
    else:
        judges = [ShapesInstruction(), ShapesIdentity()]
    scores = [j([sample])[0].score for j in judges]
    if any(s is None for s in scores):
        raise ValueError("the programmatic judges could not score this sample (not a Shapes-world image, or no spec)")
    return float(np.mean(scores))


def checked(spec: T2IPrompt | EditTask, scene: ParsedScene) -> tuple[Any, list[str]]:
    """The strict checker's result for ``spec`` on ``scene`` and the short names of its
    requirements, one for one (``t2i_requirements``, ``edit_requirements``)."""
    if isinstance(spec, T2IPrompt):
        result, names = check_t2i(spec, scene), t2i_requirements(spec)
    elif isinstance(spec, EditTask):
        result, names = check_edit(spec, scene), edit_requirements(spec)
    else:
        raise ValueError(f"the checker needs a Shapes T2IPrompt or EditTask, got {type(spec).__name__}")
    if len(names) != len(result.requirements):  # the names must follow the checker one for one
        raise AssertionError(f"{len(names)} names for {len(result.requirements)} requirements: {names} / {result.requirements}")
    return result, names


def target_for(sample: Sample, positions: bool = False) -> CotTarget:
    """The answer the learned judge is trained to give for ``sample`` (a Shapes sample with its
    spec: a ``T2IPrompt`` or an ``EditTask``); with ``positions``, objects carry their centroids
    and an edit's answer reads the source image first (the ``Before:`` line)."""
    from ..world.parse import parse
    from .shapes import parsed_scene

    parsed = parsed_scene(sample)
    if parsed is None:
        raise ValueError(f"not a Shapes-world image (shape {sample.image.shape})")
    if sample.task == "t2i" and not isinstance(sample.spec, T2IPrompt):
        raise ValueError("a text-to-image target needs the prompt's T2IPrompt spec")
    if sample.task == "edit" and not isinstance(sample.spec, EditTask):
        raise ValueError("an editing target needs the EditTask spec")
    result, names = checked(sample.spec, parsed)
    verdicts = [bool(met) for _, met in result.requirements]
    before = None
    if positions and sample.task == "edit":
        if sample.source is None:
            raise ValueError("an editing target with positions needs the source image")
        before = seen_text(parse(sample.source), positions=True)
    soft = soft_score(sample)
    s10 = score10(result.passed, soft)
    return CotTarget(answer_text(names, seen_text(parsed, positions), verdicts, s10, before), s10, result.passed, soft,
                     tuple(verdicts), tuple(names))


# ---------------------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------------------

_REQ_RE = re.compile(r"Requirements:\s*(?P<body>.*?)\.\s*\n\s*(?:Before|Seen):", re.S)
_SEEN_RE = re.compile(r"Seen:\s*(?P<body>.*?)\.\s*\n", re.S)
_BEFORE_RE = re.compile(r"Before:\s*(?P<body>.*?)\.\s*\n", re.S)
_VERDICT_RE = re.compile(r"\((?P<n>\d+)\)\s*(?P<v>not met|met)\b")
_NUMBERED_RE = re.compile(r"\((\d+)\)\s*")
_OBJ_RE = re.compile(r"^(?P<size>\w+) (?P<color>\w+) (?P<shape>\w+)(?: at (?P<x>\d+) (?P<y>\d+))?$")


@dataclass
class CotReading:
    """What an answer says; a part that could not be read is None and ``problems`` says why."""

    requirements: list[str] | None = None
    seen: list[tuple[str, str, str]] | None = None  # (size, colour, shape)
    background: str | None = None
    seen_at: list[tuple[int, int] | None] | None = None  # each seen object's "at X Y", None where not written
    before: list[tuple[str, str, str]] | None = None  # an edit's Before line (answers with positions)
    before_at: list[tuple[int, int] | None] | None = None
    verdicts: list[bool] | None = None
    score: float | None = None  # in [0, 1]
    problems: list[str] = field(default_factory=list)

    @property
    def passes(self) -> bool | None:
        """The judge's verdict: a score of 10/10 passes (None when there is no score)."""
        return None if self.score is None else self.score >= 0.95

    @property
    def consistent(self) -> bool | None:
        """Whether the score follows the verdicts (10/10 exactly when every requirement is met)."""
        if self.score is None or not self.verdicts:
            return None
        return self.passes == all(self.verdicts)


def _read_scene(body: str, part: str, problems: list[str]):
    """A Seen or Before line's objects, their positions (None where an object has none) and the
    background; what cannot be read goes to ``problems``."""
    items = [it.strip() for it in body.strip().split(";")]
    objects: list[tuple[str, str, str]] = []
    at: list[tuple[int, int] | None] = []
    if len(items) == 1 and items[0].startswith("nothing on "):
        return objects, at, items[0][len("nothing on "):]
    background = None
    if items and items[-1].startswith("on "):
        background = items.pop()[3:]
    else:
        problems.append(f"{part}: no background")
    for it in items:
        om = _OBJ_RE.match(it)
        if om is None:
            problems.append(f"{part}: cannot read {it!r}")
            continue
        objects.append((om["size"], om["color"], om["shape"]))
        at.append((int(om["x"]), int(om["y"])) if om["x"] is not None else None)
    return objects, at, background


def read_answer(text: str) -> CotReading:
    """Read a judge answer in the format above; never raises on a malformed answer."""
    r = CotReading()
    r.score, why = parse_score(text, "cot")
    if r.score is None:
        r.problems.append(f"score: {why}")
    m = _REQ_RE.search(text)
    if m:
        parts = _NUMBERED_RE.split(m.group("body"))
        # split gives ['', '1', 'name ', '2', 'name ', ...]
        r.requirements = [p.strip() for p in parts[2::2]]
    else:
        r.problems.append("no 'Requirements: ... Seen:' part")
    m = _SEEN_RE.search(text)
    if m:
        r.seen, r.seen_at, r.background = _read_scene(m.group("body"), "seen", r.problems)
    else:
        r.problems.append("no 'Seen:' part")
    b = _BEFORE_RE.search(text)
    if b:
        r.before, r.before_at, _ = _read_scene(b.group("body"), "before", r.problems)
    after_seen = text[m.end():] if m else text
    verdicts = {int(v["n"]): v["v"] == "met" for v in _VERDICT_RE.finditer(after_seen)}
    if verdicts and sorted(verdicts) == list(range(1, len(verdicts) + 1)):
        r.verdicts = [verdicts[i] for i in range(1, len(verdicts) + 1)]
    else:
        r.problems.append("verdicts: not numbered (1) to (n)")
    return r


def seen_agrees(reading: CotReading, parsed: ParsedScene) -> bool:
    """True when the answer's Seen part states what the parser finds: the same background and
    the same objects (size, colour, shape or blob), in any order."""
    if reading.seen is None or reading.background != parsed.background:
        return False
    facts = sorted((o.size, o.color, o.shape if recognisable(o) else BLOB) for o in parsed.objects)
    return facts == sorted(reading.seen)


def positions_agree(reading: CotReading, parsed: ParsedScene, tolerance: int = 1) -> bool | None:
    """Whether every object of the answer's Seen line sits within ``tolerance`` pixels (each axis)
    of the parser's object of the same size, colour and shape; None when the answer writes no
    positions or names other objects than the parser finds (``seen_agrees`` counts those)."""
    if not seen_agrees(reading, parsed) or not reading.seen_at or any(xy is None for xy in reading.seen_at):
        return None
    said = sorted(zip(reading.seen, reading.seen_at))
    found = sorted(((o.size, o.color, o.shape if recognisable(o) else BLOB), (_pixel(o.centroid[0]), _pixel(o.centroid[1])))
                   for o in parsed.objects)
    return all(a[0] == b[0] and abs(a[1][0] - b[1][0]) <= tolerance and abs(a[1][1] - b[1][1]) <= tolerance
               for a, b in zip(said, found))


def scene_of_reading(reading: CotReading) -> ParsedScene | None:
    """What the answer says it saw, as a parsed scene the checker can judge: its Seen objects at
    the positions it wrote, on its background (None without positions or a readable Seen line).
    Judging this scene gives the verdicts the answer *should* have written from its own reading,
    which separates the judge's reading errors from its reasoning errors (``benchmarks/judge.py``)."""
    from ..world.parse import ParsedObject

    if reading.seen is None or reading.background is None or any(xy is None for xy in reading.seen_at or []):
        return None
    objects = []
    for (size, color, shape), (x, y) in zip(reading.seen, reading.seen_at):
        blob = shape == BLOB
        objects.append(ParsedObject(shape=shape, color=color, size=size, centroid=(float(x), float(y)), bbox=(x, y, x + 1, y + 1),
                                    area=1, mask=np.zeros((IMAGE_SIZE, IMAGE_SIZE), bool), side=0, color_distance=0.0, purity=1.0,
                                    fill_ratio=1.0, shape_confidence=0.0 if blob else 1.0))
    return ParsedScene(background=reading.background, objects=tuple(objects), speck_count=0, speck_area=0, unknown_fraction=0.0,
                       border_agreement=1.0, labels=np.zeros((IMAGE_SIZE, IMAGE_SIZE), np.int8))


@dataclass(frozen=True)
class RuleVerdicts:
    """The strict checker's verdicts on the scene an answer says it saw (``rule_verdicts``)."""

    requirements: tuple[str, ...]
    verdicts: tuple[bool, ...]

    @property
    def passed(self) -> bool:
        return all(self.verdicts)

    @property
    def fraction_met(self) -> float:
        return sum(self.verdicts) / len(self.verdicts)


def has_shapes_spec(sample: Sample) -> bool:
    """Whether the sample carries a Shapes-world structured prompt the rules can judge against."""
    return isinstance(sample.spec, (T2IPrompt, EditTask))


def rule_verdicts(reading: CotReading, spec: T2IPrompt | EditTask) -> RuleVerdicts | None:
    """The world's rules applied to the answer's own reading: the strict checker, requirement by
    requirement, on ``scene_of_reading`` for the sample's structured prompt (an edit's source is the
    task's source scene, as for the checker). None when the answer has no readable Seen line with
    positions. This turns the learned judge into a reader whose verdicts cannot contradict what it
    read (the verdicts a small decoder writes itself followed its own reading 65% of the time on text
    to image; docs/rewards.md, "A judge that reads, and rules that decide")."""
    scene = scene_of_reading(reading)
    if scene is None:
        return None
    result, names = checked(spec, scene)
    return RuleVerdicts(tuple(names), tuple(bool(met) for _, met in result.requirements))


def corpus_words() -> list[str]:
    """Every word, number and mark the judge's answers can contain (for its tokenizer)."""
    from ..world.grammar import DIRECTIONS, VOCAB
    from ..world.scene import PALETTE_NAMES, SHAPES, SIZES

    words = set(VOCAB) | set(PALETTE_NAMES) | set(SHAPES) | set(SIZES) | set(DIRECTIONS) | {BLOB}
    words |= {"Requirements", "Seen", "Score", "met", "not", "nothing", "else", "kept", "now", "moved", "added",
              "gone", "on", "background", "A", "B", "Better", "tie", "at", "Before"}
    return sorted(words)

