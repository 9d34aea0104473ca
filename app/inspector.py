"""The reward inspector's queries: gallery samples with their judgements, filtered and sorted,
and the learned judge's pairwise battles with its answers and their agreement.

The inspector is public and names each image's model, so it shows only the gallery's
*showcase* samples (``Workspace.showcase_samples``: another seed than the arena's), never an
image an anonymous battle may show; ``sample_detail`` refuses any other sample id.

Library functions over a workspace (no gradio, no torch); the studio's inspector tab adapts
them. Each gallery image carries the programmatic composite's judgement and, once the
gallery worker has run the learned judge (``app.learned_judge``), the learned-judge
composite's: its rationale is shown next to the exact checker's, and samples can be
filtered to where the two disagree.

The pairwise judges' battles (``pairwise_battles``, ``pairwise_detail``; the learned judge's
answers, or the reader's, whose verdicts come from the world's rules on its reading) are the
exception to showcase-only: they are the automatic arena's, over arena images, so the tab shows
them to the admin alone; their agreement with the checker and with people
(``pairwise_agreement``) holds counts only, and is public.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from qwenrl.imageio import load_png
from qwenrl.rewards import judge_human_agreement
from qwenrl.rewards.pairwise import read_pairwise
from qwenrl.world.check import check_image
from qwenrl.world.stability import describe, verdict_stability

from .learned_judge import reward_name as learned_judge
from .workspace import LEARNED_JUDGE, PAIRWISE_VOTE_JUDGES

Order = Literal["lowest first", "highest first"]
#: the inspector's learned-judge filter: every sample, or one kind of disagreement with the checker
VERDICT_FILTERS = ("all samples", "judge passes, checker fails", "judge fails, checker passes",
                   "judge and checker disagree", "judge and checker agree")
#: a learned-judge score at or above this passes (the judge answers 10/10 exactly when it finds every requirement met)
JUDGE_PASS = 0.95


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


def verdicts(ws, task: str) -> dict[int, dict[str, Any]]:
    """Sample id → the learned judge's and the strict checker's verdicts, for the samples the
    learned judge has judged. An answer with no readable score (``judge_score`` None) does not pass."""
    out: dict[int, dict[str, Any]] = {}
    for j in ws.store.judgements(judge=learned_judge(task)):
        parts = j.get("parts") or {}
        if "strict" not in parts:
            continue
        score = parts.get("judge")
        out[j["sample_id"]] = {"judge_score": score, "judge_pass": score is not None and score >= JUDGE_PASS,
                               "checker_pass": parts["strict"] >= 1.0}
    return out


def verdict_matches(v: dict[str, Any] | None, which: str) -> bool:
    """Whether a sample's verdicts (None: not judged by the learned judge) fit a ``VERDICT_FILTERS`` entry."""
    if which not in VERDICT_FILTERS:
        raise ValueError(f"unknown filter {which!r}; expected one of {VERDICT_FILTERS}")
    if which == "all samples":
        return True
    if v is None:
        return False
    judge, checker = v["judge_pass"], v["checker_pass"]
    return {"judge passes, checker fails": judge and not checker, "judge fails, checker passes": checker and not judge,
            "judge and checker disagree": judge != checker, "judge and checker agree": judge == checker}[which]


def samples_table(
    ws, task: str, *, model: str | None = None, family: str | None = None, score_min: float = 0.0,
    score_max: float = 1.0, order: Order = "lowest first", limit: int = 60, verdict: str = "all samples",
) -> list[dict[str, Any]]:
    """Gallery samples of ``task`` with their composite score, filtered (model, family, score
    range, learned judge vs checker: ``VERDICT_FILTERS``) and sorted by score."""
    judged = _judgements_by_sample(ws, task)
    learned = verdicts(ws, task) if verdict != "all samples" else {}
    rows = []
    for s in ws.showcase_samples(task):
        if model and s["model"] != model:
            continue
        if family and s["family"] != family:
            continue
        if not verdict_matches(learned.get(s["id"]), verdict):
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


