"""How fast K-way and pairwise battles learn: the simulation behind docs/arena.md's table.

Two settings of simulated arenas (``arena.simulate``; the oracle judge votes, 10% of votes at
random), each with pairwise and 4-image battles:

- the four bundled models (their text-to-image pass rates per family, as measured on the test
  prompts) and four synthetic models with known pass rates: 8 models, as ``qwenrl arena
  simulate`` runs by default;
- eight synthetic models with evenly spaced pass rates (0.1 to 0.8).

Writes ``benchmarks/results/arena_simulation.{json,md}`` and ``docs/images/arena_simulation.png``.
No timing is reported, so it needs no CPU lock.

Run: ``python benchmarks/arena_simulation.py`` (``--arenas 4`` for a quick look).
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.charts import save_png, simulation_figure  # noqa: E402
from app.cli import simulation_table  # noqa: E402
from arena.simulate import SimModel, learning_curves, synthetic_models  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arenas", type=int, default=20)
    parser.add_argument("--votes", type=int, default=3000)
    parser.add_argument("--noise", type=float, default=0.1)
    parser.add_argument("--tau", type=float, default=0.9)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--png", type=Path, default=ROOT / "docs" / "images" / "arena_simulation.png")
    args = parser.parse_args()

    table = json.loads((ROOT / "benchmarks" / "results" / "seed_recipe.json").read_text())["table"]
    bundled = [SimModel(name, rows["t2i/test"]["families"]) for name, rows in table.items() if "t2i/test" in rows]
    with open(ROOT / "data" / "prompts" / "t2i_test.jsonl") as handle:
        families = collections.Counter(json.loads(line)["family"] for line in handle if line.strip())
    settings = {
        "4 bundled + 4 synthetic": (bundled + synthetic_models([0.15, 0.55, 0.65, 0.8]), families),
        "8 synthetic, evenly spaced": (synthetic_models([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]), {"*": 1.0}),
    }
    results, curves_by_setting, markdown = {}, {}, ["# Simulated arenas: K-way against pairwise battles", ""]
    markdown.append(f"The oracle judge votes ({args.noise:.0%} of votes at random); {args.arenas} simulated arenas "
                    f"per line, {args.votes} votes each; Bradley–Terry with vote-level sandwich intervals; matchmaking "
                    "by information. Run: `python benchmarks/arena_simulation.py`.")
    for name, (models, mix) in settings.items():
        print(f"{name}…", file=sys.stderr)
        curves = learning_curves(models, mix, ks=(2, 4), votes=args.votes, noise=args.noise, arenas=args.arenas)
        curves_by_setting[name] = curves
        results[name] = {"models": {m.name: round(m.overall(mix), 4) for m in models},
                         "votes_to_tau": {c.k: c.votes_to_reach(args.tau) for c in curves},
                         "curves": [c.__dict__ for c in curves]}
        markdown += ["", f"## {name}", "", simulation_table(models, mix, curves, args.tau)]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "arena_simulation.json").write_text(json.dumps(
        {"noise": args.noise, "arenas": args.arenas, "votes": args.votes, "tau": args.tau, "settings": results},
        indent=2) + "\n")
    (args.out / "arena_simulation.md").write_text("\n".join(markdown) + "\n")
    save_png(simulation_figure(curves_by_setting, args.tau), args.png)
    print("\n".join(markdown))


if __name__ == "__main__":
    main()
