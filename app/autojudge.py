"""The automatic arena: battles between gallery samples judged by a program, not a person.

Judges:

* ``oracle`` — the Shapes world's strict checker (``qwenrl.world.check.check_image``): an
  image that passes beats one that fails; both pass is a tie; both fail is a tie (both bad).
* a reward YAML (``training/configs/rewards/shapes_t2i.yaml``) — the composite reward: the
  higher score wins; equal scores tie; no score on either side is a tie (both bad).
* ``humanlike`` — votes as a careful person would: when exactly one image passes the strict
  checker, it wins; otherwise (both pass, or both fail) the task's composite reward
  (``shapes_{task}.yaml``: alignment or instruction, identity, aesthetics, fidelity) picks the
  better one when the two scores differ by more than ``margin``; closer than that is a tie. The
  oracle calls every both-pass pair a tie, which caps what any accuracy can show (most editing
  pairs both pass); people pick the better of two correct images.

* ``learned`` — the learned judge (``data/models/shapes-judge``) in its pairwise mode: both
  images and the prompt go in, a short comparison and ``A``, ``B`` or ``tie`` come out
  (``qwenrl.rewards.pairwise``); a tie between two images that fail their requirements is
  ``tie (bothbad)``. An answer it cannot read stores no vote (counted as ``unreadable``).
  ``learned:FOLDER`` uses another judge folder.
* ``reader`` — the judge that writes positions (``data/models/shapes-judge-reader``: a positions
  judge trained with the perception loss, ``training/configs/judge_reader.yaml``, then fine-tuned on
  add and background edits, ``judge_reader_edit.yaml``) reads each image, and the world's rules decide on what it read (``verdicts="rules"``; docs/rewards.md,
  "A judge that reads, and rules that decide"); the comparison and the votes are stored as for
  ``learned``, tagged ``reader``. ``reader:FOLDER`` uses another judge folder that writes positions.
* ``reader-probability`` — a reader judge preferring the image whose reading is likelier to pass
  (``probability_margin`` 0 of ``PairwiseLocalJudge``): over the readings it nearly wrote for the
  shape, colour and size words, the share the rules pass (``P(pass)``, docs/rewards.md "The
  readings it nearly wrote"). It picks the checker's passing image in 94.7% of text-to-image test
  battles where exactly one passes (90.1% editing; the greedy ``reader`` 73 / 63%), and between
  two passing images it picks the one read with more confidence, as a person picks one of two
  correct images instead of calling a tie. It runs the reader before its fine-tune
  (``data/models/shapes-judge-reader-one-run``), whose shape-word probabilities rank pairs better
  (the fine-tuned reader: 88.8 / 71.7% on the compositional split's decisive pairs, against
  93.3 / 73.9%). Tagged ``reader-probability``; ``reader-probability:FOLDER`` for another folder.

Votes are tagged with the judge (``oracle``, ``reward:<name>``, ``humanlike``, ``learned``, ``reader``,
``reader-probability``) and the voter is
the judge, so they never mix with human votes unless asked (the leaderboard's "auto" and "all"
filters).

    run_auto_arena(workspace, task="t2i", judge="oracle", battles=500, seed=0)
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from arena.matchmaking import next_pair


#: the composite reward's score difference below which the human-like judge calls a tie
HUMANLIKE_MARGIN = 0.02
#: the pairwise judges by name: (default folder under data/models, where the verdicts come from,
#: further ``PairwiseLocalJudge`` options)
PAIRWISE_JUDGES: dict[str, tuple[str, str, dict[str, Any]]] = {
    "learned": ("shapes-judge", "answer", {}),
    "reader": ("shapes-judge-reader", "rules", {}),
    "reader-probability": ("shapes-judge-reader-one-run", "rules", {"probability_margin": 0.0, "probability_words": ("shape", "colour", "size")}),
}


def humanlike_outcome(passed_a: bool, passed_b: bool, score_a: float | None, score_b: float | None,
                      margin: float = HUMANLIKE_MARGIN) -> str:
    """The human-like judge's vote on two images: the one that passes the strict checker when
    exactly one does; else the one whose composite score is higher by more than ``margin``;
    else a tie (``tie`` when both pass, ``tie (bothbad)`` when both fail)."""
    if passed_a != passed_b:
        return "model_a" if passed_a else "model_b"
    if score_a is not None and score_b is not None and abs(score_a - score_b) > margin:
        return "model_a" if score_a > score_b else "model_b"
    return "tie" if passed_a else "tie (bothbad)"


def learned_outcome(reading) -> str | None:
    """An arena outcome from a read pairwise answer (``PairReading``): None when unreadable."""
    if reading.winner is None:
        return None
    if reading.winner != "tie":
        return "model_a" if reading.winner == "A" else "model_b"
    return "tie" if reading.verdicts_a and all(reading.verdicts_a) else "tie (bothbad)"


class AutoJudge:
    """Scores a gallery sample once (cached) and turns two scores into an arena outcome; the
    learned judge compares the two images instead (``outcomes``, batched)."""

    def __init__(self, ws, judge: str, task: str, margin: float = HUMANLIKE_MARGIN) -> None:
        self.ws = ws
        self.task = task
        self.margin = margin
        self._cache: dict[int, tuple[bool | None, float | None]] = {}
        self._checker = judge in ("oracle", "humanlike")
        self._reward = None
        self._pairwise = None
        kind = judge.split(":", 1)[0]
        if kind in PAIRWISE_JUDGES:
            from qwenrl.rewards import RewardConfigError
            from qwenrl.rewards.pairwise import PairwiseLocalJudge

            from .paths import MODELS_DIR

            default, verdicts, options = PAIRWISE_JUDGES[kind]
            folder = Path(judge.split(":", 1)[1]) if ":" in judge else MODELS_DIR / default
            try:
                self._pairwise = PairwiseLocalJudge(folder, batch_size=64, name=kind, verdicts=verdicts, **options)
            except RewardConfigError as exc:
                raise ValueError(str(exc)) from exc
            self.name = kind
        elif judge in ("oracle", "humanlike"):
            self.name = judge
            if judge == "humanlike":
                if margin < 0:
                    raise ValueError(f"--margin must be >= 0, got {margin}")
                self._reward = ws.reward(task)
        else:
            from qwenrl.rewards import load_reward

            path = Path(judge)
            if not path.is_file():
                raise ValueError(f"--judge must be 'oracle', 'humanlike', {', '.join(repr(k) for k in PAIRWISE_JUDGES)} or a reward "
                                 f"YAML file; {judge!r} is none of them")
            self._reward = load_reward(path, cache=False)
            if self._reward.task != task:
                raise ValueError(f"{path} is a {self._reward.task} reward; the battles are {task}")
            self.name = f"reward:{self._reward.name}"

    def score(self, sample: dict[str, Any]) -> tuple[bool | None, float | None]:
        """(passes the strict checker, composite score) of a gallery sample; each None when this
        judge does not use it."""
        sid = int(sample["id"])
        if sid not in self._cache:
            from qwenrl.imageio import load_png

            item = self.ws.pool_item(sample["prompt_id"])
            image = load_png(self.ws.root / sample["image_path"])
            passed = score = None
            if self._checker:
                from qwenrl.world.check import check_image

                passed = check_image(item.spec(), image).passed
            if self._reward is not None:
                from qwenrl.rewards import Sample

                [j] = self._reward([Sample.from_spec(image, item.spec())])
                score = j.score
            self._cache[sid] = (passed, score)
        return self._cache[sid]

    def sample(self, s: dict[str, Any]):
        from qwenrl.imageio import load_png
        from qwenrl.rewards import Sample

        return Sample.from_spec(load_png(self.ws.root / s["image_path"]), self.ws.pool_item(s["prompt_id"]).spec())

    def outcomes(self, battles: list[tuple[dict[str, Any], dict[str, Any]]]) -> list[tuple[str | None, str]]:
        """(outcome or None when the judge's answer is unreadable, rationale) per battle."""
        if self._pairwise is None:
            return [(self.outcome(a, b), "") for a, b in battles]
        from qwenrl.rewards.pairwise import read_pairwise

        verdicts = self._pairwise.compare([(self.sample(a), self.sample(b)) for a, b in battles])
        return [(learned_outcome(read_pairwise(v.rationale)) if v.winner else None, v.rationale) for v in verdicts]

    def outcome(self, a: dict[str, Any], b: dict[str, Any]) -> str:
        (pa, sa), (pb, sb) = self.score(a), self.score(b)
        if self.name == "humanlike":
            return humanlike_outcome(bool(pa), bool(pb), sa, sb, self.margin)
        if self.name == "oracle":
            return "model_a" if pa and not pb else "model_b" if pb and not pa else ("tie" if pa else "tie (bothbad)")
        if sa is None or sb is None:
            return "tie (bothbad)" if sa is None and sb is None else ("model_b" if sa is None else "model_a")
        if abs(sa - sb) <= 1e-9:
            return "tie"
        return "model_a" if sa > sb else "model_b"


def run_auto_arena(
    ws, *, task: str, judge: str, battles: int, seed: int = 0, strategy: str = "info",
    progress: Callable[[int, int], None] | None = None, margin: float = HUMANLIKE_MARGIN,
) -> dict[str, Any]:
    """Add ``battles`` automatically judged votes to the workspace's store; returns a summary."""
    if battles < 1:
        raise ValueError("--battles must be at least 1")
    auto = AutoJudge(ws, judge, task, margin=margin)
    by_model: dict[str, dict[tuple[int, int], dict[str, Any]]] = {}
    for s in ws.arena_samples(task):
        by_model.setdefault(s["model"], {})[(s["prompt_id"], s["seed"])] = s
    models = sorted(by_model)
    if len(models) < 2:
        raise ValueError(f"the {task} gallery has {len(models)} model(s) with images; the arena needs two")
    rng = np.random.default_rng(seed)
    counts = np.zeros((len(models), len(models)), dtype=np.int64)
    index = {m: i for i, m in enumerate(models)}
    planned: list[tuple[dict[str, Any], dict[str, Any]]] = []
    for _ in range(battles):  # matchmaking looks at the counts only, so the battles are planned first
        left, right = next_pair(models, counts, strategy=strategy, seed=rng)  # type: ignore[arg-type]
        common = sorted(set(by_model[left]) & set(by_model[right]))
        if not common:
            continue
        key = common[int(rng.integers(len(common)))]
        planned.append((by_model[left][key], by_model[right][key]))
        counts[index[left], index[right]] += 1
        counts[index[right], index[left]] += 1
    outcomes: dict[str, int] = {}
    done = 0
    for start in range(0, len(planned), 64):  # judged in batches (the learned judge runs a model)
        chunk = planned[start:start + 64]
        for (a, b), (winner, why) in zip(chunk, auto.outcomes(chunk)):
            done += 1
            if winner is None:
                outcomes["unreadable"] = outcomes.get("unreadable", 0) + 1
            else:
                # the learned judge's comparison stays with its battle, for the inspector
                battle = ws.store.create_battle(a["id"], b["id"], voter=auto.name, meta={"judge_rationale": why} if why else None)
                ws.store.record_vote(battle["id"], winner, voter=auto.name, judge=auto.name)
                outcomes[winner] = outcomes.get(winner, 0) + 1
            if progress is not None:
                progress(done, len(planned))
    return {"task": task, "judge": auto.name, "battles": sum(n for w, n in outcomes.items() if w != "unreadable"),
            "outcomes": outcomes, "models": models}
