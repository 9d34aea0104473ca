"""Pairwise judging: two images, one prompt or instruction, one verdict, and the group
win-rate reward built on it.

The learned Shapes judge (``data/models/shapes-judge``) answers a pair rubric
(``rubrics/pair_t2i.txt``, ``rubrics/pair_edit.txt`` in its folder) with a short comparison,
then the winner:

    Requirements: (1) one red circle (2) one blue square (3) left of (4) nothing else.
    A: Seen: small red circle; large blue square; on white. (1) met (2) met (3) not met (4) met.
    B: Seen: small red circle; large blue square; on white. (1) met (2) met (3) met (4) met.
    Better: B

For text to image the images are A, then B; for editing the source, then A, then B. The
requirements are the strict checker's (as in ``shapes_cot``); each side's line says what the
image shows (the parser's objects, as the pointwise answer's Seen line) and then the checker's
verdicts, requirement by requirement — without the Seen part a first version wrote the same
verdicts for both images (it picked the passing image in 9% of the pairs where exactly one
passes): a tiny judge has to read each image before it can compare them. The winner follows
from the verdicts
(``pair_winner``): an image that passes beats one that fails; between two that both pass or
both fail, the one with more requirements met wins; the same count is a ``tie``.

``read_pairwise`` is strict, as ``parse_score`` is for scores: exactly one ``Better:`` line,
the last one, reading ``A``, ``B`` or ``tie``; anything else is refused (winner None, with
the reason), never guessed.

``PairwiseLocalJudge.compare`` runs the judge on pairs (batched, greedy, through the same
transformers path as ``vlm_local``). ``PairwiseWinRate`` (judge kind ``pairwise_winrate``)
turns it into a group-relative reward for GRPO: the samples of one prompt (and, for editing,
one source image) form a group, and each sample's score is its win rate against the others
(a win 1, a tie ½), over at most ``max_pairs`` pairs per group. Pairwise rewards of this kind
avoid normalising tiny pointwise gaps into large advantages (Pref-GRPO, 2025).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .base import Judge, Judgement, RewardConfigError, Sample, image_hash

WINNERS = ("A", "B", "tie")
#: the pair rubric of each task, by name, in the judge's rubric folder
PAIR_RUBRICS = {"t2i": "pair_t2i", "edit": "pair_edit"}

_BETTER_RE = re.compile(r"^\s*Better\s*:\s*(?P<w>\S+)\s*$", re.M)
_SIDE_RE = re.compile(r"^\s*(?P<side>[AB])\s*:\s*(?P<body>.*)$", re.M)
_VERDICT_RE = re.compile(r"\((?P<n>\d+)\)\s*(?P<v>not met|met)\b")


# ---------------------------------------------------------------------------------------
# The answer: writing and reading
# ---------------------------------------------------------------------------------------


def pair_winner(verdicts_a: tuple[bool, ...] | list[bool], verdicts_b: tuple[bool, ...] | list[bool]) -> str:
    """``A``, ``B`` or ``tie`` from two images' requirement verdicts: a pass (every requirement
    met) beats a fail; otherwise more requirements met wins; the same count ties."""
    pass_a, pass_b = all(verdicts_a), all(verdicts_b)
    if pass_a != pass_b:
        return "A" if pass_a else "B"
    met_a, met_b = sum(map(bool, verdicts_a)), sum(map(bool, verdicts_b))
    return "A" if met_a > met_b else "B" if met_b > met_a else "tie"


def probability_winner(p_a: float, p_b: float, verdicts_a: tuple[bool, ...] | list[bool],
                       verdicts_b: tuple[bool, ...] | list[bool], margin: float = 0.0) -> str:
    """The image whose reading is likelier to pass (``P(pass)``, ``reader.pass_probability``)
    when the two differ by more than ``margin``; otherwise ``pair_winner`` on the greedy readings'
    verdicts. Between two images that both read as passes, the one read with more confidence
    wins: the other is most often a close call (docs/rewards.md)."""
    if abs(p_a - p_b) > margin:
        return "A" if p_a > p_b else "B"
    return pair_winner(verdicts_a, verdicts_b)


def _verdict_list(verdicts: tuple[bool, ...] | list[bool]) -> str:
    return " ".join(f"({i}) {'met' if v else 'not met'}" for i, v in enumerate(verdicts, 1))


def pair_answer_text(requirements: list[str] | tuple[str, ...], verdicts_a: tuple[bool, ...] | list[bool],
                     verdicts_b: tuple[bool, ...] | list[bool], seen_a: str | None = None, seen_b: str | None = None,
                     pass_probabilities: tuple[float, float] | None = None, margin: float = 0.0) -> str:
    """The answer the judge is trained to give for a pair (see the module docstring); ``seen_a``
    and ``seen_b`` (what each image shows, ``shapes_cot.seen_text``) open each side's line. With
    ``pass_probabilities`` (each side's ``P(pass)``) a line gives them and the winner is
    ``probability_winner``'s at ``margin``."""
    if not (len(requirements) == len(verdicts_a) == len(verdicts_b)):
        raise ValueError(f"{len(requirements)} requirements, {len(verdicts_a)} and {len(verdicts_b)} verdicts")
    req = " ".join(f"({i}) {n}" for i, n in enumerate(requirements, 1))
    side_a = f"Seen: {seen_a}. " if seen_a else ""
    side_b = f"Seen: {seen_b}. " if seen_b else ""
    text = f"Requirements: {req}.\nA: {side_a}{_verdict_list(verdicts_a)}.\nB: {side_b}{_verdict_list(verdicts_b)}.\n"
    if pass_probabilities is None:
        return text + f"Better: {pair_winner(verdicts_a, verdicts_b)}"
    p_a, p_b = pass_probabilities
    return (text + f"Pass probability: A {p_a:.3f}, B {p_b:.3f}.\n"
            f"Better: {probability_winner(p_a, p_b, verdicts_a, verdicts_b, margin)}")


@dataclass(frozen=True)
class PairTarget:
    text: str
    winner: str
    passed: tuple[bool, bool]


def pair_target(a: Sample, b: Sample, positions: bool = False) -> PairTarget:
    """The answer for two Shapes samples of the same prompt or edit (each with its spec),
    written from the strict checker's verdicts (Seen lines with positions when ``positions``)."""
    from .shapes_cot import target_for

    if a.prompt != b.prompt or a.task != b.task:
        raise ValueError("a pair is two samples of the same task and prompt")
    ta, tb = target_for(a, positions), target_for(b, positions)
    if ta.requirements != tb.requirements:
        raise ValueError(f"the two samples have different requirements: {ta.requirements} / {tb.requirements}")
    seen_a, seen_b = (next(ln for ln in t.text.splitlines() if ln.startswith("Seen: "))[6:].rstrip(".") for t in (ta, tb))
    return PairTarget(pair_answer_text(ta.requirements, ta.verdicts, tb.verdicts, seen_a, seen_b),
                      pair_winner(ta.verdicts, tb.verdicts), (ta.passed, tb.passed))


@dataclass
class PairReading:
    """What a pairwise answer says: the winner (None when refused, ``problems`` say why) and,
    when readable, each side's verdicts."""

    winner: str | None = None
    verdicts_a: list[bool] | None = None
    verdicts_b: list[bool] | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def consistent(self) -> bool | None:
        """Whether the winner follows the verdicts by ``pair_winner`` (None when unreadable)."""
        if self.winner is None or self.verdicts_a is None or self.verdicts_b is None:
            return None
        if len(self.verdicts_a) != len(self.verdicts_b):
            return False
        return pair_winner(self.verdicts_a, self.verdicts_b) == self.winner


def read_pairwise(text: str) -> PairReading:
    """Read a pairwise answer; a malformed one gets winner None and the reason (never raises)."""
    r = PairReading()
    found = list(_BETTER_RE.finditer(text))
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    if not found:
        r.problems.append("no 'Better: A|B|tie' line")
    elif len(found) > 1:
        r.problems.append(f"{len(found)} 'Better:' lines; exactly one is read")
    elif not lines or _BETTER_RE.match(lines[-1]) is None:
        r.problems.append("text after the 'Better:' line")
    else:
        w = found[0]["w"]
        w = "tie" if w.lower() == "tie" else w
        if w in WINNERS:
            r.winner = w
        else:
            r.problems.append(f"'Better: {w}' is not A, B or tie")
    for m in _SIDE_RE.finditer(text):
        verdicts = {int(v["n"]): v["v"] == "met" for v in _VERDICT_RE.finditer(m["body"])}
        if verdicts and sorted(verdicts) == list(range(1, len(verdicts) + 1)):
            setattr(r, f"verdicts_{m['side'].lower()}", [verdicts[i] for i in range(1, len(verdicts) + 1)])
    return r


@dataclass
class PairVerdict:
    """One comparison: ``winner`` A, B, tie or None (the answer could not be read), the raw
    answer as the rationale."""

    winner: str | None
    rationale: str
    judge: str

    def to_dict(self) -> dict[str, Any]:
        return {"winner": self.winner, "rationale": self.rationale, "judge": self.judge}


def pair_images(a: Sample, b: Sample) -> list[np.ndarray]:
    """What the judge sees: A and B; for editing the source first."""
    if a.task != b.task:
        raise ValueError(f"a pair is two samples of one task, got {a.task} and {b.task}")
    if a.prompt != b.prompt:
        raise ValueError(f"a pair is two samples of one prompt, got {a.prompt!r} and {b.prompt!r}")
    if a.task == "edit":
        if not np.array_equal(a.source, b.source):
            raise ValueError("an editing pair is two results of one source image")
        return [a.source, a.image, b.image]
    return [a.image, b.image]


# ---------------------------------------------------------------------------------------
# The local judge
# ---------------------------------------------------------------------------------------


def load_pair_rubric(folder: str | Path, task: str) -> Any:
    """The pair rubric of ``task`` in a judge's rubric folder (``pair_<task>.txt`` with
    ``format_pairwise.txt``)."""
    from .vlm import Rubric

    folder = Path(folder)
    path, fmt = folder / f"{PAIR_RUBRICS[task]}.txt", folder / "format_pairwise.txt"
    if not path.is_file() or not fmt.is_file():
        raise RewardConfigError(
            f"{folder} has no pairwise rubric ({path.name} and {fmt.name}): this judge was trained before the "
            "pairwise mode; retrain it with training/judge.py (pair_examples > 0)")
    return Rubric(path=path, text=path.read_text(), format_text=fmt.read_text())


#: how the local judge compares: ``composed`` — each image judged alone with the pointwise
#: rubric, the comparison written from the two chains of thought; ``trained`` — both images in
#: one prompt with the pair rubric, the judge writing the comparison itself
PAIR_MODES = ("composed", "trained")
#: where a composed comparison's verdicts come from: ``answer`` — the verdicts each pointwise
#: answer writes; ``rules`` — the strict checker's rules on the scene each answer says it saw
#: (``shapes_cot.rule_verdicts``; a judge that writes positions, and samples with a Shapes spec)
PAIR_VERDICTS = ("answer", "rules")


class PairwiseLocalJudge:
    """The learned judge (a local transformers model folder) asked to compare pairs.

    ``mode="trained"`` sends both images with the pair rubric and reads the judge's own
    comparison. ``mode="composed"`` (the default) asks the judge about each image alone, with the
    pointwise rubric it reads best, and writes the comparison from the two answers: the
    requirements, each side's Seen line and verdicts, and the winner by ``pair_winner`` — the
    same text ``pair_target`` trains. Each distinct image is judged once per call, so a group's
    win rates cost one pointwise answer per sample. Why it is the default: the bundled judge,
    trained on pairs too, wrote the same verdicts for A and B (docs/rewards.md, "A judge that
    compares"). With ``verdicts="rules"`` the composed comparison takes each side's verdicts from
    the rules applied to that side's reading instead of from the answer (``reader.py``), and with
    ``probability_margin`` (a number) the image likelier to pass by more than that margin wins
    (``probability_winner``: each side's ``P(pass)`` over the readings it nearly wrote, summed over
    ``probability_words``)."""

    def __init__(self, model_path: str | Path, rubric_dir: str | Path | None = None, batch_size: int = 32,
                 max_new_tokens: int = 160, device: str = "auto", dtype: str = "float32", name: str = "learned",
                 mode: str = "composed", verdicts: str = "answer", probability_margin: float | None = None,
                 probability_words: tuple[str, ...] = ("shape",), probability_min: float = 0.02, max_readings: int = 128) -> None:
        from .reader import check_probability_options
        from .vlm import VLMLocalJudge, load_rubric

        if mode not in PAIR_MODES:
            raise RewardConfigError(f"mode must be one of {PAIR_MODES}, got {mode!r}")
        if verdicts not in PAIR_VERDICTS:
            raise RewardConfigError(f"verdicts must be one of {PAIR_VERDICTS}, got {verdicts!r}")
        if verdicts == "rules" and mode != "composed":
            raise RewardConfigError("verdicts: rules needs mode: composed (the rules judge each image's own reading)")
        if probability_margin is not None:
            if verdicts != "rules":
                raise RewardConfigError("probability_margin needs verdicts: rules (the pass probability is the rules' over its readings)")
            if not 0.0 <= probability_margin < 1.0:
                raise RewardConfigError(f"probability_margin must be in [0, 1) or null, got {probability_margin}")
            try:
                check_probability_options(probability_words, probability_min, max_readings)
            except ValueError as exc:
                raise RewardConfigError(str(exc)) from exc
            if not probability_words:
                raise RewardConfigError("probability_words must name at least one word group, e.g. [shape]")
        self.verdicts = verdicts
        self.probability_margin = probability_margin
        self.probability = (tuple(probability_words), float(probability_min), int(max_readings))
        path = Path(model_path)
        folder = Path(rubric_dir) if rubric_dir else path / "rubrics"
        self.name, self.mode = name, mode
        self.batch_size = int(batch_size)
        if self.batch_size < 1:
            raise RewardConfigError(f"batch_size must be at least 1, got {batch_size}")
        self.max_new_tokens = int(max_new_tokens)
        # The pointwise judge of the same folder loads the model and checks the folder.
        self._local = VLMLocalJudge(name, {"model_path": str(path), "rubric": "t2i", "rubric_dir": str(folder), "mode": "cot",
                                           "device": device, "dtype": dtype, "batch_size": self.batch_size})
        self.rubrics = {task: load_pair_rubric(folder, task) for task in PAIR_RUBRICS}
        self.pointwise = {task: load_rubric(task, str(folder), "cot") for task in PAIR_RUBRICS} if mode == "composed" else {}
        self.metrics = {"pairs": 0, "unparsed": 0}

    def compare(self, pairs: list[tuple[Sample, Sample]]) -> list[PairVerdict]:
        """One verdict per (A, B) pair, in order."""
        from .shapes_cot import has_shapes_spec

        for a, b in pairs:
            pair_images(a, b)  # one task, one prompt, one source: refused before any model call
            if self.verdicts == "rules" and not all(has_shapes_spec(s) for s in (a, b)):
                raise ValueError("verdicts: rules needs samples with a Shapes-world spec (a T2IPrompt or an EditTask)")
        self._local.load()
        answers = self._composed(pairs) if self.mode == "composed" else self._trained(pairs)
        out: list[PairVerdict] = []
        for answer in answers:
            reading = read_pairwise(answer)
            self.metrics["pairs"] += 1
            if reading.winner is None:
                self.metrics["unparsed"] += 1
                out.append(PairVerdict(None, f"{self.name}: no verdict ({'; '.join(reading.problems)}). Raw answer:\n{answer}",
                                       self.name))
            else:
                out.append(PairVerdict(reading.winner, answer.strip(), self.name))
        return out

    def _generate(self, requests: list[tuple[list[np.ndarray], str]], max_new_tokens: int) -> list[str]:
        from .vlm import generate_token_ids

        answers: list[str] = []
        for i in range(0, len(requests), self.batch_size):
            ids = generate_token_ids(self._local._model, self._local._processor, requests[i:i + self.batch_size], max_new_tokens)
            answers += self._local.decode(ids)
        return answers

    def _answers(self, requests: list[tuple[list[np.ndarray], str]], specs: list[Any]) -> tuple[list[str], list[float] | None]:
        """The pointwise answers to ``requests``; with ``probability_margin``, each one's
        ``P(pass)`` by the rules for its spec too (0 for an answer the rules cannot read)."""
        max_new = max(self.max_new_tokens, 112)
        if self.probability_margin is None:
            return self._generate(requests, max_new), None
        from .reader import answers_with_word_probs, reading_pass_probability

        words, min_p, max_readings = self.probability
        local = self._local
        texts: list[str] = []
        p_pass: list[float] = []

        def decode(new: list[int]) -> str:
            return local._processor.batch_decode([new], skip_special_tokens=True)[0]

        for i in range(0, len(requests), self.batch_size):
            rows, groups = answers_with_word_probs(local._model, local._processor, requests[i:i + self.batch_size], max_new, words)
            for (ids, pieces, probs), spec in zip(rows, specs[i:i + self.batch_size]):
                texts.append(decode(ids))
                p = reading_pass_probability(ids, pieces, probs, groups, spec, decode, min_p, max_readings)
                p_pass.append(0.0 if p is None else p)
        return texts, p_pass

    def _trained(self, pairs: list[tuple[Sample, Sample]]) -> list[str]:
        return self._generate([(pair_images(a, b), self.rubrics[a.task].render(a)) for a, b in pairs], self.max_new_tokens)

    def _composed(self, pairs: list[tuple[Sample, Sample]]) -> list[str]:
        from .shapes_cot import read_answer, rule_verdicts

        def key(s: Sample) -> str:
            return f"{s.task}\0{s.prompt}\0{image_hash(s.image)}\0{image_hash(s.source) if s.source is not None else ''}"

        index: dict[str, int] = {}
        requests = []
        specs = []  # per request, its sample's spec (for the pass probability)
        slots = []  # per pair, the request index of A and of B
        for pair in pairs:
            for s in pair:
                k = key(s)
                if k not in index:
                    index[k] = len(requests)
                    requests.append(([s.source, s.image] if s.task == "edit" else [s.image], self.pointwise[s.task].render(s)))
                    specs.append(s.spec)
                slots.append(index[k])
        texts, p_pass = self._answers(requests, specs)
        said = [read_answer(a) for a in texts]
        answers = []
        for n, (a, b) in enumerate(pairs):
            ra, rb = said[slots[2 * n]], said[slots[2 * n + 1]]
            if self.verdicts == "rules":
                rules_a, rules_b = rule_verdicts(ra, a.spec), rule_verdicts(rb, b.spec)
                if rules_a is None or rules_b is None:
                    answers.append(f"A: {_answer_line(ra)}\nB: {_answer_line(rb)}\n(no reading with positions to apply the rules to)")
                    continue
                probs = None if p_pass is None else (p_pass[slots[2 * n]], p_pass[slots[2 * n + 1]])
                answers.append(pair_answer_text(rules_a.requirements, rules_a.verdicts, rules_b.verdicts, _seen_of(ra), _seen_of(rb),
                                                probs, self.probability_margin or 0.0))
                continue
            readable = all(r.requirements and r.verdicts and r.seen is not None and r.background for r in (ra, rb))
            if not readable or not len(ra.requirements) == len(ra.verdicts) == len(rb.verdicts):
                answers.append(f"A: {_answer_line(ra)}\nB: {_answer_line(rb)}\n(the two answers cannot be compared)")
                continue
            answers.append(pair_answer_text(ra.requirements, ra.verdicts, rb.verdicts, _seen_of(ra), _seen_of(rb)))
        return answers


def _seen_of(reading: Any) -> str:
    """A reading's Seen part written back (``shapes_cot.seen_text``'s form)."""
    at = reading.seen_at or [None] * len(reading.seen)
    objs = [" ".join(o) + (f" at {xy[0]} {xy[1]}" if xy else "") for o, xy in zip(reading.seen, at)]
    return "; ".join(objs + [f"on {reading.background}"]) if objs else f"nothing on {reading.background}"


def _answer_line(reading: Any) -> str:
    return "; ".join(reading.problems) or "requirements or verdicts that do not line up"


# ---------------------------------------------------------------------------------------
# The group win-rate reward
# ---------------------------------------------------------------------------------------


def group_key(sample: Sample) -> str:
    """Samples of one group: same task and prompt, and for editing the same source image."""
    source = image_hash(sample.source) if sample.source is not None else ""
    return hashlib.sha256(f"{sample.task}\0{sample.prompt}\0{source}".encode()).hexdigest()[:16]


def choose_pairs(n: int, max_pairs: int, seed: int) -> list[tuple[int, int]]:
    """Unordered pairs of ``n`` samples: all of them when there are at most ``max_pairs``, else
    ``max_pairs`` drawn so that every sample is in about the same number of pairs (a seeded
    round-robin over shuffled orders)."""
    everything = list(combinations(range(n), 2))
    if len(everything) <= max_pairs:
        return everything
    rng = np.random.default_rng(seed)
    chosen: list[tuple[int, int]] = []
    seen: set[tuple[int, int]] = set()
    while len(chosen) < max_pairs:
        order = rng.permutation(n)
        for k in range(n):
            i, j = sorted((int(order[k]), int(order[(k + 1) % n])))
            if i != j and (i, j) not in seen:
                seen.add((i, j))
                chosen.append((i, j))
                if len(chosen) == max_pairs:
                    break
    return chosen


def win_rates(samples: list[Sample], compare: Callable[[list[tuple[Sample, Sample]]], list[PairVerdict]],
              max_pairs: int, both_orders: bool = True, seed: int = 0) -> list[tuple[float | None, int, list[str]]]:
    """(win rate, comparisons counted, rationales) per sample, within its group (``group_key``).

    Two samples with the same image tie without asking the judge. With ``both_orders`` each pair
    is judged as (A, B) and as (B, A), so a judge's preference for a side cancels, and identical
    samples of a group get equal rates. Unreadable verdicts are left out; a sample with no counted
    comparison (alone in its group, or all unreadable) gets None."""
    groups: dict[str, list[int]] = {}
    for k, s in enumerate(samples):
        groups.setdefault(group_key(s), []).append(k)
    hashes = [image_hash(s.image) for s in samples]
    wins = np.zeros(len(samples))
    counted = np.zeros(len(samples), dtype=np.int64)
    notes: list[list[str]] = [[] for _ in samples]
    asks: list[tuple[int, int]] = []
    for key, members in groups.items():
        for i, j in choose_pairs(len(members), max_pairs, seed + int(key[:8], 16)):
            a, b = members[i], members[j]
            if hashes[a] == hashes[b]:
                wins[a] += 0.5
                wins[b] += 0.5
                counted[a] += 1
                counted[b] += 1
                continue
            asks.append((a, b))
            if both_orders:
                asks.append((b, a))
    verdicts = compare([(samples[a], samples[b]) for a, b in asks]) if asks else []
    for (a, b), v in zip(asks, verdicts):
        if v.winner is None:
            notes[a].append(f"vs #{b}: unreadable")
            notes[b].append(f"vs #{a}: unreadable")
            continue
        share_a = {"A": 1.0, "B": 0.0, "tie": 0.5}[v.winner]
        wins[a] += share_a
        wins[b] += 1.0 - share_a
        counted[a] += 1
        counted[b] += 1
        notes[a].append(f"vs #{b} (as A): {v.winner}")
        notes[b].append(f"vs #{a} (as B): {v.winner}")
    return [(float(wins[k] / counted[k]) if counted[k] else None, int(counted[k]), notes[k]) for k in range(len(samples))]


class PairwiseWinRate(Judge):
    """Each sample's win rate against the other samples of its group, judged pairwise by the
    learned judge (``pairwise_winrate``): group-relative by construction."""

    kind = "pairwise_winrate"
    group_relative = True

    @dataclass
    class Config:
        model_path: str = ""
        rubric_dir: str | None = None
        #: most unordered pairs judged per group (G samples have G(G-1)/2)
        max_pairs: int = 28
        #: judge each pair in both orders (cancels a preference for a side; twice the calls)
        both_orders: bool = True
        #: ``composed`` (each image judged alone, compared from the two answers) or ``trained``
        mode: str = "composed"
        #: ``answer`` (the verdicts the judge writes) or ``rules`` (the checker's rules on its reading)
        verdicts: str = "answer"
        #: with ``verdicts: rules``, the image likelier to pass by more than this wins (null: the
        #: greedy readings' verdicts decide; ``probability_winner``)
        probability_margin: float | None = None
        #: the word groups ``P(pass)`` sums over (``reader.PROBABILITY_GROUPS``)
        probability_words: list[str] = field(default_factory=lambda: ["shape"])
        probability_min: float = 0.02
        batch_size: int = 64
        max_new_tokens: int = 160
        device: str = "auto"
        dtype: str = "float32"
        seed: int = 0

        def __post_init__(self) -> None:
            if not self.model_path:
                raise ValueError("model_path is required (the learned judge's folder)")
            if self.max_pairs < 1:
                raise ValueError(f"max_pairs must be at least 1, got {self.max_pairs}")
            if self.mode not in PAIR_MODES:
                raise ValueError(f"mode must be one of {PAIR_MODES}, got {self.mode!r}")
            if self.verdicts not in PAIR_VERDICTS:
                raise ValueError(f"verdicts must be one of {PAIR_VERDICTS}, got {self.verdicts!r}")

    def __init__(self, name: str | None = None, config: dict[str, Any] | None = None) -> None:
        super().__init__(name, config)
        o = self.options
        self.pairwise = PairwiseLocalJudge(o.model_path, o.rubric_dir, o.batch_size, o.max_new_tokens, o.device, o.dtype,
                                           name=self.name, mode=o.mode, verdicts=o.verdicts, probability_margin=o.probability_margin,
                                           probability_words=tuple(o.probability_words), probability_min=o.probability_min)
        self.metrics = self.pairwise.metrics

    def hash_extra(self) -> Any:
        return {t: r.text + r.format_text for t, r in self.pairwise.rubrics.items()}

    def __call__(self, samples: list[Sample]) -> list[Judgement]:
        o = self.options
        out = []
        for s, (rate, n, notes) in zip(samples, win_rates(samples, self.pairwise.compare, o.max_pairs, o.both_orders, o.seed)):
            if rate is None:
                out.append(self.not_applicable(s, "no readable comparison in its group (a group needs two samples of one prompt)"))
                continue
            why = f"{self.name}: win rate {rate:.3f} over {n} comparison(s) in its group: " + "; ".join(notes)
            out.append(Judgement(rate, why, {"win_rate": rate, "comparisons": float(n)}, self.name))
        return out
