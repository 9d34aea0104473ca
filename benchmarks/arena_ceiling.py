"""How much Elo over the base each task's arena can show: the human-like judge's ceiling.

The human-like judge (``app.autojudge.humanlike_outcome``) lets the strict checker decide when
exactly one image passes, and otherwise the task's composite reward when the two scores differ by
more than a margin. So a model can beat the base in two ways: by passing where the base fails,
and by looking better than the base where both pass (or both fail). This measures how much room
each way leaves, from the models' own images on the test split (``--samples-per-prompt`` images
per prompt, each model sampled as its manifest says):

* the base's pass rate, and among pairs of its passing images of the same prompt, how often the
  composite scores differ by more than the margin (the only both-pass pairs the judge decides);
* two ceilings, as a head-to-head Elo over the base (expected score s = P(win) + ½·P(tie), Elo =
  400·log10(s / (1 − s)), ties half a win as in the arena's Bradley–Terry):
  - *perfect accuracy, the base's looks*: every image passes, drawn from the base's own passing
    images of that prompt (a prompt the base never passes is a win against each of its images);
  - *perfect accuracy, perfect looks*: every image passes with the composite's top score, 1.0;
* for every other model, the head-to-head Elo the judge would give it over the base, from every
  pair of its images and the base's images of the same prompt: what the arena measures, without
  the arena's sampling of one image per prompt.

Figures go to ``benchmarks/results/arena_ceiling.{json,md}``.

    python benchmarks/arena_ceiling.py --samples-per-prompt 4
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.report import write_report  # noqa: E402

MODELS = ("shapes-base", "shapes-grpo-t2i", "shapes-grpo-edit", "shapes-distilled")


def elo_of_score(score: float) -> float:
    """Head-to-head Elo difference of an expected score in (0, 1) (ties count half)."""
    score = min(max(score, 1e-9), 1 - 1e-9)
    return 400.0 * math.log10(score / (1.0 - score))


def outcome_counts(passed_a: np.ndarray, score_a: np.ndarray, passed_b: np.ndarray, score_b: np.ndarray,
                   margin: float) -> dict[str, int]:
    """Wins, ties and losses of A over B under the human-like judge, over every pair of an image of
    A and an image of B for the same prompt. Arrays are (prompts, samples); a NaN score is an image
    of A that is not there (a prompt with fewer images), and its pairs are skipped."""
    from app.autojudge import humanlike_outcome

    wins = ties = losses = 0
    for i in range(passed_a.shape[0]):
        for ka in range(passed_a.shape[1]):
            if math.isnan(score_a[i, ka]):
                continue
            for kb in range(passed_b.shape[1]):
                outcome = humanlike_outcome(bool(passed_a[i, ka]), bool(passed_b[i, kb]), float(score_a[i, ka]),
                                            float(score_b[i, kb]), margin)
                if outcome == "model_a":
                    wins += 1
                elif outcome == "model_b":
                    losses += 1
                else:
                    ties += 1
    return {"wins": wins, "ties": ties, "losses": losses}


def head_to_head(counts: dict[str, int]) -> dict[str, float]:
    total = counts["wins"] + counts["ties"] + counts["losses"]
    score = (counts["wins"] + 0.5 * counts["ties"]) / total
    return {**counts, "score": score, "elo": elo_of_score(score)}


def ceilings(passed: np.ndarray, score: np.ndarray, margin: float) -> dict[str, dict[str, float]]:
    """The two ceilings over a model whose images are ``passed``/``score`` (prompts, samples)."""
    own = np.where(passed, score, np.nan)  # the base's passing images, as a perfect model's
    never = ~passed.any(axis=1)
    own[never] = 1.0  # no passing image to borrow; any passing image wins against all-failing ones
    base_looks = outcome_counts(np.ones_like(passed), own, passed, score, margin)
    perfect = outcome_counts(np.ones_like(passed), np.ones_like(score), passed, score, margin)
    return {"perfect_accuracy_base_looks": head_to_head(base_looks),
            "perfect_accuracy_perfect_looks": head_to_head(perfect)}


def pass_pair_gaps(passed: np.ndarray, score: np.ndarray) -> np.ndarray:
    """|score difference| of every pair of passing images of the same prompt; arrays are
    (prompts, samples)."""
    gaps = []
    for row_pass, row_score in zip(passed, score):
        s = row_score[row_pass]
        gaps.extend(abs(s[a] - s[b]) for a in range(len(s)) for b in range(a + 1, len(s)))
    return np.asarray(gaps, dtype=float)


def pass_pair_spread(passed: np.ndarray, score: np.ndarray, margin: float) -> dict[str, float]:
    """Among pairs of passing images of the same prompt: the mean |score difference| and the share
    above the margin (the both-pass pairs the human-like judge does not call a tie)."""
    d = pass_pair_gaps(passed, score)
    return {"pairs": len(d), "mean_abs_diff": float(d.mean()) if len(d) else math.nan,
            "share_above_margin": float((d > margin).mean()) if len(d) else math.nan,
            "composite_of_passes_median": float(np.median(score[passed])) if passed.any() else math.nan}


def model_paths(models: list[str]) -> dict[str, Path]:
    """Each ``--models`` entry as (label, checkpoint folder): a bundled model's name, or
    ``LABEL=CHECKPOINT`` for any checkpoint (a training run's, say)."""
    from benchmarks.report import checkpoint_specs

    paths = {}
    for entry in models:
        if "=" in entry:
            [(label, path)] = checkpoint_specs([entry])
            paths[label] = Path(path)
        elif (REPO / "data" / "models" / entry / "manifest.json").is_file():
            paths[entry] = REPO / "data" / "models" / entry
        else:
            raise SystemExit(f"{entry!r}: not a bundled model (data/models/NAME); pass LABEL=CHECKPOINT for another checkpoint")
    return paths


def sample_and_score(path: Path, task: str, samples: int, limit: int | None, reward) -> dict:
    """The test split sampled as ``qwenrl bench`` samples it (seeds 0, 1, …; the manifest's
    settings): images, strict passes and ``reward``'s scores, with a leading (prompts, samples),
    and the prompts."""
    from qwenrl.evaluation import evaluate
    from qwenrl.models import load_policy
    from qwenrl.rewards.base import Sample
    from qwenrl.world.prompt_sets import load_prompt_set

    prompts = load_prompt_set(task, "test", limit=limit)
    run = evaluate(load_policy(path), task, "test", samples_per_prompt=samples, limit=limit, progress=True, keep_images=True)
    images = np.asarray(run["images"])
    items = [p for p in prompts for _ in range(samples)]
    scores = np.array([j.score for j in reward([Sample.from_spec(im, it) for im, it in zip(images, items)])], dtype=float)
    passed = np.array([r["passed"] for r in run["records"]])
    shape = (len(prompts), samples)
    return {"prompts": prompts, "images": images.reshape(*shape, *images.shape[1:]),
            "passed": passed.reshape(shape), "score": scores.reshape(shape)}


def judge_images(path: Path, task: str, samples: int, limit: int | None) -> dict:
    """Strict pass and composite score of each image of the checkpoint at ``path`` on the test
    split, as arrays (prompts, samples)."""
    from app.pool import composite_reward, reward_path
    from qwenrl.rewards import load_reward

    judged = sample_and_score(path, task, samples, limit, load_reward(reward_path(composite_reward(task))))
    return {"passed": judged["passed"], "score": judged["score"]}


def main(argv: list[str] | None = None) -> dict:
    from app.autojudge import HUMANLIKE_MARGIN

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples-per-prompt", type=int, default=4, help="at least 2: the both-pass pairs need two images")
    ap.add_argument("--limit", type=int, default=None, help="an evenly spaced subset of the test prompts")
    ap.add_argument("--margin", type=float, default=HUMANLIKE_MARGIN)
    ap.add_argument("--models", nargs="+", default=list(MODELS),
                    help="bundled model names or LABEL=CHECKPOINT; the first is the base")
    ap.add_argument("--tasks", nargs="+", choices=("t2i", "edit"), default=["t2i", "edit"])
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "arena_ceiling"))
    args = ap.parse_args(argv)
    if args.samples_per_prompt < 2:
        ap.error("--samples-per-prompt must be at least 2 (pairs of one model's images of a prompt are compared)")
    import torch

    torch.set_num_threads(2)
    t0 = time.perf_counter()
    paths = model_paths(args.models)
    base = next(iter(paths))
    results: dict = {"samples_per_prompt": args.samples_per_prompt, "margin": args.margin, "base": base,
                     "models": {m: str(p) for m, p in paths.items()}, "tasks": {}}
    for task in args.tasks:
        judged = {m: judge_images(p, task, args.samples_per_prompt, args.limit) for m, p in paths.items()}
        b = judged[base]
        results["tasks"][task] = {
            "prompts": int(b["passed"].shape[0]),
            "pass_rate": {m: float(j["passed"].mean()) for m, j in judged.items()},
            "base_pass_pairs": pass_pair_spread(b["passed"], b["score"], args.margin),
            "ceilings": ceilings(b["passed"], b["score"], args.margin),
            "vs_base": {m: head_to_head(outcome_counts(j["passed"], j["score"], b["passed"], b["score"], args.margin))
                        for m, j in judged.items() if m != base},
        }
    results["seconds"] = time.perf_counter() - t0
    write_report(args.out, results, markdown(results))
    return results


