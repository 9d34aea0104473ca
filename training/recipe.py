"""The seed's recipe on the Shapes world, as one function.

base → GRPO text-to-image specialist; base → GRPO editing specialist; both → a unified student
by on-policy distillation; then every model is benched on the ``test`` and ``compositional``
splits of both tasks. The three trained models are published next to the base
(``data/models/shapes-grpo-t2i``, ``shapes-grpo-edit``, ``shapes-distilled``) with manifests
that record their lineage, and the results go to ``OUT/results.{md,json}``.

    qwenrl experiment seed-recipe --out runs/seed-recipe

Each stage is a run folder under OUT, so rerunning the command resumes where it stopped.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from qwenrl.metrics import read_metrics
from training.common import REPO_ROOT, log, resolve_path

CONFIGS = REPO_ROOT / "training" / "configs"
REWARDS = {"t2i": CONFIGS / "rewards" / "shapes_t2i.yaml", "edit": CONFIGS / "rewards" / "shapes_edit.yaml"}
#: the rewards the GRPO stages train against: the shipped configs' own (the strict checker with
#: the programmatic parts logged), the learned judge's composites (``--reward learned``), or the
#: reader's (``--reward reader``: the positions judge reads, the world's rules decide); the bench
#: always measures with the programmatic rewards above and the strict checker
TRAIN_REWARDS = {"config": None,
                 "learned": {t: CONFIGS / "rewards" / f"shapes_{t}_learned.yaml" for t in ("t2i", "edit")},
                 "reader": {t: CONFIGS / "rewards" / f"shapes_{t}_reader.yaml" for t in ("t2i", "edit")}}
#: the KL anchor of a specialist trained against a learned judge (measured on the first base, where the
#: checker-trained ones ran without; the text-to-image config has its own 0.03 since round seven)
LEARNED_BETA = 0.01
#: publish keys copied from a run checkpoint's manifest to the published model's
LINEAGE_KEYS = ("parent", "task", "step", "trainer", "teachers", "training", "sampling", "absorbed_guidance")
#: each specialist's accuracy on its own task's test split, and on its compositional split (None: no target)
TARGETS = {"t2i": (0.60, 0.50), "edit": (0.88, None)}
#: per-family floors of a specialist on its own task (family → accuracy)
FAMILY_TARGETS = {"edit": {"move": 0.60}}
FAMILY_TOLERANCE = 0.05  # no family of a specialist's task more than this below the base
DISTILL_TOLERANCE = 0.02  # the student within this of each specialist on the specialist's task
FORGET_TOLERANCE = 0.02  # each specialist within this of the base on the other task
TIME_BUDGET_S = 60 * 60  # the whole recipe
BENCH_SAMPLES = 4  # samples per test prompt in the bench: families of ~36 prompts are too noisy with one
PASS_K_SEED = 100_000  # pass@k samples start far from the bench's seeds (0, 1, …), so they are new draws


def publish(checkpoint: str | Path, dest: Path, name: str) -> Path:
    """Copy a run's checkpoint to ``dest`` under a stable ``name`` (lineage rewritten to match)."""
    from qwenrl.models import load_policy

    policy = load_policy(checkpoint)
    manifest = policy.manifest
    lineage = list(manifest.get("lineage") or [])[:-1] + [name]
    extra = {k: manifest[k] for k in LINEAGE_KEYS if k in manifest}
    return policy.save(dest, name=name, lineage=lineage, run_checkpoint=manifest.get("name"), **extra)


