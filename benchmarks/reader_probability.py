"""The reader's pass probability, pointwise and pairwise: chosen on the compositional split,
measured on the test split.

The reader judges one greedy reading. ``P(pass)`` (``qwenrl.rewards.reader.pass_probability``)
sums the rules' pass over the readings the judge nearly wrote: each Seen-line word of the chosen
groups may be any word of its group the judge gave at least ``probability_min`` there.

For each task and split, the four bundled models' samples (one per prompt, seeds from ``--seed``)
are judged once by the shipped reader with the shape, colour and size words' probabilities kept.
Then, for two word sets (shape words only; shapes, colours and sizes):

- **pointwise**: pass when ``P(pass) >= tau``, for a grid of tau, against the checker's pass; the
  tau with the best agreement on the **compositional** split (prompts the judge never trained on)
  is then measured on the **test** split, beside the greedy reading;
- **pairwise**: every pair of two models' samples of one prompt, the winner by
  ``pairwise.probability_winner`` at each margin of a grid (the image likelier to pass by more than
  the margin; else the greedy readings' ``pair_winner``), against the checker's pair winner: on
  decisive pairs (the checker passes exactly one) and on every pair, ties included.

Writes benchmarks/results/reader_probability.json.

    python benchmarks/reader_probability.py [--judge data/models/shapes-judge-reader] [--limit N]
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
RESULTS = ROOT / "benchmarks" / "results" / "reader_probability.json"
TAUS = [0.02, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]
MARGINS = [0.0, 0.02, 0.05, 0.1, 0.2]
WORD_SETS = {"shape": ("shape",), "shape+colour+size": ("shape", "colour", "size")}
MIN_P = 0.02


def pct(x: float | None) -> str:
    """A share as printed (a split without decisive pairs has none)."""
    return "n/a" if x is None else f"{x:.1%}"


def judged(task: str, split: str, judge, models: list[str], limit: int | None, seed: int) -> dict[str, Any]:
    """The split's samples, the checker's verdicts, the greedy readings' verdicts and P(pass) per word set."""
    from judge import sample_models

    from qwenrl.rewards import Sample
    from qwenrl.rewards.reader import reading_pass_probability
    from qwenrl.rewards.shapes import parsed_scene
    from qwenrl.rewards.shapes_cot import read_answer, rule_verdicts
    from qwenrl.world.check import check_edit, check_t2i

    items, names, images = sample_models(task, models, limit, seed, split=split)
    samples = [Sample.from_spec(img, it) for img, it in zip(images, items)]
    check = check_t2i if task == "t2i" else check_edit
    checker = [tuple(bool(m) for _, m in check(s.spec, parsed_scene(s)).requirements) for s in samples]
    t0 = time.perf_counter()
    rows: list[Any] = []
    for start in range(0, len(samples), judge.options.batch_size):
        got, groups = judge.generate_with_word_probs(samples[start:start + judge.options.batch_size], WORD_SETS["shape+colour+size"])
        rows += got
    judge_seconds = time.perf_counter() - t0
    greedy = []
    for s, (ids, _, _) in zip(samples, rows):
        rules = rule_verdicts(read_answer(judge.decode_ids(ids)), s.spec)
        greedy.append(None if rules is None else tuple(rules.verdicts))
    soft, soft_seconds = {}, {}
    for name, words in WORD_SETS.items():
        t0 = time.perf_counter()
        use = groups[:len(words)]  # the groups are concatenated shape, colour, size: a prefix is a smaller set
        soft[name] = [reading_pass_probability(ids, pieces, probs, use, s.spec, judge.decode_ids, MIN_P, judge.options.max_readings)
                      for s, (ids, pieces, probs) in zip(samples, rows)]
        soft_seconds[name] = time.perf_counter() - t0
    return {"samples": samples, "names": names, "checker": checker, "greedy": greedy, "soft": soft,
            "judge_seconds": judge_seconds, "soft_seconds": soft_seconds}


def pairs_of(data: dict[str, Any], seed: int) -> list[tuple[int, int]]:
    """Every pair of two models' (different) images of one prompt, in a random order."""
    rng = np.random.default_rng(seed)
    by_prompt: dict[Any, list[int]] = defaultdict(list)
    for k, s in enumerate(data["samples"]):
        by_prompt[(s.prompt, None if s.source is None else s.source.tobytes())].append(k)
    out = []
    for ks in by_prompt.values():
        for i in range(len(ks)):
            for j in range(i + 1, len(ks)):
                a, b = (ks[i], ks[j]) if rng.random() < 0.5 else (ks[j], ks[i])
                if not np.array_equal(data["samples"][a].image, data["samples"][b].image):
                    out.append((a, b))
    return out