def short_names(models: list[str], width: int = 16) -> dict[str, str]:
    """A label for each model that fits under a thumbnail and tells them apart: the names
    without the prefix they all share (``shapes-grpo-t2i`` → ``grpo-t2i``), each cut to
    ``width`` characters in its middle, which keeps both ends (``…@step300``)."""
    names = list(models)
    prefix = ""
    if len(names) > 1:
        common = names[0]
        for name in names[1:]:
            while not name.startswith(common):
                common = common[:-1]
        prefix = common[: common.rfind("-") + 1] if "-" in common else ""
    out = {}
    for name in names:
        label = name[len(prefix):] or name
        if len(label) > width:
            label = label[: width // 2 - 1] + "…" + label[-(width - width // 2):]
        out[name] = label
    return out


def sample_detail(ws, sample_id: int) -> dict[str, Any] | None:
    """Image, source, prompt, total, every component (and sub-part) and the rationale of a sample."""
    s = ws.store.get_sample(int(sample_id))
    if s is None or not ws.is_showcase(s):  # an arena image is never shown with its model's name
        return None
    item = ws.pool_item(s["prompt_id"])
    judgements = ws.store.judgements(sample_id=s["id"])
    preferred = [j for j in judgements if j["judge"] == reward_judge(s["task"])] or judgements
    j = preferred[0] if preferred else None
    parts = sorted((j or {}).get("parts", {}).items())
    learned = next((x for x in judgements if x["judge"] == learned_judge(s["task"])), None)
    checker_source = learned or j
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
        "learned_rationale": (component_rationale(learned["rationale"], "judge") if learned else None)
        or "the learned judge has not judged this sample (python -m app.learned_judge --workspace ...)",
        "checker_rationale": (component_rationale(checker_source["rationale"], "strict") if checker_source else None)
        or "no strict-checker verdict stored for this sample",
        "spec": item.spec() if item is not None else None,
        "verdicts": verdicts_of(learned),
    }


def one_pixel(detail: dict[str, Any] | None) -> str | None:
    """Whether one rim pixel turns the checker's verdict on a ``sample_detail`` over
    (``qwenrl.world.stability``, every edit: about a tenth of a second, so the panel asks for it
    only for the sample it shows); None without its prompt or image."""
    if detail is None or detail.get("spec") is None or not Path(detail["image"]).is_file():
        return None
    return describe(verdict_stability(detail["spec"], load_png(detail["image"])))


def verdicts_of(judgement: dict[str, Any] | None) -> dict[str, Any] | None:
    """The learned judge's and the checker's verdicts in one stored learned-judge judgement."""
    parts = (judgement or {}).get("parts") or {}
    if "strict" not in parts:
        return None
    score = parts.get("judge")
    return {"judge_score": score, "judge_pass": score is not None and score >= JUDGE_PASS, "checker_pass": parts["strict"] >= 1.0}


def component_rationale(rationale: str, component: str) -> str | None:
    """One component's part of a composite rationale (the lines after ``[component]``), unindented."""
    lines = rationale.splitlines()
    for i, line in enumerate(lines):
        if line.startswith(f"[{component}] "):
            body = [line[len(component) + 3:]]
            for nxt in lines[i + 1:]:
                if not nxt.startswith("    "):
                    break
                body.append(nxt[4:])
            return "\n".join(body)
    return None


def compare(ws, task: str, model_a: str, model_b: str, pool_id: str) -> tuple[dict | None, dict | None]:
    """The two models' samples (same prompt, same seed) on one arena prompt."""
    found: dict[str, int] = {}
    for s in ws.showcase_samples(task):
        if s["pool_id"] == pool_id and s["model"] in (model_a, model_b) and s["model"] not in found:
            found[s["model"]] = s["id"]
    return (sample_detail(ws, found[model_a]) if model_a in found else None,
            sample_detail(ws, found[model_b]) if model_b in found else None)


