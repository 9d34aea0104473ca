"""The reward inspector's queries: gallery samples with their judgements, filtered and sorted.

Library functions over a workspace (no gradio); the studio's inspector tab adapts them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import pandas as pd

from qwenrl.rewards import judge_human_agreement

Order = Literal["lowest first", "highest first"]


def reward_judge(task: str) -> str:
    """Name of the composite reward that scores a task's gallery (its YAML ``name``)."""
    return f"shapes_{task}"


def _judgements_by_sample(ws, task: str) -> dict[int, dict[str, Any]]:
    judge = reward_judge(task)
    out: dict[int, dict[str, Any]] = {}
    for j in ws.store.judgements():
        if j["judge"] == judge or j["sample_id"] not in out:
            out[j["sample_id"]] = j
    return out


def samples_table(
    ws, task: str, *, model: str | None = None, family: str | None = None, score_min: float = 0.0,
    score_max: float = 1.0, order: Order = "lowest first", limit: int = 60,
) -> list[dict[str, Any]]:
    """Gallery samples of ``task`` with their composite score, filtered and sorted by score."""
    judged = _judgements_by_sample(ws, task)
    rows = []
    for s in ws.arena_samples(task):
        if model and s["model"] != model:
            continue
        if family and s["family"] != family:
            continue
        j = judged.get(s["id"])
        score = j["score"] if j else None
        if score is not None and not (score_min - 1e-9 <= score <= score_max + 1e-9):
            continue
        rows.append({"sample_id": s["id"], "model": s["model"], "prompt": s["prompt"], "family": s["family"],
                     "seed": s["seed"], "score": score, "image_path": s["image_path"], "pool_id": s["pool_id"]})
    missing = 2.0 if order == "lowest first" else -1.0
    rows.sort(key=lambda r: (r["score"] if r["score"] is not None else missing, r["sample_id"]),
              reverse=(order == "highest first"))
    return rows[:limit]


def sample_detail(ws, sample_id: int) -> dict[str, Any] | None:
    """Image, source, prompt, total, every component (and sub-part) and the rationale of a sample."""
    s = ws.store.get_sample(int(sample_id))
    if s is None:
        return None
    item = ws.pool_item(s["prompt_id"])
    judgements = ws.store.judgements(sample_id=s["id"])
    preferred = [j for j in judgements if j["judge"] == reward_judge(s["task"])] or judgements
    j = preferred[0] if preferred else None
    parts = sorted((j or {}).get("parts", {}).items())
    return {
        "sample_id": s["id"],
        "model": s["model"],
        "task": s["task"],
        "prompt": item.text if item else "",
        "family": item.family if item else "",
        "seed": s["seed"],
        "image": ws.root / s["image_path"],
        "source": ws.source_path(item.id) if item is not None and s["task"] == "edit" else None,
        "score": j["score"] if j else None,
        "judge": j["judge"] if j else None,
        "components": [{"component": k, "score": round(float(v), 4)} for k, v in parts],
        "rationale": j["rationale"] if j else "no judgement stored for this sample",
    }


def compare(ws, task: str, model_a: str, model_b: str, pool_id: str) -> tuple[dict | None, dict | None]:
    """The two models' samples (same prompt, same seed) on one arena prompt."""
    found: dict[str, int] = {}
    for s in ws.arena_samples(task):
        if s["pool_id"] == pool_id and s["model"] in (model_a, model_b) and s["model"] not in found:
            found[s["model"]] = s["id"]
    return (sample_detail(ws, found[model_a]) if model_a in found else None,
            sample_detail(ws, found[model_b]) if model_b in found else None)


def reward_frame(ws, task: str) -> pd.DataFrame:
    """``model``, ``score`` of every scored gallery sample of a task."""
    judged = _judgements_by_sample(ws, task)
    rows = [{"model": s["model"], "score": judged[s["id"]]["score"]}
            for s in ws.arena_samples(task) if s["id"] in judged and judged[s["id"]]["score"] is not None]
    return pd.DataFrame(rows, columns=["model", "score"])


def families(ws, task: str) -> list[str]:
    return sorted({s["family"] for s in ws.arena_samples(task) if s["family"]})


def pool_prompts(ws, task: str) -> list[tuple[str, str]]:
    """(label, pool id) of the arena prompts of a task, for a chooser."""
    seen: dict[str, str] = {}
    for s in ws.arena_samples(task):
        seen.setdefault(s["pool_id"], s["prompt"])
    return [(f"{text}  [{pid}]", pid) for pid, text in sorted(seen.items())]


def agreement(ws, task: str) -> dict[str, Any]:
    """How often the composite reward prefers the image people preferred (human votes)."""
    votes = ws.votes_frame(task=task, judges="human")
    judged = _judgements_by_sample(ws, task)
    scores = {str(k): v["score"] for k, v in judged.items()}
    records = [
        {"model_a": r["model_a"], "model_b": r["model_b"], "winner": r["winner"],
         "sample_a": str(r["sample_a"]), "sample_b": str(r["sample_b"])}
        for r in votes.to_dict("records") if r.get("sample_a") is not None and r.get("sample_b") is not None
    ]
    return judge_human_agreement(records, scores)


def agreement_rows(result: dict[str, Any]) -> list[list[Any]]:
    """Table rows (pair, votes, compared, agree, agreement) for the overall result and each pair."""
    def row(name: str, r: dict[str, Any]) -> list[Any]:
        a = r["agreement"]
        return [name, r["votes"], r["compared"], r["agree"], "—" if a is None else f"{a:.0%}"]

    return [row("all pairs", result["overall"])] + [row(k, v) for k, v in result["per_pair"].items()]


def image_path_ok(ws, path: Path) -> bool:
    """True for a file inside the workspace gallery (paths shown come from the store only)."""
    try:
        return Path(path).resolve().is_relative_to(ws.gallery_dir.resolve())
    except OSError:
        return False