def bench(model: str | Path, splits: tuple[str, ...], limit: int | None, pass_k_samples: int = 1,
          samples_per_prompt: int = 1) -> dict[str, Any]:
    """Strict accuracy (per family and overall), composite reward and aesthetics of one model on
    both tasks and ``splits``, with the model's own sampling settings (a student that absorbed
    guidance samples without it). The ``test`` split takes ``samples_per_prompt`` images per
    prompt (seeds 0, 1, …; accuracy is then the mean pass rate), the other splits one. With
    ``pass_k_samples`` n > 1, each task's ``test`` entry also gets ``pass_at_k`` (k = 1, 2, 4, …, n,
    from n further samples per prompt) and their mean ``pass_rate``."""
    from qwenrl.evaluation import evaluate
    from qwenrl.models import load_policy
    from qwenrl.rewards import Sample, load_reward
    from qwenrl.world.prompt_sets import load_prompt_set

    policy = load_policy(model)
    out: dict[str, Any] = {}
    for task in ("t2i", "edit"):
        reward = load_reward(REWARDS[task])
        for split in splits:
            n = samples_per_prompt if split == "test" else 1
            res = evaluate(policy, task, split, limit=limit, keep_images=True, samples_per_prompt=n)
            items = [it for it in load_prompt_set(task, split, limit=limit) for _ in range(n)]
            judged = reward([Sample.from_spec(img, it) for img, it in zip(res["images"], items)])
            scores = [j.score for j in judged if j.score is not None]
            aesthetics = [j.parts["aesthetics"] for j in judged if "aesthetics" in j.parts]
            out[f"{task}/{split}"] = {
                "accuracy": res["overall"],
                "families": res["families"],
                "reward": float(np.mean(scores)) if scores else None,
                "aesthetics": float(np.mean(aesthetics)) if aesthetics else None,
                "n_images": res["n_images"],
                "samples_per_prompt": n,
                "guidance_scale": res["guidance_scale"],
            }
    if pass_k_samples > 1 and "test" in splits:
        for task, entry in bench_pass_at_k(policy, limit, pass_k_samples).items():
            out[f"{task}/test"].update(entry)
    return out


def bench_pass_at_k(model: Any, limit: int | None, samples_per_prompt: int) -> dict[str, dict[str, Any]]:
    """pass@k (k = 1, 2, 4, …, n) and the mean pass rate of a model (a path or a loaded policy) on
    both tasks' test splits, from ``samples_per_prompt`` new samples per prompt."""
    from qwenrl.evaluation import evaluate
    from qwenrl.models import load_policy

    policy = load_policy(model) if isinstance(model, (str, Path)) else model
    out = {}
    for task in ("t2i", "edit"):
        many = evaluate(policy, task, "test", limit=limit, samples_per_prompt=samples_per_prompt, seed=PASS_K_SEED)
        out[task] = {"pass_at_k": many["pass_at_k"], "pass_rate": many["overall"]}
    return out


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f}%"


def _num(x: float | None) -> str:
    return "–" if x is None else f"{x:.3f}"


def _pass_k(entry: dict[str, Any]) -> str:
    pk = entry.get("pass_at_k")
    return "–" if not pk else _pct(pk["overall"][str(pk["n"])])


def results_markdown(table: dict[str, dict[str, Any]], targets: list[dict[str, Any]], command: str,
                     timing: dict[str, dict[str, Any]] | None = None) -> str:
    n = next((r["t2i/test"]["pass_at_k"]["n"] for r in table.values() if "pass_at_k" in r["t2i/test"]), None)
    pk_head = f" pass@{n} (t2i / edit) |" if n else ""
    lines = [
        "| model | t2i test accuracy | edit test accuracy |" + pk_head + " composite reward (t2i / edit) | t2i compositional | edit compositional | aesthetics (t2i / edit) |",
        "|---|---|---|" + ("---|" if n else "") + "---|---|---|---|",
    ]
    for name, r in table.items():
        pk = f" {_pass_k(r['t2i/test'])} / {_pass_k(r['edit/test'])} |" if n else ""
        lines.append(
            f"| {name} | {_pct(r['t2i/test']['accuracy'])} | {_pct(r['edit/test']['accuracy'])} |{pk} "
            f"{_num(r['t2i/test']['reward'])} / {_num(r['edit/test']['reward'])} | "
            f"{_pct(r.get('t2i/compositional', {}).get('accuracy'))} | {_pct(r.get('edit/compositional', {}).get('accuracy'))} | "
            f"{_num(r['t2i/test']['aesthetics'])} / {_num(r['edit/test']['aesthetics'])} |"
        )
    lines += ["", *family_table(table, "edit"), "", *family_table(table, "t2i")]
    if timing:
        lines += ["", *timing_table(timing)]
    lines += ["", "Targets (test split):", ""]
    lines += [f"- {'met' if t['met'] else 'NOT met'}: {t['target']} (measured {t['measured']})" for t in targets]
    lines += ["", f"Regenerate: `{command}`"]
    return "\n".join(lines) + "\n"


def family_table(table: dict[str, dict[str, Any]], task: str) -> list[str]:
    """Markdown rows: each model's test accuracy per family of ``task``, and its sampling guidance."""
    families = sorted({f for r in table.values() for f in r[f"{task}/test"]["families"]})
    n = next(iter(table.values()))[f"{task}/test"].get("samples_per_prompt", 1)
    lines = [f"{task} test accuracy per family ({n} sample{'s' if n > 1 else ''} per prompt):", "",
             "| model | guidance | " + " | ".join(families) + " | overall |", "|---|---|" + "---|" * (len(families) + 1)]
    for name, r in table.items():
        e = r[f"{task}/test"]
        g = e.get("guidance_scale")
        lines.append(f"| {name} | {'–' if g is None else f'{g:g}'} | " + " | ".join(_pct(e["families"].get(f)) for f in families)
                     + f" | {_pct(e['accuracy'])} |")
    return lines