def reward_frame(ws, task: str) -> pd.DataFrame:
    """``model``, ``score`` of every scored gallery sample of a task."""
    judged = _judgements_by_sample(ws, task)
    rows = [{"model": s["model"], "score": judged[s["id"]]["score"]}
            for s in ws.showcase_samples(task) if s["id"] in judged and judged[s["id"]]["score"] is not None]
    return pd.DataFrame(rows, columns=["model", "score"])


def families(ws, task: str) -> list[str]:
    return sorted({s["family"] for s in ws.showcase_samples(task) if s["family"]})


def pool_prompts(ws, task: str) -> list[tuple[str, str]]:
    """(label, pool id) of the arena prompts of a task, for a chooser."""
    seen: dict[str, str] = {}
    for s in ws.showcase_samples(task):
        seen.setdefault(s["pool_id"], s["prompt"])
    return [(f"{text}  [{pid}]", pid) for pid, text in sorted(seen.items())]


def agreement(ws, task: str, judge: str | None = None) -> dict[str, Any]:
    """How often a reward prefers the image people preferred (human votes): the programmatic
    composite (default), or the judgements stored under ``judge`` (e.g. the learned judge's)."""
    votes = ws.votes_frame(task=task, judges="human")
    if judge is None:
        scores = {str(k): v["score"] for k, v in _judgements_by_sample(ws, task).items()}
    else:
        scores = {str(j["sample_id"]): j["score"] for j in ws.store.judgements(judge=judge)}
    records = [
        {"model_a": r["model_a"], "model_b": r["model_b"], "winner": r["winner"],
         "sample_a": str(r["sample_a"]), "sample_b": str(r["sample_b"])}
        for r in votes.to_dict("records") if r.get("sample_a") is not None and r.get("sample_b") is not None
    ]
    return judge_human_agreement(records, scores)


def judge_checker_agreement(ws, task: str) -> dict[str, Any]:
    """How often the learned judge's pass/fail matches the strict checker's on the gallery,
    overall and per model, with both kinds of disagreement counted."""
    by_model = {s["id"]: s["model"] for s in ws.showcase_samples(task)}
    groups: dict[str, list[dict[str, Any]]] = {"all models": []}
    for sid, v in verdicts(ws, task).items():
        if sid in by_model:
            groups["all models"].append(v)
            groups.setdefault(by_model[sid], []).append(v)

    def summary(vs: list[dict[str, Any]]) -> dict[str, Any]:
        agree = sum(v["judge_pass"] == v["checker_pass"] for v in vs)
        return {"judged": len(vs), "agree": agree, "agreement": agree / len(vs) if vs else None,
                "judge passes, checker fails": sum(v["judge_pass"] and not v["checker_pass"] for v in vs),
                "judge fails, checker passes": sum(v["checker_pass"] and not v["judge_pass"] for v in vs)}

    return {name: summary(vs) for name, vs in groups.items()}


def checker_agreement_rows(result: dict[str, Any]) -> list[list[Any]]:
    """Table rows (models, judged, agree, judge passes/checker fails, judge fails/checker passes, agreement)."""
    return [[name, r["judged"], r["agree"], r["judge passes, checker fails"], r["judge fails, checker passes"],
             "—" if r["agreement"] is None else f"{r['agreement']:.0%}"] for name, r in result.items()]


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


# -- the learned judge's pairwise battles -------------------------------------------------------
#
# ``qwenrl arena auto --judge learned`` stores each comparison of the learned judge as a vote
# (judge ``learned``) with its answer in the battle's meta. Those battles are over *arena*
# images, and the public vote export lists the same battles, in the same order, with their
# models and sample ids: a public page that showed them would name the images anonymous battles
# show. So the tab lists battles and shows their images to the admin only; the agreement
# summary (counts, no image) is public.

