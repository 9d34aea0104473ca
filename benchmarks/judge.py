"""The learned Shapes judge (data/models/shapes-judge) against the exact checker, on held-out samples.

For each bundled model and task, one image per prompt of the test split (250 prompts, seeds
``seed + i``, the model's own sampling settings: what ``qwenrl bench`` scores), judged by the
learned judge through ``vlm_local`` exactly as the reward YAMLs configure it
(``training/configs/rewards/shapes_{task}_vlm.yaml``). Measured per task:

* pass/fail agreement with the strict checker (the judge passes a sample when it answers
  10/10), with the confusion counts, per model and per family — target ≥ 95%;
* answers that parse (one final ``Score: x/10``) — target ≥ 99%;
* Spearman correlation of the judge's score with the soft score it was trained to follow
  (alignment for text to image; the mean of instruction and identity for editing);
* calibration: per judge score, how many samples, their mean soft score and checker pass rate,
  and the mean absolute gap between the judge's score and the one it was trained to give;
* faithfulness: the share of answers whose Requirements are the checker's (copied from the
  prompt or instruction), whose "Seen:" facts match the parser (same background, same objects
  by size, colour and shape), whose verdicts match the checker's requirement by requirement,
  and whose score follows their own verdicts; and the agreement where the Seen line is right
  and where it is wrong (reading the image, or reasoning from what was read);
* speed: samples per second of the judge alone, batches of 64, on the threads given — target
  ≥ 50 for text to image on 2 cores.

It also checks that no test prompt is among the judge's training texts, and keeps a few
disagreements of each kind with both rationales. Writes benchmarks/results/judge.json.

    python benchmarks/judge.py [--judge data/models/shapes-judge] [--threads 2] [--limit 250]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "judge.json"
MODELS = ["shapes-base", "shapes-grpo-t2i", "shapes-grpo-edit", "shapes-distilled"]
TARGETS = {"agreement": 0.92, "agreement_goal": 0.95, "parsed": 0.99, "seen": 0.90, "pair_decisive": 0.90,
           "t2i_samples_per_s": 50.0, "size_mb": 30.0, "train_minutes": 60.0}


def sample_models(task: str, models: list[str], limit: int | None, seed: int, split: str = "test") -> tuple[list, list[str], np.ndarray]:
    """(items, model name per sample, images) for every model on the task's ``split``."""
    from qwenrl.evaluation import generate_for, policy_sampling_defaults
    from qwenrl.models import load_policy
    from qwenrl.world.prompt_sets import load_prompt_set

    items = load_prompt_set(task, split, limit=limit)
    all_items, names, images = [], [], []
    for name in models:
        policy = load_policy(ROOT / "data" / "models" / name).eval()
        d = policy_sampling_defaults(policy)
        images.append(generate_for(policy, items, seeds=[seed + i for i in range(len(items))], num_steps=d["num_steps"],
                                   guidance_scale=d["guidance_scale"], batch_size=64, progress=True, desc=f"{name} {task}"))
        all_items += items
        names += [name] * len(items)
    return all_items, names, np.concatenate(images)


def judge_component(task: str, judge_path: Path):
    """The learned judge as the task's reward YAML configures it, pointed at ``judge_path``."""
    import yaml

    from qwenrl.rewards.base import build_judge

    cfg_path = ROOT / "training" / "configs" / "rewards" / f"shapes_{task}_vlm.yaml"
    options = dict(yaml.safe_load(cfg_path.read_text())["components"]["judge"]["config"])
    options["model_path"] = str(judge_path)
    options["rubric_dir"] = str(judge_path / "rubrics")
    return build_judge("vlm_local", name="judge", config=options)


def mean_or_none(values: list[Any]) -> float | None:
    return float(np.mean(values)) if values else None


def spearman(a: list[float], b: list[float]) -> float | None:
    from scipy.stats import spearmanr

    if len(a) < 3 or len(set(a)) < 2 or len(set(b)) < 2:
        return None
    return float(spearmanr(a, b).statistic)