def timing_table(timing: dict[str, dict[str, Any]]) -> list[str]:
    """Markdown rows: each stage's wall time, steps, median step time and the machine's load."""
    lines = ["| stage | minutes | steps | median s/step | load average (mean / max) |", "|---|---|---|---|---|"]
    for stage, t in timing.items():
        med = t.get("median_step_seconds")
        load = t.get("load")
        load_text = "–" if not load else f"{load['mean']:.2f} / {load['max']:.2f}"
        if t.get("earlier_calls"):
            load_text = "earlier call (steps' own time)"
        lines.append(f"| {stage} | {t['seconds'] / 60:.1f} | {t.get('steps', '–')} | {'–' if med is None else f'{med:.1f}'} | {load_text} |")
    return lines


def check_targets(table: dict[str, dict[str, Any]], seconds: dict[str, float] | None = None) -> list[dict[str, Any]]:
    """The recipe's targets on the test splits (strict checker): accuracy of each specialist on its
    task (and compositional split), no forgetting of the other task, aesthetics not below the
    base's, the student close to each specialist, and the wall time."""
    base = table["shapes-base"]
    out = []
    for task, model, other in (("t2i", "shapes-grpo-t2i", "edit"), ("edit", "shapes-grpo-edit", "t2i")):
        acc, comp = TARGETS[task]
        a, b = table[model][f"{task}/test"]["accuracy"], base[f"{task}/test"]["accuracy"]
        out.append({"target": f"{model} {task} accuracy >= {acc:.0%}", "measured": f"{a:.1%} (base {b:.1%})", "met": a >= acc})
        if comp is not None and f"{task}/compositional" in table[model]:
            c = table[model][f"{task}/compositional"]["accuracy"]
            out.append({"target": f"{model} {task} compositional accuracy >= {comp:.0%}",
                        "measured": f"{c:.1%} (base {base[f'{task}/compositional']['accuracy']:.1%})", "met": c >= comp})
        fams, base_fams = table[model][f"{task}/test"]["families"], base[f"{task}/test"]["families"]
        for family, floor in FAMILY_TARGETS.get(task, {}).items():
            if family in fams:
                out.append({"target": f"{model} {task} {family} >= {floor:.0%}", "measured": f"{fams[family]:.1%} (base {base_fams.get(family, 0):.1%})",
                            "met": fams[family] >= floor})
        behind = {f: base_fams[f] - fams[f] for f in fams if f in base_fams}
        worst = max(behind, key=behind.get) if behind else None
        if worst is not None:
            out.append({"target": f"{model}: no {task} family more than {FAMILY_TOLERANCE:.0%} below the base",
                        "measured": f"worst {worst} {fams[worst]:.1%} vs {base_fams[worst]:.1%}", "met": behind[worst] <= FAMILY_TOLERANCE})
        o, ob = table[model][f"{other}/test"]["accuracy"], base[f"{other}/test"]["accuracy"]
        out.append({"target": f"{model} within {FORGET_TOLERANCE:.0%} of the base on {other} (no forgetting)",
                    "measured": f"{o:.1%} vs {ob:.1%}", "met": o >= ob - FORGET_TOLERANCE})
        ae, aeb = table[model][f"{task}/test"]["aesthetics"], base[f"{task}/test"]["aesthetics"]
        if ae is not None and aeb is not None:
            out.append({"target": f"{model} {task} aesthetics not below the base's", "measured": f"{ae:.3f} vs {aeb:.3f}", "met": ae >= aeb})
        d = table["shapes-distilled"][f"{task}/test"]["accuracy"]
        out.append({"target": f"shapes-distilled within {DISTILL_TOLERANCE:.0%} of {model} on {task}",
                    "measured": f"{d:.1%} vs {a:.1%}", "met": d >= a - DISTILL_TOLERANCE})
    if seconds and "total" in seconds:
        out.append({"target": f"whole recipe <= {TIME_BUDGET_S // 60} minutes", "measured": f"{seconds['total'] / 60:.1f} min",
                    "met": seconds["total"] <= TIME_BUDGET_S})
    return out