#: the agreement table of the pairwise judge
PAIRWISE_HEADERS = ["compared with", "n", "agree", "agreement", "note"]
NO_HUMAN_VOTES = "no human votes on these pairs"


def pairwise_judge(judge: str) -> str:
    """``judge`` when it is a pairwise judge's vote name (``PAIRWISE_VOTE_JUDGES``); else ValueError."""
    if judge not in PAIRWISE_VOTE_JUDGES:
        raise ValueError(f"judge must be one of {sorted(PAIRWISE_VOTE_JUDGES)}, not {judge!r}")
    return judge


def no_pairwise_text(task: str, judge: str = LEARNED_JUDGE) -> str:
    """What the pairwise section says while ``judge`` has judged no battle of ``task``."""
    name = PAIRWISE_VOTE_JUDGES[pairwise_judge(judge)]
    return (f"The {name} has judged no {task} battles yet: run `qwenrl arena auto --task {task} --judge {judge}` "
            f"(its votes then show here, and on the leaderboard's “{name}” view).")


def pairwise_battles(ws, task: str, judge: str = LEARNED_JUDGE) -> list[dict[str, Any]]:
    """``judge``'s battles of ``task`` (a ``PAIRWISE_VOTE_JUDGES`` name), in the order it judged them: ``battle_id``,
    ``model_a``, ``model_b``, ``prompt``, ``winner`` (the stored outcome), ``sample_a``,
    ``sample_b`` and ``rationale`` (its answer, from the battle's meta; "" when none was kept).
    Imported votes without images are left out."""
    return [{"battle_id": b["battle_id"], "model_a": b["model_a"], "model_b": b["model_b"], "prompt": b["prompt"] or "",
             "winner": b["winner"], "sample_a": int(b["sample_a"]), "sample_b": int(b["sample_b"]),
             "rationale": str(b["meta"].get("judge_rationale") or "")}
            for b in ws.store.judged_battles(task=task, judge=pairwise_judge(judge))
            if b["sample_a"] is not None and b["sample_b"] is not None]


def pairwise_choices(battles: list[dict[str, Any]]) -> list[tuple[str, int]]:
    """(label, index into ``battles``) for the (admin's) battle chooser: number, prompt, the two
    models and the judge's pick."""
    picks = {"model_a": "A better", "model_b": "B better", "tie": "tie", "tie (bothbad)": "both bad"}
    return [(f"{i + 1}. {b['prompt'] or '(no prompt)'} · A {b['model_a']} vs B {b['model_b']} · judge: "
             f"{picks.get(b['winner'], b['winner'])}", i) for i, b in enumerate(battles)]


def checker_verdict(ws, sample_id: int) -> dict[str, Any] | None:
    """The strict checker on a gallery sample: ``passed`` and ``reasons``; None when the sample,
    its arena prompt or its image is missing."""
    s = ws.store.get_sample(int(sample_id))
    item = ws.pool_item(s["prompt_id"]) if s else None
    path = ws.root / s["image_path"] if s else None
    if item is None or path is None or not path.is_file():
        return None
    result = check_image(item.spec(), load_png(path))
    return {"passed": bool(result.passed), "reasons": list(result.reasons)}


def _requirements(rationale: str) -> list[str]:
    """The requirement names of a pairwise answer's ``Requirements:`` line (empty when none)."""
    line = next((ln for ln in rationale.splitlines() if ln.strip().startswith("Requirements:")), "")
    return [m.group(1).strip().rstrip(".").strip() for m in re.finditer(r"\(\d+\)\s*([^()]*)", line)]


