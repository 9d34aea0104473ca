"""How much the looks of a model's *passing* edits vary: the headroom for an editing reward that
ranks correct edits.

For each model (``LABEL=CHECKPOINT``), ``--samples-per-prompt`` images per prompt of the editing
test split, sampled as the model's manifest says; each image gets the strict checker's pass and
``shapes_fidelity`` (how cleanly each object matches its shape's template and size). Over the
passing images of one prompt it reports:

* pairs: the share of pairs of passing images whose fidelity differs by more than 0.05 and by more
  than ``--gap`` (0.1: with fidelity weighted 0.2 in ``shapes_edit.yaml``, the gap the human-like
  judge's 0.02 margin resolves);
* best of k: the best passing image's fidelity minus the mean of the passing images, per prompt
  (what a group-relative method could pull the policy towards), its mean, median and the share of
  prompts where it exceeds 0.05;
* the share of passing images below 0.9 fidelity.

``--grid`` writes a picture of the prompts with the widest spread among their passing images
(each row a prompt, the source first), for a person to judge whether the spread is visible.
Figures go to ``--out`` (``.json`` and ``.md``).

    python benchmarks/edit_looks.py base=data/models/shapes-base --grid docs/images/edit_looks.png
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.arena_ceiling import pass_pair_gaps, sample_and_score  # noqa: E402
from benchmarks.report import checkpoint_specs, write_report  # noqa: E402


def best_over_mean(passed: np.ndarray, fidelity: np.ndarray) -> np.ndarray:
    """Per prompt with at least two passing images: the best one's fidelity minus their mean."""
    return np.asarray([f[ok].max() - f[ok].mean() for ok, f in zip(passed, fidelity) if ok.sum() >= 2], dtype=float)


def looks_summary(passed: np.ndarray, fidelity: np.ndarray, gap: float) -> dict[str, float]:
    gaps, best = pass_pair_gaps(passed, fidelity), best_over_mean(passed, fidelity)
    return {
        "pass_rate": float(passed.mean()),
        "fidelity_of_passes": float(fidelity[passed].mean()),
        "passes_below_0.9": float((fidelity[passed] < 0.9).mean()),
        "pairs": int(len(gaps)),
        "pairs_over_0.05": float((gaps > 0.05).mean()) if len(gaps) else float("nan"),
        "pairs_over_gap": float((gaps > gap).mean()) if len(gaps) else float("nan"),
        "prompts": int(len(best)),
        "best_over_mean": float(best.mean()) if len(best) else float("nan"),
        "best_over_mean_median": float(np.median(best)) if len(best) else float("nan"),
        "prompts_best_over_0.05": float((best > 0.05).mean()) if len(best) else float("nan"),
    }


def sample_and_judge(path: str, samples: int, limit: int | None) -> dict[str, np.ndarray]:
    """Images, sources, strict passes and fidelities, arrays with a leading (prompts, samples):
    the test split sampled as ``qwenrl bench`` samples it (seeds 0, 1, …; the manifest's settings)."""
    from qwenrl.rewards import build_judge
    from qwenrl.world.scene import render

    judged = sample_and_score(Path(path), "edit", samples, limit, build_judge("shapes_fidelity"))
    return {"images": judged["images"], "sources": np.stack([render(p.source) for p in judged["prompts"]]),
            "passed": judged["passed"], "fidelity": judged["score"]}


def widest_grid(judged: dict[str, np.ndarray], rows: int) -> np.ndarray | None:
    """The ``rows`` prompts whose passing images differ most in fidelity, every image passing:
    each row the source, then the samples; None when no prompt has every image passing."""
    from qwenrl.imageio import grid

    passed, fidelity = judged["passed"], judged["fidelity"]
    whole = [i for i in range(len(passed)) if passed[i].all()]
    order = sorted(whole, key=lambda i: fidelity[i].max() - fidelity[i].min(), reverse=True)[:rows]
    if not order:
        return None
    tiles = [im for i in order for im in (judged["sources"][i], *judged["images"][i])]
    return grid(np.asarray(tiles), cols=1 + passed.shape[1], scale=4)


def markdown(result: dict) -> str:
    lines = [f"Passing edits of the test split, {result['samples_per_prompt']} images per prompt, fidelity from "
             "`shapes_fidelity`.", "",
             f"| model | pass rate | fidelity of passes | passes below 0.9 | pairs of passes | gap > 0.05 | gap > {result['gap']} | "
             "best of the passes − their mean (mean / median) | prompts where it is > 0.05 |",
             "|---|---|---|---|---|---|---|---|---|"]
    for label, s in result["models"].items():
        lines.append(f"| {label} | {100 * s['pass_rate']:.1f}% | {s['fidelity_of_passes']:.3f} | {100 * s['passes_below_0.9']:.1f}% | "
                     f"{s['pairs']} | {100 * s['pairs_over_0.05']:.1f}% | {100 * s['pairs_over_gap']:.1f}% | "
                     f"{s['best_over_mean']:.3f} / {s['best_over_mean_median']:.3f} | {100 * s['prompts_best_over_0.05']:.1f}% |")
    lines += ["", f"{result['seconds']:.0f} s."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+", help="LABEL=CHECKPOINT")
    ap.add_argument("--samples-per-prompt", type=int, default=4, help="at least 2: pairs need two images")
    ap.add_argument("--limit", type=int, default=None, help="an evenly spaced subset of the test prompts")
    ap.add_argument("--gap", type=float, default=0.1)
    ap.add_argument("--grid", type=Path, help="write the first model's widest-spread prompts there (PNG)")
    ap.add_argument("--grid-rows", type=int, default=8)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "edit_looks.json")
    args = ap.parse_args(argv)
    if args.samples_per_prompt < 2:
        ap.error("--samples-per-prompt must be at least 2")
    specs = checkpoint_specs(args.models)
    import torch

    from qwenrl.imageio import save_png

    torch.set_num_threads(2)
    t0 = time.perf_counter()
    result: dict = {"samples_per_prompt": args.samples_per_prompt, "gap": args.gap, "models": {}}
    for k, (label, path) in enumerate(specs):
        judged = sample_and_judge(path, args.samples_per_prompt, args.limit)
        result["models"][label] = {"path": path, **looks_summary(judged["passed"], judged["fidelity"], args.gap)}
        if k == 0 and args.grid:
            picture = widest_grid(judged, args.grid_rows)
            if picture is None:
                print(f"no grid: no prompt has all {args.samples_per_prompt} of {label}'s images passing", file=sys.stderr)
            else:
                save_png(picture, args.grid)
                result["grid"] = str(args.grid)
    result["seconds"] = time.perf_counter() - t0
    write_report(args.out, result, markdown(result))
    return result


if __name__ == "__main__":
    main()