class LoadMonitor:
    """Samples the machine's 1-minute load average every ``every`` seconds in a thread, so that a
    stage's timing is reported with how busy the machine was (a crowded run shows)."""

    def __init__(self, every: float = 15.0) -> None:
        self.every, self.samples = every, [os.getloadavg()[0]]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self.samples.append(os.getloadavg()[0])

    def stop(self) -> dict[str, float]:
        self._stop.set()
        self._thread.join()
        self.samples.append(os.getloadavg()[0])
        return {"mean": float(np.mean(self.samples)), "max": float(np.max(self.samples)), "samples": len(self.samples)}


RECORDED = REPO_ROOT / "benchmarks" / "results" / "seed_recipe.json"
STAGES = ("grpo_t2i", "grpo_edit", "distill", "bench")


def recorded_seconds(path: Path = RECORDED) -> dict[str, float]:
    """Each stage's wall time in the recorded run of the recipe (benchmarks/results/seed_recipe.json)."""
    try:
        seconds = json.loads(Path(path).read_text())["seconds"]
        return {k: float(seconds[k]) for k in STAGES if k in seconds}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def time_left_estimate(done: dict[str, float], recorded: dict[str, float]) -> str:
    """``about 35m10s left`` for the stages not run yet: their recorded times, scaled by how this
    run's finished stages compare with the recorded ones (another machine, other overrides)."""
    from qwenrl.progress import duration

    left = [s for s in STAGES if s not in done]
    if not recorded or not left or any(s not in recorded for s in left):
        return "no recorded run to estimate the time left from"
    finished = [s for s in STAGES if s in done and s in recorded]
    pace = sum(done[s] for s in finished) / sum(recorded[s] for s in finished) if finished else 1.0
    return f"about {duration(pace * sum(recorded[s] for s in left))} left for the recipe"


def stage_timing(seconds: float, load: dict[str, float], run: Path | None = None) -> dict[str, Any]:
    """A stage's time and load, with the step count and median step time from its run's metrics.
    A stage resumed or finished by an earlier call of the recipe counts the seconds its steps
    took in every call (``earlier_calls``); its load average is only that of this call."""
    out: dict[str, Any] = {"seconds": seconds, "load": load, "cpus": os.cpu_count()}
    metrics = run / "metrics.jsonl" if run is not None else None
    if metrics is not None and metrics.exists():
        steps = read_metrics(metrics)
        times = [r["charts/step_seconds"] for r in steps if r.get("charts/step_seconds")]
        if times:
            out.update(steps=len(times), median_step_seconds=float(np.median(times)))
            if sum(times) > seconds:
                out.update(seconds=float(sum(times)), earlier_calls=True)
    return out


def specialist_config(task: str, base: Path, reward: str, overrides: list[str]) -> Any:
    """The GRPO config of ``task``'s specialist: the shipped one, started from ``base``; with the
    learned reward, its composite and a KL anchor first, so that --t2i-set / --edit-set still win."""
    from training import grpo

    rewards = TRAIN_REWARDS[reward]
    learned = [f"reward={rewards[task]}", f"beta={LEARNED_BETA}"] if rewards else []
    return grpo.GRPOConfig.from_yaml(CONFIGS / f"shapes_grpo_{task}.yaml", learned + list(overrides), model=str(base))


def recipe_command(out: Path, reward: str, overrides: dict[str, list[str]], bench_limit: int | None, pass_k_samples: int,
                   bench_samples: int) -> str:
    """The command line that reruns a recipe with these settings."""
    return f"qwenrl experiment seed-recipe --out {out}" + (f" --reward {reward}" if reward != "config" else "") + "".join(
        f" --{stage}-set {item}" for stage in ("t2i", "edit", "distill") for item in overrides.get(stage, [])
    ) + (f" --bench-limit {bench_limit}" if bench_limit else "") + (f" --pass-k {pass_k_samples}" if pass_k_samples > 1 else "") + (
        f" --bench-samples {bench_samples}" if bench_samples != BENCH_SAMPLES else "")


