"""GenEval-style accuracy of a policy on a Shapes prompt set (the strict checker as judge)."""

from __future__ import annotations

import math
import sys
import time
from collections import defaultdict
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from .models.base import Policy
from .sampling import sample_images
from .world.check import check_image
from .world.grammar import EditTask
from .world.prompt_sets import load_prompt_set
from .world.scene import render


def policy_sampling_defaults(policy: Policy) -> dict[str, Any]:
    """Sampling settings a checkpoint recommends: its manifest's ``sampling`` (written by the
    trainers; a student that absorbed guidance says ``guidance_scale: 1.0`` there), else its
    model config's ``sampling``, with fallbacks (20 steps, no guidance)."""
    cfg = getattr(policy, "config", {}) or {}
    s = dict(cfg.get("sampling", {})) if isinstance(cfg, dict) else {}
    manifest = getattr(policy, "manifest", None) or {}
    if isinstance(manifest.get("sampling"), dict):
        s.update(manifest["sampling"])
    return {"num_steps": int(s.get("num_steps", 20)), "guidance_scale": float(s.get("guidance_scale", 1.0))}


def override_sampling(policy: Policy, **settings: Any) -> None:
    """Change the sampling settings ``policy`` recommends (``num_steps``, ``guidance_scale``), as
    a trainer does when it changes how its model should be sampled; the checkpoints it writes
    carry them in their manifest."""
    unknown = sorted(set(settings) - {"num_steps", "guidance_scale"})
    if unknown:
        raise ValueError(f"unknown sampling setting(s) {unknown}; use num_steps or guidance_scale")
    manifest = dict(getattr(policy, "manifest", None) or {})
    manifest["sampling"] = {**policy_sampling_defaults(policy), **settings}
    policy.manifest = manifest  # type: ignore[attr-defined]


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from ``n`` samples of which ``c`` passed: 1 − C(n−c, k) / C(n, k), the
    chance that at least one of ``k`` samples drawn without replacement passes (Chen et al., 2021)."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass@k needs 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def pass_k_values(n: int) -> list[int]:
    """The k reported for ``n`` samples per prompt: 1, 2, 4, … up to n, and n itself."""
    ks = [1 << i for i in range(n.bit_length()) if 1 << i <= n]
    return ks if ks[-1] == n else ks + [n]


def pass_at_k_table(passed_per_prompt: list[list[bool]], families: list[str]) -> dict[str, Any]:
    """pass@k for k in ``pass_k_values(n)``, averaged over prompts, overall and per family.
    ``passed_per_prompt[i]`` holds the n outcomes of prompt i (the same n for every prompt)."""
    if not passed_per_prompt:
        return {"n": 0, "overall": {}, "families": {}}
    n = len(passed_per_prompt[0])
    ks = pass_k_values(n)
    per_prompt = [[pass_at_k(n, sum(p), k) for k in ks] for p in passed_per_prompt]
    by_family: dict[str, list[list[float]]] = defaultdict(list)
    for fam, row in zip(families, per_prompt):
        by_family[fam].append(row)

    def mean(rows: list[list[float]]) -> dict[str, float]:
        return {str(k): float(v) for k, v in zip(ks, np.mean(rows, axis=0))}

    return {"n": n, "overall": mean(per_prompt), "families": {f: mean(r) for f, r in sorted(by_family.items())}}


def generate_for(
    policy: Policy,
    items: list,
    *,
    seeds: list[int],
    num_steps: int,
    guidance_scale: float,
    batch_size: int = 64,
    progress: bool = False,
    desc: str = "sampling",
) -> np.ndarray:
    """One image per (item, seed) pair, in order; edits are conditioned on their source render."""
    out = []
    # tqdm shows the time left; in a log (not a terminal) a line every 15 s rather than a redraw per batch
    bar = tqdm(total=len(items), desc=desc, disable=not progress, file=sys.stderr, unit="img",
               mininterval=0.1 if sys.stderr.isatty() else 15.0)
    for start in range(0, len(items), batch_size):
        chunk = items[start : start + batch_size]
        texts = [it.text for it in chunk]
        sources = np.stack([render(it.source) for it in chunk]) if isinstance(chunk[0], EditTask) else None
        # one seed per batch keeps batches deterministic; the seed list makes batches distinct
        out.append(sample_images(policy, texts, sources, num_steps=num_steps, guidance_scale=guidance_scale, seed=seeds[start]))
        bar.update(len(chunk))
    bar.close()
    return np.concatenate(out) if out else np.zeros((0,), dtype=np.uint8)


def evaluate(
    policy: Policy,
    task: str,
    split: str = "test",
    *,
    samples_per_prompt: int = 1,
    num_steps: int | None = None,
    guidance_scale: float | None = None,
    seed: int = 0,
    batch_size: int = 64,
    limit: int | None = None,
    progress: bool = False,
    keep_images: bool = False,
) -> dict[str, Any]:
    """Strict pass rate per family and overall on ``data/prompts/{task}_{split}.jsonl``.

    With ``samples_per_prompt`` n > 1, each prompt is sampled n times (distinct noise) and the
    result also carries ``pass_at_k``: unbiased pass@k for k = 1, 2, 4, …, n, overall and per
    family (``overall`` is then the mean pass rate, i.e. pass@1)."""
    if samples_per_prompt < 1:
        raise ValueError(f"samples_per_prompt must be at least 1, got {samples_per_prompt}")
    if task not in getattr(policy, "tasks", ("t2i",)):
        raise ValueError(f"this policy does not do {task!r} (it does {policy.tasks})")
    defaults = policy_sampling_defaults(policy)
    num_steps = num_steps or defaults["num_steps"]
    guidance_scale = defaults["guidance_scale"] if guidance_scale is None else guidance_scale
    prompts = load_prompt_set(task, split, limit=limit)
    items = [p for p in prompts for _ in range(samples_per_prompt)]
    t0 = time.perf_counter()
    images = generate_for(
        policy, items, seeds=[seed + i for i in range(len(items))], num_steps=num_steps,
        guidance_scale=guidance_scale, batch_size=batch_size, progress=progress, desc=f"{task}/{split}",
    )
    passed: dict[str, list[bool]] = defaultdict(list)
    records = []
    for item, img in zip(items, images):
        result = check_image(item, img)
        passed[item.family].append(result.passed)
        records.append({"text": item.text, "family": item.family, "passed": result.passed, "reasons": result.reasons})
    flat = [p for v in passed.values() for p in v]
    outcomes = [r["passed"] for r in records]
    per_prompt = [outcomes[i : i + samples_per_prompt] for i in range(0, len(outcomes), samples_per_prompt)]
    out = {
        "task": task,
        "split": split,
        "overall": float(np.mean(flat)) if flat else 0.0,
        "families": {f: float(np.mean(v)) for f, v in sorted(passed.items())},
        "n_images": len(items),
        "n_prompts": len(prompts),
        "num_steps": num_steps,
        "guidance_scale": guidance_scale,
        "seconds": time.perf_counter() - t0,
        "samples_per_prompt": samples_per_prompt,
        "pass_at_k": pass_at_k_table(per_prompt, [p.family for p in prompts]),
        "records": records,
    }
    if keep_images:
        out["images"] = images
    return out