def pairwise_detail(ws, battle_id: str, judge: str = LEARNED_JUDGE) -> dict[str, Any] | None:
    """One battle of ``judge`` (None for any other battle): both images (and the editing
    source), the prompt, the judge's answer and what it reads as (winner, each side's
    requirement verdicts), and the strict checker's pass/fail of each image."""
    b = ws.store.get_battle(battle_id)
    if (b is None or b.get("models") or b["sample_a"] is None or b["vote"] is None
            or b["vote"]["judge"] != pairwise_judge(judge)):
        return None
    rationale = str((b.get("meta") or {}).get("judge_rationale") or "")
    reading = read_pairwise(rationale)
    samples = [ws.store.get_sample(int(b[k])) for k in ("sample_a", "sample_b")]
    item = ws.pool_item(b["prompt_id"]) if b["prompt_id"] is not None else None
    checks = [checker_verdict(ws, s["id"]) for s in samples]
    passes = [c["passed"] if c else None for c in checks]
    one_passes = None not in passes and passes[0] != passes[1]
    return {
        "battle_id": b["id"], "task": b["task"], "judge": judge, "model_a": b["model_a"], "model_b": b["model_b"],
        "prompt": item.text if item else "", "winner": b["vote"]["outcome"],
        "sample_a": samples[0]["id"], "sample_b": samples[1]["id"],
        "image_a": ws.root / samples[0]["image_path"], "image_b": ws.root / samples[1]["image_path"],
        "source": ws.source_path(item.id) if item is not None and b["task"] == "edit" else None,
        "rationale": rationale, "requirements": _requirements(rationale),
        "reading": {"winner": reading.winner, "verdicts_a": reading.verdicts_a, "verdicts_b": reading.verdicts_b,
                    "problems": list(reading.problems), "consistent": reading.consistent},
        "checker_a": checks[0], "checker_b": checks[1],
        "agrees_with_checker": (_winning_side(b["vote"]["outcome"]) == ("A" if passes[0] else "B")) if one_passes else None,
    }


def _winning_side(outcome: str) -> str | None:
    return {"model_a": "A", "model_b": "B"}.get(outcome)


def _marks(verdicts: list[bool] | None, i: int) -> str:
    if verdicts is None or i >= len(verdicts):
        return "?"
    return "met" if verdicts[i] else "not met"


def pairwise_summary(detail: dict[str, Any] | None, task: str = "t2i", judge: str = LEARNED_JUDGE) -> str:
    """The pairwise detail in words: the two models, the judge's pick, its verdict on each
    requirement, and the exact checker's verdict on each image."""
    if detail is None:
        return no_pairwise_text(task, judge)
    r = detail["reading"]
    picks = {"model_a": "A is better", "model_b": "B is better", "tie": "a tie", "tie (bothbad)": "a tie, both bad"}
    lines = [f"A: {detail['model_a']} · B: {detail['model_b']}",
             f"{PAIRWISE_VOTE_JUDGES[detail['judge']].capitalize()}: {picks.get(detail['winner'], detail['winner'])}."]
    if r["winner"] is None:
        lines.append(f"Its answer could not be read: {'; '.join(r['problems']) or 'no answer kept'}.")
    for i, name in enumerate(detail["requirements"]):
        lines.append(f"({i + 1}) {name}: A {_marks(r['verdicts_a'], i)}, B {_marks(r['verdicts_b'], i)}")
    if r["consistent"] is False:
        lines.append("Its pick does not follow from its own verdicts.")
    for side in "ab":
        c = detail[f"checker_{side}"]
        verdict = "not checked (image or prompt missing)" if c is None else "passes" if c["passed"] else \
            f"fails ({'; '.join(c['reasons'][:2])})"
        lines.append(f"Exact checker, {side.upper()}: {verdict}")
    agrees = detail["agrees_with_checker"]
    lines.append("Exactly one image passes: the judge " + ("agrees with the checker." if agrees else "does not pick it.")
                 if agrees is not None else "The checker does not pick a side here (both pass or both fail).")
    return "\n".join(lines)


def _sample_key(value: Any) -> str:
    """A sample id as one key whatever its stored type (329, 329.0, "329")."""
    try:
        return str(int(float(value)))
    except (TypeError, ValueError):
        return str(value)


