"""The learned judge as a reader, the world's rules as the verdict (judge kind ``shapes_reader``).

A judge trained to answer with positions (``training/configs/judge_positions.yaml``) writes what
it sees before it writes its verdicts:

    Seen: small red circle at 8 7; large blue square at 22 20; on white.

Measured on 2,000 held-out model samples, that reading was good enough for the checker's rules to
agree with the checker 88.9% (text to image) and 85.3% (editing) of the time, while the verdicts
the judge wrote from it agreed with the checker 61.7% and 84.0%: a 4-layer decoder does not learn
to compare numbers against a 2-pixel margin. So this judge keeps the learned part for what it does
well, reading the image, and takes the verdicts from the rules: the strict checker run on the scene
the answer says it saw (``shapes_cot.rule_verdicts``), for the sample's structured prompt. It is the
detector-plus-rules design of GenEval with a learned reader in place of the detector.

Most of the reader's errors are shape words: a small square read as a circle, a circle as a
triangle (docs/rewards.md, "Teaching the reader to see shapes"). For the one call that is a
threshold, whether a malformed shape is still a shape or a ``blob`` (the checker's template IoU
of 0.5), ``blob_at`` re-decides it from the judge's own probabilities: each shape word of
a Seen or Before line becomes ``blob`` when the judge gave ``blob`` at least that share of the four
shape words' probability there, else the likeliest real shape (``reread_shapes``). The threshold is
chosen on the compositional split (``benchmarks/reader_calibration.py``), never on the test split.

A greedy reading is one reading. ``pass_probability`` asks how likely a pass is over the readings
the judge nearly wrote: each uncertain word of the Seen line (shape words, and optionally colours
and sizes) may be any of its group's words the judge gave at least ``probability_min`` of the
group's probability there; every combination is judged by the rules, weighted by the product of
its words' probabilities (the words taken as independent), and the passing share is
``P(pass)`` (part ``p_pass``; ``pass_probability``, ``seen_word_choices``). ``pass_at_probability``
then decides the pass from it instead of from the greedy reading, ``probability_score`` makes it the
score (a soft reward for RL), and the pairwise mode can prefer the image with the higher ``P(pass)``
(``PairwiseLocalJudge(probability_margin=...)``).

Score: 1 when every requirement is met on the reading; otherwise ``fail_credit`` times the share of
requirements met (so failures still rank, below every pass). An answer without a readable Seen line
with positions gets no score (``unparsed``), never a guess. Samples without a Shapes spec do not
apply. The parts are ``met`` (the share of requirements met) and ``answer_score`` (the score the
judge itself wrote, for comparison).
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from .base import Judgement, RewardConfigError, Sample
from .vlm import VLMLocalJudge, generate_token_ids

#: the shape words of a Seen line, ``blob`` last (the order of ``reread_shapes``' probabilities)
SHAPE_WORDS = ("circle", "square", "triangle", "blob")
_SCENE_LINE = re.compile(r"^\s*(Seen|Before)\s*:")


def reread_shapes(ids: list[int], pieces: list[str], probs: list[Any], shape_ids: dict[str, int], blob_at: float) -> list[int]:
    """``ids`` (one generated answer) with each shape word of its Seen and Before lines re-decided:
    ``blob`` when the judge gave ``blob`` at least ``blob_at`` of the four shape words' probability
    at that position, else the likeliest of circle, square and triangle. ``pieces[t]`` is token
    ``t``'s text and ``probs[t]`` the probabilities of ``SHAPE_WORDS`` (in that order) where token
    ``t`` was written; shape words elsewhere (the Requirements line) are left as written."""
    order = [shape_ids[w] for w in SHAPE_WORDS]
    out = list(ids)
    line = ""
    for t, (tid, piece) in enumerate(zip(ids, pieces)):
        if tid in order and t < len(probs) and _SCENE_LINE.match(line):
            p = np.asarray(probs[t], dtype=np.float64)
            total = float(p.sum())
            if total > 0:
                out[t] = order[-1] if p[-1] / total >= blob_at else order[int(np.argmax(p[:-1]))]
        line = (line + piece).rsplit("\n", 1)[-1]
    return out


def shape_token_ids(tokenizer: Any) -> dict[str, int]:
    """The token id of each shape word as a Seen line writes it (after a space); a tokenizer that
    splits one of them is refused."""
    return dict(zip(SHAPE_WORDS, word_token_ids(tokenizer, SHAPE_WORDS)))


def word_token_ids(tokenizer: Any, words: tuple[str, ...]) -> list[int]:
    """The token id of each word as a Seen line writes it (after a space); a word the tokenizer
    splits is refused (its probability would not be one token's)."""
    out = []
    for word in words:
        ids = tokenizer.encode(f" {word}", add_special_tokens=False)
        if len(ids) != 1:
            raise RewardConfigError(f"the reader's probabilities need a judge whose tokenizer writes each Seen-line word "
                                    f"as one token; {word!r} is {len(ids)} tokens")
        out.append(ids[0])
    return out


#: the word groups whose alternatives ``pass_probability`` can sum over
PROBABILITY_GROUPS = ("shape", "colour", "size")


def group_words(group: str) -> tuple[str, ...]:
    """The words of one of ``PROBABILITY_GROUPS`` as a Seen line writes them."""
    from ..world.scene import PALETTE_NAMES, SIZES

    words = {"shape": SHAPE_WORDS, "colour": tuple(PALETTE_NAMES), "size": tuple(SIZES)}
    if group not in words:
        raise RewardConfigError(f"unknown word group {group!r}; choose from {list(PROBABILITY_GROUPS)}")
    return words[group]


@dataclass(frozen=True)
class WordChoice:
    """One Seen-line word the judge was unsure of: its position in the answer and the words it
    could have been, (token id, probability within its group), the written word first."""

    position: int
    options: tuple[tuple[int, float], ...] = ()


def seen_word_choices(ids: list[int], pieces: list[str], probs: list[Any], groups: list[list[int]],
                      min_p: float) -> list[WordChoice]:
    """The words of the Seen line that belong to one of ``groups`` (lists of token ids), each with
    the words of its group the judge gave at least ``min_p`` of the group's probability at that
    position. ``probs[t]`` holds, at generated position ``t``, the probabilities of every group's
    tokens, the groups concatenated in order. Words written with no rival above ``min_p`` are
    left out (they are certain)."""
    where: dict[int, tuple[int, int]] = {}
    start = 0
    for g in groups:
        for tid in g:
            where[tid] = (start, start + len(g))
        start += len(g)
    flat = [tid for g in groups for tid in g]
    out = []
    line = ""
    for t, (tid, piece) in enumerate(zip(ids, pieces)):
        if tid in where and t < len(probs) and line.lstrip().startswith("Seen"):
            lo, hi = where[tid]
            p = np.asarray(probs[t][lo:hi], dtype=np.float64)
            total = float(p.sum())
            if total > 0:
                share = {flat[lo + k]: float(v) / total for k, v in enumerate(p)}
                rivals = sorted(((o, q) for o, q in share.items() if o != tid and q >= min_p), key=lambda x: -x[1])
                if rivals:
                    out.append(WordChoice(t, ((tid, share[tid]),) + tuple(rivals)))
        line = (line + piece).rsplit("\n", 1)[-1]
    return out


def pass_probability(ids: list[int], choices: list[WordChoice], passes: Callable[[list[int]], bool],
                     max_readings: int = 128) -> tuple[float, int]:
    """The probability that the rules pass the judge's reading, summed over the readings it nearly
    wrote: every combination of ``choices``' options, weighted by the product of their
    probabilities (renormalised over the combinations judged), ``passes`` deciding each one (the
    ids with those words swapped in). The least sure words are opened first; a word whose options
    would take the combinations past ``max_readings`` keeps its written word. Returns (P(pass),
    readings judged); with no choices, the greedy reading's pass (1 or 0) from one reading."""
    opened: list[WordChoice] = []
    n = 1
    for c in sorted(choices, key=lambda c: c.options[0][1]):
        if n * len(c.options) <= max_readings:
            opened.append(c)
            n *= len(c.options)
    total = passed = 0.0
    for combo in itertools.product(*[c.options for c in opened]):
        new = list(ids)
        weight = 1.0
        for c, (tid, p) in zip(opened, combo):
            new[c.position] = tid
            weight *= p
        total += weight
        if passes(new):
            passed += weight
    return (passed / total if total > 0 else 0.0), n


class ShapesReaderJudge(VLMLocalJudge):
    """A learned Shapes judge that writes positions, read by ``read_answer`` and judged by the rules."""

    kind = "shapes_reader"

    @dataclass
    class Config(VLMLocalJudge.Config):
        #: a failing reading scores this times its share of requirements met (0: pass/fail only)
        fail_credit: float = 0.9
        #: a Seen or Before line's shape word reads as ``blob`` when the judge gave ``blob`` at least
        #: this share of the shape words' probability there (null: the word it wrote)
        blob_at: float | None = None
        #: word groups (of ``PROBABILITY_GROUPS``) whose near-written alternatives ``P(pass)`` sums
        #: over (part ``p_pass``); null: the greedy reading only
        pass_probability: list[str] | None = None
        #: an alternative word counts when the judge gave it at least this share of its group
        probability_min: float = 0.02
        #: most readings judged per answer (the least sure words are opened first)
        max_readings: int = 128
        #: pass when ``P(pass)`` is at least this (needs ``pass_probability``; null: the greedy reading decides)
        pass_at_probability: float | None = None
        #: score ``P(pass)`` itself instead of 1 or 0 (needs ``pass_probability`` and ``fail_credit: 0``):
        #: a soft reward under which, of two images read as passing, the one read more surely scores higher
        probability_score: bool = False

        def __post_init__(self) -> None:
            super().__post_init__()
            if not 0.0 <= self.fail_credit < 1.0:
                raise ValueError(f"fail_credit must be in [0, 1) so that a failure scores below a pass, got {self.fail_credit}")
            if self.score_from != "text":
                raise ValueError("score_from does not apply: the score comes from the rules, not from the answer's score token")
            if self.pass_at is not None:
                raise ValueError("pass_at does not apply: a pass is every requirement met on the judge's reading")
            if self.blob_at is not None and not 0.0 < self.blob_at < 1.0:
                raise ValueError(f"blob_at must be in (0, 1) or null, got {self.blob_at}")
            check_probability_options(self.pass_probability, self.probability_min, self.max_readings)
            if self.pass_at_probability is not None:
                if not self.pass_probability:
                    raise ValueError("pass_at_probability needs pass_probability (the word groups to sum over), e.g. [shape]")
                if not 0.0 < self.pass_at_probability <= 1.0:
                    raise ValueError(f"pass_at_probability must be in (0, 1], got {self.pass_at_probability}")
            if self.probability_score and not self.pass_probability:
                raise ValueError("probability_score needs pass_probability (the word groups to sum over), e.g. [shape]")
            if self.probability_score and self.fail_credit:
                raise ValueError("probability_score scores P(pass), which leaves no place for fail_credit's partial credit: "
                                 "set fail_credit: 0")
            if self.pass_probability and self.blob_at is not None:
                raise ValueError("blob_at and pass_probability both re-read the shape words; set one of them")

    def __init__(self, name: str | None = None, config: dict[str, Any] | None = None) -> None:
        super().__init__(name, config)
        if self.options.mode != "cot":
            raise RewardConfigError(f"judge {self.name!r}: a reader judge needs mode: cot (it reads the chain of thought's Seen line)")

    def __call__(self, samples: list[Sample]) -> list[Judgement]:
        from .shapes_cot import has_shapes_spec

        out: list[Judgement | None] = [None] * len(samples)
        todo = []
        for k, s in enumerate(samples):
            if not has_shapes_spec(s):
                out[k] = self.not_applicable(s, "no Shapes-world spec to apply the rules to")
            else:
                todo.append(k)
        bs = self.options.batch_size
        for i in range(0, len(todo), bs):
            chunk = todo[i:i + bs]
            batch = [samples[k] for k in chunk]
            if self.options.pass_probability:
                for k, (answer, p) in zip(chunk, self.answers_with_pass_probability(batch)):
                    out[k] = self.judgement_from_reading(samples[k], answer, p)
                continue
            for k, answer in zip(chunk, self.generate(batch)):
                out[k] = self.judgement_from_reading(samples[k], answer)
        return out  # type: ignore[return-value]

    def answers_with_pass_probability(self, samples: list[Sample]) -> list[tuple[str, float | None]]:
        """Each sample's greedy answer and ``P(pass)`` over the readings it nearly wrote (None
        when the answer has no reading the rules can judge)."""
        o = self.options
        rows, groups = self.generate_with_word_probs(samples, tuple(o.pass_probability or ()))
        out = []
        for s, (ids, pieces, probs) in zip(samples, rows):
            answer = self.decode_ids(ids)
            p = reading_pass_probability(ids, pieces, probs, groups, s.spec, self.decode_ids, o.probability_min, o.max_readings)
            out.append((answer, p))
        return out

    def generate(self, samples: list[Sample]) -> list[str]:
        """The judge's answers; with ``blob_at``, each shape word of the scene lines re-decided
        from the judge's probabilities (``reread_shapes``)."""
        if self.options.blob_at is None:
            return super().generate(samples)
        answers, shape_ids = self.generate_with_shape_probs(samples)
        return [self.decode_ids(reread_shapes(ids, pieces, probs, shape_ids, self.options.blob_at))
                for ids, pieces, probs in answers]

    def generate_with_shape_probs(self, samples: list[Sample]) -> tuple[list[tuple[list[int], list[str], list[Any]]], dict[str, int]]:
        """Per sample, the greedy answer's token ids, their texts and the shape words'
        probabilities at each position; and the shape words' token ids."""
        rows, [shape_ids] = self.generate_with_word_probs(samples, ("shape",))
        return rows, dict(zip(SHAPE_WORDS, shape_ids))

    def generate_with_word_probs(self, samples: list[Sample], groups: tuple[str, ...]) -> tuple[list[tuple[list[int], list[str], list[Any]]], list[list[int]]]:
        """Per sample, the greedy answer's token ids, their texts and the probabilities of the
        ``groups``' words at each position (the groups concatenated); and each group's token ids."""
        self.load()
        self.count("requests", len(samples))
        return answers_with_word_probs(self._model, self._processor, self.requests_for(samples), self.max_new_tokens, groups)

    def decode_ids(self, ids: list[int]) -> str:
        import torch

        return self.decode(torch.tensor([ids]))[0]

    def judgement_from_reading(self, sample: Sample, answer: str, p_pass: float | None = None) -> Judgement:
        """The rules' judgement of what ``answer`` says it saw in ``sample``; with ``p_pass``
        (``pass_probability``), that part too, and with ``pass_at_probability`` the pass from it."""
        from .shapes_cot import read_answer, rule_verdicts

        reading = read_answer(answer)
        rules = rule_verdicts(reading, sample.spec)
        if rules is None:
            self.count("unparsed")
            why = "; ".join(reading.problems) or "its Seen line writes no positions"
            return Judgement(None, f"{self.name}: no reading to judge ({why}). Raw answer:\n{answer}", {}, self.name)
        self.count("scored")
        at = self.options.pass_at_probability
        passed = rules.passed if at is None or p_pass is None else p_pass >= at
        score = 1.0 if passed else self.options.fail_credit * rules.fraction_met
        if self.options.probability_score and p_pass is not None:
            score = p_pass
        checks = " ".join(f"({i}) {n}: {'met' if v else 'not met'}" for i, (n, v) in enumerate(zip(rules.requirements, rules.verdicts), 1))
        head = (f"{self.name} (reader, rules decide): {'passes' if passed else 'fails'}, "
                f"{sum(rules.verdicts)}/{len(rules.verdicts)} requirements met on its reading.")
        parts = {"met": rules.fraction_met}
        if p_pass is not None:
            parts["p_pass"] = p_pass
            rule = f" (passes at {at:g} or more)" if at is not None else ""
            head += f"\nPass probability over the readings it nearly wrote: {p_pass:.3f}{rule}."
        if reading.score is not None:
            parts["answer_score"] = reading.score
        return Judgement(score, f"{head}\nRules on what it saw: {checks}.\nIts answer:\n{answer.strip()}", parts, self.name)


def check_probability_options(groups: list[str] | tuple[str, ...] | None, min_p: float, max_readings: int) -> None:
    """Refuse pass-probability options that cannot work (ValueError naming the fix)."""
    for g in groups or ():
        if g not in PROBABILITY_GROUPS:
            raise ValueError(f"pass_probability: unknown word group {g!r}; choose from {list(PROBABILITY_GROUPS)}")
    if not 0.0 < min_p < 0.5:
        raise ValueError(f"probability_min must be in (0, 0.5), got {min_p}")
    if max_readings < 1:
        raise ValueError(f"max_readings must be at least 1, got {max_readings}")


def answers_with_word_probs(model: Any, processor: Any, requests: list[tuple[list[np.ndarray], str]], max_new_tokens: int,
                            groups: tuple[str, ...]) -> tuple[list[tuple[list[int], list[str], list[Any]]], list[list[int]]]:
    """Greedy answers to ``requests``, each as (token ids, token texts, per position the
    probabilities of the ``groups``' words, concatenated); and each group's token ids."""
    tok = processor.tokenizer
    group_ids = [word_token_ids(tok, group_words(g)) for g in groups]
    ids, probs = generate_token_ids(model, processor, requests, max_new_tokens, watch=[t for g in group_ids for t in g])
    rows = []
    for row in range(ids.shape[0]):
        row_ids = ids[row].tolist()
        rows.append((row_ids, tok.batch_decode([[i] for i in row_ids], skip_special_tokens=False), [p[row] for p in probs]))
    return rows, group_ids


def reading_pass_probability(ids: list[int], pieces: list[str], probs: list[Any], groups: list[list[int]], spec: Any,
                             decode: Callable[[list[int]], str], min_p: float, max_readings: int) -> float | None:
    """``P(pass)`` of one answer by the rules for ``spec`` (``pass_probability`` over
    ``seen_word_choices``); None when its greedy reading has nothing the rules can judge."""
    from .shapes_cot import read_answer, rule_verdicts

    def passes(new: list[int]) -> bool:
        rules = rule_verdicts(read_answer(decode(new)), spec)
        return bool(rules is not None and rules.passed)

    greedy = rule_verdicts(read_answer(decode(ids)), spec)
    if greedy is None:
        return None
    choices = seen_word_choices(ids, pieces, probs, groups, min_p)
    if not choices:  # every word certain: the greedy reading's pass, already judged
        return float(greedy.passed)
    return pass_probability(ids, choices, passes, max_readings)[0]