def judged_rows(task: str, items: list, names: list[str], images: np.ndarray, judge_path: Path) -> tuple[list[dict[str, Any]], float, Any]:
    """The learned judge's answer to each sample and what it got right against the checker's
    target (one row per sample), the seconds judging took (after a warm-up) and the judge."""
    from qwenrl.rewards import Sample
    from qwenrl.rewards.shapes import parsed_scene
    from qwenrl.rewards.shapes_cot import positions_agree, read_answer, rule_verdicts, seen_agrees, target_for

    judge = judge_component(task, judge_path)
    samples = [Sample.from_spec(img, it) for img, it in zip(images, items)]
    judge.generate(samples[:8])  # load and warm up outside the timing
    answers: list[str] = []
    t0 = time.perf_counter()
    for start in range(0, len(samples), judge.options.batch_size):
        answers += judge.generate(samples[start:start + judge.options.batch_size])
    seconds = time.perf_counter() - t0

    rows = []
    for s, it, name, answer in zip(samples, items, names, answers):
        t = target_for(s)
        r = read_answer(answer)
        parsed = parsed_scene(s)  # the parse target_for made, kept in the sample's memo
        rows.append({
            "model": name, "family": it.family, "prompt": it.text, "checker_pass": t.passed, "soft": t.soft,
            "target_score": t.score10, "target": t.text, "answer": answer, "score": r.score, "judge_pass": r.passes,
            "seen_ok": seen_agrees(r, parsed), "verdicts_ok": r.verdicts == list(t.verdicts),
            "positions_ok": positions_agree(r, parsed),
            "rules_pass": _rules_pass(rule_verdicts(r, it)),
            "misread": misread(r, parsed),
            "shape_reads": shape_reads(r, parsed),
            "requirements_ok": r.requirements == read_answer(t.text).requirements,
            "consistent": r.consistent,
        })
    return rows, seconds, judge


def measure(task: str, items: list, names: list[str], images: np.ndarray, judge_path: Path) -> dict[str, Any]:
    rows, seconds, judge = judged_rows(task, items, names, images, judge_path)
    n = len(rows)
    scored = [r for r in rows if r["score"] is not None]
    agree = [r["judge_pass"] == r["checker_pass"] for r in rows]  # an unparsed answer is a disagreement

    def agreement_by(key: str) -> dict[str, float]:
        groups: dict[str, list[bool]] = defaultdict(list)
        for r, a in zip(rows, agree):
            groups[r[key]].append(a)
        return {k: float(np.mean(v)) for k, v in sorted(groups.items())}

    calibration = []
    for s10 in range(11):
        group = [r for r in scored if round(r["score"] * 10) == s10]
        if group:
            calibration.append({"judge_score": s10, "n": len(group), "mean_soft": float(np.mean([r["soft"] for r in group])),
                                "checker_pass_rate": float(np.mean([r["checker_pass"] for r in group])),
                                "mean_target_score": float(np.mean([r["target_score"] for r in group]))})
    examples: dict[str, list[dict[str, Any]]] = {"judge passes, checker fails": [], "judge fails, checker passes": []}
    for r in rows:
        kind = ("judge passes, checker fails" if r["judge_pass"] and not r["checker_pass"]
                else "judge fails, checker passes" if r["checker_pass"] and r["judge_pass"] is False else None)
        if kind and len(examples[kind]) < 3:
            examples[kind].append({k: r[k] for k in ("model", "family", "prompt", "answer", "target")})
    return {
        "n": n,
        "checker_pass_rate": float(np.mean([r["checker_pass"] for r in rows])),
        "judge_pass_rate": float(np.mean([bool(r["judge_pass"]) for r in rows])),
        "agreement": float(np.mean(agree)),
        "confusion": {
            "both_pass": sum(bool(r["judge_pass"]) and r["checker_pass"] for r in rows),
            "both_fail": sum(r["judge_pass"] is False and not r["checker_pass"] for r in rows),
            "judge_passes_checker_fails": sum(bool(r["judge_pass"]) and not r["checker_pass"] for r in rows),
            "judge_fails_checker_passes": sum(r["judge_pass"] is False and r["checker_pass"] for r in rows),
            "unparsed": n - len(scored),
        },
        "parsed": len(scored) / n,
        "spearman_vs_soft": spearman([r["score"] for r in scored], [r["soft"] for r in scored]),
        "score_exact": float(np.mean([round(r["score"] * 10) == r["target_score"] for r in scored])) if scored else None,
        "score_mae_tenths": float(np.mean([abs(r["score"] * 10 - r["target_score"]) for r in scored])) if scored else None,
        "requirements_match_checker": float(np.mean([r["requirements_ok"] for r in rows])),
        "seen_matches_parser": float(np.mean([r["seen_ok"] for r in rows])),
        # where the errors come from: reading the image (Seen) or reasoning from what it read
        "agreement_when_seen_right": mean_or_none([a for r, a in zip(rows, agree) if r["seen_ok"]]),
        "agreement_when_seen_wrong": mean_or_none([a for r, a in zip(rows, agree) if not r["seen_ok"]]),
        "verdicts_match_checker": float(np.mean([r["verdicts_ok"] for r in rows])),
        # reading against reasoning: the checker's rules applied to the scene the answer says it saw
        # (answers with positions); high where its own verdicts are low means the verdicts, not the reading, fail
        "agreement_if_verdicts_followed_its_reading": mean_or_none([r["rules_pass"] == r["checker_pass"] for r in rows
                                                                     if r["rules_pass"] is not None]),
        "own_verdicts_follow_its_reading": mean_or_none([r["rules_pass"] == r["judge_pass"] for r in rows if r["rules_pass"] is not None]),
        # the reader judge (kind shapes_reader): the rules' verdict on the reading is its verdict, and
        # an answer it cannot read is a disagreement; then why it disagrees, by what it misread
        "reader": reader_summary(rows),
        # each parsed object's shape (``blob`` below the checker's IoU 0.5) against the shape word
        # the answer wrote for the Seen object nearest it: the reading's hardest call
        "shapes_read": shapes_read_summary([x for r in rows for x in r["shape_reads"]]),
        # answers that write positions: where the Seen objects are right, every one within 1 px
        "positions_within_1px": mean_or_none([r["positions_ok"] for r in rows if r["positions_ok"] is not None]),
        "score_follows_verdicts": float(np.mean([bool(r["consistent"]) for r in rows])),
        "answer_exact": float(np.mean([r["answer"].strip() == r["target"] for r in rows])),
        "agreement_by_model": agreement_by("model"),
        "agreement_by_family": agreement_by("family"),
        "calibration": calibration,
        "samples_per_s": n / seconds,
        "mean_answer_chars": float(np.mean([len(r["answer"]) for r in rows])),
        "disagreements": examples,
        "judge_metrics": dict(judge.metrics),
    }