def pointwise(data: dict[str, Any], name: str) -> dict[str, Any]:
    passed = np.array([all(v) for v in data["checker"]])
    greedy = np.array([g is not None and all(g) for g in data["greedy"]])
    p = np.array([-1.0 if x is None else x for x in data["soft"][name]])
    return {"greedy": float(np.mean(greedy == passed)),
            "by_tau": {str(t): float(np.mean((p >= t) == passed)) for t in TAUS}}


def greedy_read(data: dict[str, Any], k: int) -> tuple[bool, ...]:
    """The rules' verdicts on sample ``k``'s greedy reading; an unreadable answer meets nothing."""
    greedy = data["greedy"][k]
    return greedy if greedy is not None else (False,) * len(data["checker"][k])


def probability_picks(data: dict[str, Any], name: str, pairs: list[tuple[int, int]], margin: float) -> list[str]:
    """Each pair's winner by the likelier pass (``pairwise.probability_winner`` at ``margin``)."""
    from qwenrl.rewards.pairwise import probability_winner

    p = data["soft"][name]
    return [probability_winner(p[a] or 0.0, p[b] or 0.0, greedy_read(data, a), greedy_read(data, b), margin) for a, b in pairs]


def pairwise(data: dict[str, Any], name: str, pairs: list[tuple[int, int]]) -> dict[str, Any]:
    from qwenrl.rewards.pairwise import pair_winner

    checker = data["checker"]
    target = [pair_winner(checker[a], checker[b]) for a, b in pairs]
    decisive = np.array([all(checker[a]) != all(checker[b]) for a, b in pairs])

    def score(winners: list[str]) -> dict[str, float]:
        right = np.array([w == t for w, t in zip(winners, target)])
        return {"decisive": float(right[decisive].mean()) if decisive.any() else None, "all": float(right.mean()),
                "ties": float(np.mean([w == "tie" for w in winners]))}

    out = {"pairs": len(pairs), "decisive_pairs": int(decisive.sum()),
           "greedy": score([pair_winner(greedy_read(data, a), greedy_read(data, b)) for a, b in pairs]), "by_margin": {}}
    for m in MARGINS:
        out["by_margin"][str(m)] = score(probability_picks(data, name, pairs, m))
    return out


def main(argv: list[str] | None = None) -> None:
    from reader_calibration import reader, reader_arguments, result_header

    args = reader_arguments(__doc__, RESULTS, argv)
    result = result_header(args, probability_min=MIN_P)
    judge_path = Path(args.judge)
    for task in ("t2i", "edit"):
        judge = reader(task, judge_path)
        splits = {split: judged(task, split, judge, args.models, args.limit, args.seed) for split in ("compositional", "test")}
        out: dict[str, Any] = {}
        for name in WORD_SETS:
            pw = {split: pointwise(d, name) for split, d in splits.items()}
            tau = max(TAUS, key=lambda t: pw["compositional"]["by_tau"][str(t)])
            pairs = {split: pairwise(d, name, pairs_of(d, args.seed)) for split, d in splits.items()}
            out[name] = {"pointwise": pw, "chosen_tau": tau, "test_at_chosen_tau": pw["test"]["by_tau"][str(tau)],
                         "pairwise": pairs}
            print(f"{task} [{name}] pointwise: test greedy {pw['test']['greedy']:.1%}; tau {tau} (chosen on compositional, "
                  f"{pw['compositional']['by_tau'][str(tau)]:.1%} there vs greedy {pw['compositional']['greedy']:.1%}) "
                  f"-> test {pw['test']['by_tau'][str(tau)]:.1%}")
            t = pairs["test"]
            print(f"{task} [{name}] pairwise test ({t['decisive_pairs']} decisive of {t['pairs']}): greedy "
                  f"{pct(t['greedy']['decisive'])} / {t['greedy']['all']:.1%}; " + "; ".join(
                      f"margin {m}: {pct(v['decisive'])} / {v['all']:.1%} (ties {v['ties']:.0%})" for m, v in t["by_margin"].items()))
        test = splits["test"]
        out["n"] = {split: len(d["samples"]) for split, d in splits.items()}
        out["judge_samples_per_s"] = len(test["samples"]) / test["judge_seconds"]
        out["p_pass_samples_per_s"] = {name: len(test["samples"]) / s for name, s in test["soft_seconds"].items()}
        result["tasks"][task] = out
    result["load_after"] = os.getloadavg()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()