def markdown(results: dict) -> str:
    lines = [f"# The human-like judge's Elo ceiling over {results['base']}", "",
             f"Test splits, {results['samples_per_prompt']} images per prompt and model, margin {results['margin']}; "
             "head-to-head Elo from every pair of images of the same prompt (ties half a win).", "",
             "| task | base pass rate | both-pass pairs the composite decides | mean composite gap of passes | "
             "ceiling: perfect accuracy, base's looks | ceiling: perfect accuracy and looks |",
             "|---|---|---|---|---|---|"]
    for task, t in results["tasks"].items():
        spread, c = t["base_pass_pairs"], t["ceilings"]
        lines.append(f"| {task} | {100 * t['pass_rate'][results['base']]:.1f}% | {100 * spread['share_above_margin']:.1f}% "
                     f"of {spread['pairs']} | {spread['mean_abs_diff']:.4f} | "
                     f"{c['perfect_accuracy_base_looks']['elo']:+.0f} | {c['perfect_accuracy_perfect_looks']['elo']:+.0f} |")
    lines += ["", "| task | model | pass rate | wins / ties / losses against the base's images | head-to-head Elo |",
              "|---|---|---|---|---|"]
    for task, t in results["tasks"].items():
        for model, h in t["vs_base"].items():
            lines.append(f"| {task} | {model} | {100 * t['pass_rate'][model]:.1f}% | "
                         f"{h['wins']} / {h['ties']} / {h['losses']} | {h['elo']:+.0f} |")
    lines += ["", f"{results['seconds']:.0f} s."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