def misread(reading: Any, parsed: Any) -> str:
    """What an answer's Seen line gets wrong against the parser, the first of: ``unreadable``,
    ``background``, ``object count``, ``shape``, ``colour``, ``size`` (each compared as a multiset),
    ``position`` (an object more than 1 px off), else ``nothing``."""
    from collections import Counter

    from qwenrl.rewards.shapes_cot import BLOB, positions_agree
    from qwenrl.world.check import recognisable

    if reading.seen is None or reading.background is None:
        return "unreadable"
    if reading.background != parsed.background:
        return "background"
    if len(reading.seen) != len(parsed.objects):
        return "object count"
    truth = [(o.size, o.color, o.shape if recognisable(o) else BLOB) for o in parsed.objects]
    for name, k in (("shape", 2), ("colour", 1), ("size", 0)):
        if Counter(o[k] for o in reading.seen) != Counter(o[k] for o in truth):
            return name
    if sorted(reading.seen) != sorted(truth):
        return "binding"  # the right words, on the wrong objects
    return "position" if positions_agree(reading, parsed) is False else "nothing"


#: template-IoU margins (the parser's best shape over its runner-up) by which shape reads are grouped
MARGIN_EDGES = (0.0, 0.05, 0.1, 0.2)


def shape_reads(reading: Any, parsed: Any, within: float = 3.0) -> list[tuple[str, str, str, float]]:
    """(size, the parser's shape, the shape the answer wrote, the parser's margin) for each parsed
    object that has a Seen object within ``within`` pixels (the nearest); the parser's shape is
    ``blob`` when the checker cannot recognise it, and the margin is its best template IoU minus
    the runner-up's (how close the checker's own call was). Empty for answers without positions."""
    from qwenrl.rewards.shapes_cot import BLOB
    from qwenrl.world.check import recognisable

    if reading.seen is None or not reading.seen_at or any(xy is None for xy in reading.seen_at):
        return []
    out = []
    for o in parsed.objects:
        x, y = o.centroid
        dist, k = min((float(np.hypot(u - x, v - y)), k) for k, (u, v) in enumerate(reading.seen_at))
        if dist <= within:
            out.append((o.size, o.shape if recognisable(o) else BLOB, reading.seen[k][2], float(o.shape_margin)))
    return out