def seed_recipe(
    out: str | Path = "runs/seed-recipe",
    base: str | Path = "data/models/shapes-base",
    models_dir: str | Path = "data/models",
    overrides: dict[str, list[str]] | None = None,
    bench_limit: int | None = None,
    splits: tuple[str, ...] = ("test", "compositional"),
    pass_k_samples: int = 1,
    bench_samples: int = BENCH_SAMPLES,
    reward: str = "config",
) -> dict[str, Any]:
    """Run the whole recipe; returns the results (also written to OUT/results.json and .md).
    ``reward``: ``config`` trains each specialist against its config's reward; ``learned``
    against the learned judge's composite, ``reader`` against the reader's (``TRAIN_REWARDS``), as
    the seed trains against its judges.
    ``bench_samples`` images per test prompt give the accuracy and per-family figures;
    ``pass_k_samples`` > 1 adds pass@k on the test splits (not counted in the recipe's wall
    time, which is that of training and the bench). Each stage records its wall time, median
    step time and the machine's load average."""
    from training import distill, grpo

    if reward not in TRAIN_REWARDS:  # config: each config's own reward; learned: the learned judge's, as the seed does
        raise ValueError(f"reward must be one of {sorted(TRAIN_REWARDS)}, got {reward!r}")
    out, models = Path(out), resolve_path(models_dir)
    base = resolve_path(base)
    overrides = overrides or {}
    seconds: dict[str, float] = {}
    timing: dict[str, dict[str, Any]] = {}
    published: dict[str, Path] = {}
    recorded = recorded_seconds()
    for k, task in enumerate(("t2i", "edit")):
        t0, load = time.perf_counter(), LoadMonitor()
        cfg = specialist_config(task, base, reward, overrides.get(task, []))
        log("recipe", f"stage {k + 1}/4, GRPO {task}: {cfg.steps} steps in {out / f'grpo-{task}'} "
                      f"({time_left_estimate(seconds, recorded)}; the trainer prints its own estimate each step)")
        result = grpo.train(cfg, out / f"grpo-{task}")
        published[task] = publish(result["checkpoint"], models / f"shapes-grpo-{task}", f"shapes-grpo-{task}")
        seconds[f"grpo_{task}"] = time.perf_counter() - t0
        timing[f"grpo_{task}"] = stage_timing(seconds[f"grpo_{task}"], load.stop(), out / f"grpo-{task}")
        seconds[f"grpo_{task}"] = timing[f"grpo_{task}"]["seconds"]

    t0, load = time.perf_counter(), LoadMonitor()
    # the student starts from the base, or from a published specialist when the config says student_from_teacher
    dcfg = distill.DistillConfig.from_yaml(CONFIGS / "shapes_distill.yaml", overrides.get("distill", []), student=str(base),
                                           teachers={t: str(p) for t, p in published.items()})
    log("recipe", f"stage 3/4, distillation: {dcfg.steps} steps in {out / 'distill'} ({time_left_estimate(seconds, recorded)})")
    result = distill.train(dcfg, out / "distill")
    publish(result["checkpoint"], models / "shapes-distilled", "shapes-distilled")
    seconds["distill"] = time.perf_counter() - t0
    timing["distill"] = stage_timing(seconds["distill"], load.stop(), out / "distill")
    seconds["distill"] = timing["distill"]["seconds"]

    t0, load = time.perf_counter(), LoadMonitor()
    table = {}
    names = ("shapes-base", "shapes-grpo-t2i", "shapes-grpo-edit", "shapes-distilled")
    log("recipe", f"stage 4/4, bench ({time_left_estimate(seconds, recorded)})")
    for k, name in enumerate(names):
        log("recipe", f"benching {name} ({k + 1}/{len(names)}, {bench_samples} sample(s) per test prompt)")
        table[name] = bench(base if name == "shapes-base" else models / name, splits, bench_limit, samples_per_prompt=bench_samples)
    seconds["bench"] = time.perf_counter() - t0
    timing["bench"] = stage_timing(seconds["bench"], load.stop())
    seconds["total"] = sum(seconds.values())
    if pass_k_samples > 1:
        t0 = time.perf_counter()
        for name in names:
            log("recipe", f"pass@{pass_k_samples} of {name}")
            for task, entry in bench_pass_at_k(base if name == "shapes-base" else models / name, bench_limit, pass_k_samples).items():
                table[name][f"{task}/test"].update(entry)
        seconds["pass_at_k"] = time.perf_counter() - t0

    targets = check_targets(table, seconds)
    command = recipe_command(out, reward, overrides, bench_limit, pass_k_samples, bench_samples)
    markdown = results_markdown(table, targets, command, timing)
    results = {"table": table, "targets": targets, "seconds": seconds, "timing": timing, "overrides": overrides, "bench_limit": bench_limit,
               "pass_k_samples": pass_k_samples, "bench_samples": bench_samples, "reward": reward, "markdown": markdown}
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2))
    (out / "results.md").write_text(markdown)
    log("recipe", f"done in {seconds['total'] / 60:.1f} min; results in {out / 'results.md'}")
    return results
