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

Score: 1 when every requirement is met on the reading; otherwise ``fail_credit`` times the share of
requirements met (so failures still rank, below every pass). An answer without a readable Seen line
with positions gets no score (``unparsed``), never a guess. Samples without a Shapes spec do not
apply. The parts are ``met`` (the share of requirements met) and ``answer_score`` (the score the
judge itself wrote, for comparison).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

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
    out = {}
    for word in SHAPE_WORDS:
        ids = tokenizer.encode(f" {word}", add_special_tokens=False)
        if len(ids) != 1:
            raise RewardConfigError(f"blob_at needs a judge whose tokenizer writes each shape word as one token; "
                                    f"{word!r} is {len(ids)} tokens")
        out[word] = ids[0]
    return out


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
            for k, answer in zip(chunk, self.generate([samples[k] for k in chunk])):
                out[k] = self.judgement_from_reading(samples[k], answer)
        return out  # type: ignore[return-value]

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
        self.load()
        tok = self._processor.tokenizer
        shape_ids = shape_token_ids(tok)
        ids, probs = generate_token_ids(self._model, self._processor, self.requests_for(samples), self.max_new_tokens,
                                        watch=[shape_ids[w] for w in SHAPE_WORDS])
        self.count("requests", len(samples))
        rows = []
        for row in range(ids.shape[0]):
            row_ids = ids[row].tolist()
            rows.append((row_ids, tok.batch_decode([[i] for i in row_ids], skip_special_tokens=False), [p[row] for p in probs]))
        return rows, shape_ids

    def decode_ids(self, ids: list[int]) -> str:
        import torch

        return self.decode(torch.tensor([ids]))[0]

    def judgement_from_reading(self, sample: Sample, answer: str) -> Judgement:
        """The rules' judgement of what ``answer`` says it saw in ``sample``."""
        from .shapes_cot import read_answer, rule_verdicts

        reading = read_answer(answer)
        rules = rule_verdicts(reading, sample.spec)
        if rules is None:
            self.count("unparsed")
            why = "; ".join(reading.problems) or "its Seen line writes no positions"
            return Judgement(None, f"{self.name}: no reading to judge ({why}). Raw answer:\n{answer}", {}, self.name)
        self.count("scored")
        score = 1.0 if rules.passed else self.options.fail_credit * rules.fraction_met
        checks = " ".join(f"({i}) {n}: {'met' if v else 'not met'}" for i, (n, v) in enumerate(zip(rules.requirements, rules.verdicts), 1))
        head = (f"{self.name} (reader, rules decide): {'passes' if rules.passed else 'fails'}, "
                f"{sum(rules.verdicts)}/{len(rules.verdicts)} requirements met on its reading.")
        parts = {"met": rules.fraction_met}
        if reading.score is not None:
            parts["answer_score"] = reading.score
        return Judgement(score, f"{head}\nRules on what it saw: {checks}.\nIts answer:\n{answer.strip()}", parts, self.name)
