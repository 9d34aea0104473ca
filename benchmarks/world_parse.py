"""Exact-parse rate of the Shapes-world parser on clean and on noisy renders.

Scenes come from every grammar family: text-to-image scenes (``scene_for_prompt``) and
the source and target scenes of edit tasks. A parse is exact when the background, the
multiset of (shape, colour, size) and every centroid (within 1 px) match the scene.
Noisy renders: 1-px edge jitter, three random specks and Gaussian noise of sigma 20
(``qwenrl.world.parse.noisy_render``). The target on clean renders is >= 99.5%.

    python benchmarks/world_parse.py [--per-family 400] [--seed 0]

Prints a table and writes benchmarks/results/world_parse.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections import Counter
from pathlib import Path

import numpy as np

from qwenrl.world.grammar import EDIT_FAMILIES, T2I_FAMILIES, sample_edit, sample_t2i_prompt, scene_for_prompt
from qwenrl.world.parse import noisy_render, parse, parse_errors
from qwenrl.world.scene import Scene, render

RESULTS = Path(__file__).resolve().parent / "results" / "world_parse.json"
TARGET_CLEAN = 0.995


def family_scenes(per_family: int, rng: np.random.Generator) -> dict[str, list[Scene]]:
    """``per_family`` scenes for each family (edit families: half sources, half targets)."""
    scenes: dict[str, list[Scene]] = {}
    for f in T2I_FAMILIES:
        scenes[f"t2i/{f}"] = [scene_for_prompt(sample_t2i_prompt(rng, f), rng) for _ in range(per_family)]
    for f in EDIT_FAMILIES:
        tasks = [sample_edit(rng, family=f) for _ in range(per_family // 2)]
        scenes[f"edit/{f}"] = [t.source for t in tasks] + [t.target for t in tasks]
    return scenes


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--per-family", type=int, default=400, help="scenes per grammar family")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)

    rng = np.random.default_rng(args.seed)
    scenes = family_scenes(args.per_family, rng)
    families: dict[str, dict] = {}
    clean_errors: Counter[str] = Counter()
    noisy_errors: Counter[str] = Counter()
    n_total = n_clean = n_noisy = 0
    parse_seconds = 0.0
    for name, group in scenes.items():
        ok_clean = ok_noisy = 0
        for scene in group:
            clean_img, noisy_img = render(scene), noisy_render(scene, rng)
            t0 = time.perf_counter()
            parsed_clean, parsed_noisy = parse(clean_img), parse(noisy_img)
            parse_seconds += time.perf_counter() - t0
            e_clean, e_noisy = parse_errors(parsed_clean, scene), parse_errors(parsed_noisy, scene)
            ok_clean += not e_clean
            ok_noisy += not e_noisy
            clean_errors.update(_kind(e) for e in e_clean)
            noisy_errors.update(_kind(e) for e in e_noisy)
        families[name] = {"n": len(group), "clean": ok_clean / len(group), "noisy": ok_noisy / len(group)}
        n_total += len(group)
        n_clean += ok_clean
        n_noisy += ok_noisy

    result = {
        "benchmark": "world_parse",
        "n_scenes": n_total,
        "clean_exact_rate": n_clean / n_total,
        "noisy_exact_rate": n_noisy / n_total,
        "target_clean": TARGET_CLEAN,
        "meets_target": n_clean / n_total >= TARGET_CLEAN,
        "families": families,
        "noise": {"sigma": 20.0, "n_specks": 3, "edge_jitter_px": 1, "edge_jitter_probability": 0.25},
        "clean_error_kinds": dict(clean_errors.most_common()),
        "noisy_error_kinds": dict(noisy_errors.most_common(10)),
        "parse_ms_per_image": 1000 * parse_seconds / (2 * n_total),
        "seed": args.seed,
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
    }
    print(f"{'family':24s} {'n':>5s} {'clean':>8s} {'noisy':>8s}")
    for name, r in families.items():
        print(f"{name:24s} {r['n']:5d} {r['clean']:8.2%} {r['noisy']:8.2%}")
    print(f"{'overall':24s} {n_total:5d} {result['clean_exact_rate']:8.2%} {result['noisy_exact_rate']:8.2%}")
    print(f"target on clean renders {TARGET_CLEAN:.1%}: {'met' if result['meets_target'] else 'NOT met'}")
    print(f"parse: {result['parse_ms_per_image']:.2f} ms per image")
    print("most common errors on noisy renders:", dict(noisy_errors.most_common(5)))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return result


def _kind(error: str) -> str:
    """An error message without its numbers and colours, to count kinds of error."""
    if "centroid" in error:
        return "centroid off by more than 1 px"
    if error.startswith("background"):
        return "wrong background"
    # "{found} {size} {colour} {shape}(s) found, expected {expected}"
    words = error.split()
    found, size, shape, expected = int(words[0]), words[1], words[3].removesuffix("(s)"), int(words[-1])
    return f"{size} {shape} {'missed' if found < expected else 'spurious'}"


if __name__ == "__main__":
    main()