def shapes_read_summary(reads: list[tuple[str, str, str, float]]) -> dict[str, Any]:
    """The share of objects whose shape was read right, overall, by size, by true shape, and for
    the recognisable ones by the checker's margin (``MARGIN_EDGES``: ``n`` and ``right`` per bin)."""
    from qwenrl.rewards.shapes_cot import BLOB

    def share(group: list[tuple[str, str, str, float]]) -> float | None:
        return float(np.mean([r[1] == r[2] for r in group])) if group else None

    shapes = [r for r in reads if r[1] != BLOB]
    bins = {}
    for lo, hi in zip(MARGIN_EDGES, MARGIN_EDGES[1:] + (float("inf"),)):
        group = [r for r in shapes if lo <= r[3] < hi]
        bins[f"{lo:g}+" if hi == float("inf") else f"{lo:g}-{hi:g}"] = {"n": len(group), "right": share(group)}
    return {"n": len(reads), "right": share(reads),
            "by_size": {s: share([r for r in reads if r[0] == s]) for s in sorted({r[0] for r in reads})},
            "by_shape": {s: share([r for r in reads if r[1] == s]) for s in sorted({r[1] for r in reads})},
            "by_margin": bins}


def reader_summary(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The reader judge's agreement with the checker (None for answers without positions)."""
    if not any(r["rules_pass"] is not None for r in rows):
        return None
    agree = [r["rules_pass"] == r["checker_pass"] for r in rows]
    causes: dict[str, int] = defaultdict(int)
    by_family: dict[str, list[bool]] = defaultdict(list)
    for r, a in zip(rows, agree):
        by_family[r["family"]].append(a)
        if not a:
            causes[r["misread"]] += 1
    return {
        "agreement": float(np.mean(agree)),
        "unreadable": float(np.mean([r["rules_pass"] is None for r in rows])),
        "passes_checker_fails": sum(bool(r["rules_pass"]) and not r["checker_pass"] for r in rows),
        "fails_checker_passes": sum(r["rules_pass"] is False and r["checker_pass"] for r in rows),
        "disagreements_by_misread": dict(sorted(causes.items(), key=lambda kv: -kv[1])),
        "misread_share": {k: float(np.mean([r["misread"] == k for r in rows])) for k in sorted({r["misread"] for r in rows})},
        "agreement_by_family": {k: float(np.mean(v)) for k, v in sorted(by_family.items())},
    }


def _rules_pass(rules: Any) -> bool | None:
    """The checker's rules on the scene an answer says it saw (None when it wrote no positions)."""
    return None if rules is None else rules.passed


def roc_auc(scores: list[float], positive: list[bool]) -> float | None:
    """The probability that a random positive scores above a random negative (ties count half)."""
    pos = [s for s, p in zip(scores, positive) if p]
    neg = [s for s, p in zip(scores, positive) if not p]
    if not pos or not neg:
        return None
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return float(wins / (len(pos) * len(neg)))


def measure_expected(task: str, items: list, images: np.ndarray, judge_path: Path) -> dict[str, Any]:
    """The written score against the expected score: Spearman with the soft score, AUC for the checker's pass."""
    from qwenrl.rewards import Sample
    from qwenrl.rewards.shapes_cot import read_answer, target_for

    judge = judge_component(task, judge_path)
    samples = [Sample.from_spec(img, it) for img, it in zip(images, items)]
    written, expected, soft, passed = [], [], [], []
    for start in range(0, len(samples), judge.options.batch_size):
        chunk = samples[start:start + judge.options.batch_size]
        answers, exp = judge.generate_with_expected(chunk)
        for s, a, e in zip(chunk, answers, exp):
            score = read_answer(a).score
            if score is None or e is None:
                continue
            t = target_for(s)
            written.append(score)
            expected.append(e)
            soft.append(t.soft)
            passed.append(t.passed)
    return {"n": len(written),
            "written": {"spearman_vs_soft": spearman(written, soft), "auc_checker_pass": roc_auc(written, passed)},
            "expected": {"spearman_vs_soft": spearman(expected, soft), "auc_checker_pass": roc_auc(expected, passed)},
            "mean_abs_gap_tenths": float(np.mean(np.abs(np.array(written) - np.array(expected))) * 10) if written else None}


def measure_pairwise(task: str, items: list, names: list[str], images: np.ndarray, judge_path: Path, seed: int,
                     verdict_source: str = "answer") -> dict[str, Any]:
    """Every pair of two models' samples of one test prompt, in a random order, judged pairwise
    (composed; ``verdict_source="rules"``: each side's verdicts from the rules on its reading)."""
    from qwenrl.rewards import Sample
    from qwenrl.rewards.pairwise import PairwiseLocalJudge, pair_target, read_pairwise

    rng = np.random.default_rng(seed)
    by_prompt: dict[int, list[int]] = defaultdict(list)
    for k, it in enumerate(items):  # every model sampled the same item objects (one edit text can have two sources)
        by_prompt[id(it)].append(k)
    pairs, targets = [], []
    for ks in by_prompt.values():
        for i in range(len(ks)):
            for j in range(i + 1, len(ks)):
                a, b = (ks[i], ks[j]) if rng.random() < 0.5 else (ks[j], ks[i])
                sa, sb = Sample.from_spec(images[a], items[a]), Sample.from_spec(images[b], items[b])
                if np.array_equal(sa.image, sb.image):
                    continue
                pairs.append((sa, sb, names[a], names[b]))
                targets.append(pair_target(sa, sb))
    judge = PairwiseLocalJudge(judge_path, batch_size=64, verdicts=verdict_source)
    judge.compare([(p[0], p[1]) for p in pairs[:8]])  # load and warm up outside the timing
    t0 = time.perf_counter()
    verdicts = judge.compare([(p[0], p[1]) for p in pairs])
    seconds = time.perf_counter() - t0
    right = [v.winner == t.winner for v, t in zip(verdicts, targets)]
    decisive = [r for r, t in zip(right, targets) if t.passed[0] != t.passed[1]]
    readings = [read_pairwise(v.rationale) for v in verdicts]
    wrong_examples = [{"models": [p[2], p[3]], "prompt": p[0].prompt, "answer": v.rationale, "target": t.text}
                      for p, v, t in zip(pairs, verdicts, targets) if v.winner != t.winner and t.passed[0] != t.passed[1]][:3]
    return {
        "verdicts": verdict_source, "pairs": len(pairs), "accuracy": float(np.mean(right)), "decisive_pairs": len(decisive),
        "decisive_accuracy": float(np.mean(decisive)) if decisive else None,
        "unreadable": float(np.mean([v.winner is None for v in verdicts])),
        "winner_follows_verdicts": float(np.mean([bool(r.consistent) for r in readings])),
        "picks_a": float(np.mean([v.winner == "A" for v in verdicts])),
        "pairs_per_s": len(pairs) / seconds,
        "wrong_on_decisive": wrong_examples,
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--judge", default=str(ROOT / "data" / "models" / "shapes-judge"), help="the judge's model folder")
    ap.add_argument("--models", nargs="*", default=MODELS, help="bundled image models to sample")
    ap.add_argument("--limit", type=int, default=None, help="test prompts per task (default all 250)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the first prompt's sample")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    ap.add_argument("--out", default=str(RESULTS), help="where to write the JSON")
    ap.add_argument("--no-pairwise", action="store_true", help="skip the pairwise measurements")
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    judge_path = Path(args.judge)
    manifest = json.loads((judge_path / "manifest.json").read_text())
    trained_on = json.loads((judge_path / "training_texts.json").read_text())
    result: dict[str, Any] = {
        "judge": str(judge_path.relative_to(ROOT) if judge_path.is_relative_to(ROOT) else judge_path),
        "parameters": manifest.get("parameters"),
        "size_mb": sum(f.stat().st_size for f in judge_path.rglob("*") if f.is_file()) / 1e6,
        "train_minutes": manifest.get("train_minutes"),
        "step": manifest.get("step"),
        "threads": args.threads,
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "load_before": os.getloadavg(),
        "targets": TARGETS,
        "tasks": {},
    }
    from qwenrl.world.prompt_sets import load_prompt_set

    for task in ("t2i", "edit"):
        test_texts = {it.text for it in load_prompt_set(task, "test")}
        leaked = sorted(test_texts & set(trained_on.get(task, [])))
        items, names, images = sample_models(task, args.models, args.limit, args.seed)
        out = measure(task, items, names, images, judge_path)
        out["expected_score"] = measure_expected(task, items, images, judge_path)
        if not args.no_pairwise and (judge_path / "rubrics" / "format_pairwise.txt").is_file():
            out["pairwise"] = measure_pairwise(task, items, names, images, judge_path, args.seed)
            pw = out["pairwise"]
            if out["reader"] is not None:
                out["pairwise_rules"] = measure_pairwise(task, items, names, images, judge_path, args.seed, verdict_source="rules")
            for key in ("pairwise", "pairwise_rules"):
                if key in out:
                    pw = out[key]
                    print(f"{task} {key}: decisive {pw['decisive_accuracy']:.1%} of {pw['decisive_pairs']}, all {pw['accuracy']:.1%} "
                          f"of {pw['pairs']}, unreadable {pw['unreadable']:.1%}, {pw['pairs_per_s']:.1f} pairs/s")
        out["test_prompts_in_training_data"] = len(leaked)
        result["tasks"][task] = out
        print(f"{task}: agreement {out['agreement']:.1%} (checker passes {out['checker_pass_rate']:.1%}, judge "
              f"{out['judge_pass_rate']:.1%}), parsed {out['parsed']:.1%}, Spearman {out['spearman_vs_soft']}, "
              f"requirements {out['requirements_match_checker']:.1%}, seen facts {out['seen_matches_parser']:.1%} (agreement {out['agreement_when_seen_right']} when right, "
              f"{out['agreement_when_seen_wrong']} when wrong), verdicts {out['verdicts_match_checker']:.1%}, "
              f"{out['samples_per_s']:.1f} samples/s, confusion {out['confusion']}, test prompts in training data {len(leaked)}")
        if out["reader"] is not None:
            rd = out["reader"]
            print(f"{task} reader (rules on its reading): agreement {rd['agreement']:.1%}, unreadable {rd['unreadable']:.1%}, "
                  f"disagreements by what it misread {rd['disagreements_by_misread']}")
        sr = out["shapes_read"]
        if sr["n"]:
            print(f"{task} shapes read right: {sr['right']:.1%} of {sr['n']} objects; by size {sr['by_size']}; by shape {sr['by_shape']}")
    result["load_after"] = os.getloadavg()
    tasks = result["tasks"]
    result["meets"] = {
        "t2i_agreement": tasks["t2i"]["agreement"] >= TARGETS["agreement"],
        "edit_agreement": tasks["edit"]["agreement"] >= TARGETS["agreement"],
        "seen": min(t["seen_matches_parser"] for t in tasks.values()) >= TARGETS["seen"],
        "pair_decisive": all(t.get("pairwise", {}).get("decisive_accuracy", 0.0) >= TARGETS["pair_decisive"] for t in tasks.values()),
        "reader_agreement": all((t["reader"] or {}).get("agreement", 0.0) >= TARGETS["agreement"] for t in tasks.values()),
        "reader_pair_decisive": all(t.get("pairwise_rules", {}).get("decisive_accuracy", 0.0) >= TARGETS["pair_decisive"]
                                    for t in tasks.values()),
        "parsed": min(t["parsed"] for t in result["tasks"].values()) >= TARGETS["parsed"],
        "t2i_samples_per_s": result["tasks"]["t2i"]["samples_per_s"] >= TARGETS["t2i_samples_per_s"],
        "size_mb": result["size_mb"] <= TARGETS["size_mb"],
        "train_minutes": (result["train_minutes"] or float("inf")) <= TARGETS["train_minutes"],
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(json.dumps(result["meets"]), f"-> {args.out}")


if __name__ == "__main__":
    main()