def _human_picks(ws, task: str) -> dict[frozenset[str], list[str | None]]:
    """Human votes by the pair of samples they compared (either order): the winning sample's
    key, or None for a tie of either kind."""
    picks: dict[frozenset[str], list[str | None]] = {}
    for v in ws.votes_frame(task=task, judges="human").to_dict("records"):
        a, b = v.get("sample_a"), v.get("sample_b")
        if a is None or b is None or pd.isna(a) or pd.isna(b) or v.get("winner") is None:
            continue  # a k-way vote, or one imported without its samples
        side = _winning_side(v["winner"])
        winner = None if side is None else _sample_key(a if side == "A" else b)
        picks.setdefault(frozenset((_sample_key(a), _sample_key(b))), []).append(winner)
    return picks


def pairwise_agreement(ws, task: str, judge: str = LEARNED_JUDGE) -> dict[str, Any]:
    """How ``judge``'s pairwise votes agree with the strict checker (on the battles where
    exactly one image passes: does it pick that one? a tie does not) and with people (each human
    vote on the same two samples, in either order, where both chose a side), with the counts."""
    battles = pairwise_battles(ws, task, judge)
    checked: dict[int, dict[str, Any] | None] = {}
    checker = {"battles": len(battles), "n": 0, "agree": 0, "judge_ties": 0, "both_pass": 0, "both_fail": 0,
               "unchecked": 0}
    human = {"votes": 0, "pairs": 0, "n": 0, "agree": 0, "human_ties": 0, "judge_ties": 0}
    people = _human_picks(ws, task)
    for b in battles:
        for sid in (b["sample_a"], b["sample_b"]):
            if sid not in checked:
                checked[sid] = checker_verdict(ws, sid)
        ca, cb = checked[b["sample_a"]], checked[b["sample_b"]]
        side = _winning_side(b["winner"])
        judge_pick = None if side is None else _sample_key(b["sample_a"] if side == "A" else b["sample_b"])
        if ca is None or cb is None:
            checker["unchecked"] += 1
        elif ca["passed"] == cb["passed"]:
            checker["both_pass" if ca["passed"] else "both_fail"] += 1
        else:
            checker["n"] += 1
            checker["agree"] += side == ("A" if ca["passed"] else "B")
            checker["judge_ties"] += side is None
        votes = people.get(frozenset((_sample_key(b["sample_a"]), _sample_key(b["sample_b"]))), [])
        human["pairs"] += bool(votes)
        for pick in votes:
            human["votes"] += 1
            if pick is None or judge_pick is None:
                human["human_ties" if pick is None else "judge_ties"] += 1
                continue
            human["n"] += 1
            human["agree"] += pick == judge_pick
    for r in (checker, human):
        r["agreement"] = r["agree"] / r["n"] if r["n"] else None
    return {"judge": judge, "checker": checker, "human": human}


def pairwise_agreement_rows(result: dict[str, Any]) -> list[list[Any]]:
    """Table rows (``PAIRWISE_HEADERS``): agreement with the checker, then with people, each with its n."""
    c, h = result["checker"], result["human"]

    def rate(r: dict[str, Any]) -> str:
        return "—" if r["agreement"] is None else f"{r['agreement']:.0%}"

    if not c["battles"]:
        checker_note = f"the {PAIRWISE_VOTE_JUDGES[result['judge']]} has judged no battles of this task"
    else:
        checker_note = (f"battles where exactly one image passes, of {c['battles']} (both pass {c['both_pass']}, "
                        f"both fail {c['both_fail']}); the judge called {c['judge_ties']} of them a tie")
    if not h["votes"]:
        human_note = NO_HUMAN_VOTES
    else:
        human_note = (f"{h['votes']} human vote(s) on {h['pairs']} of these pairs; ties left out: "
                      f"people's {h['human_ties']}, the judge's {h['judge_ties']}")
    return [["strict checker", c["n"], c["agree"], rate(c), checker_note],
            ["human votes on the same pair", h["n"], h["agree"], rate(h), human_note]]
