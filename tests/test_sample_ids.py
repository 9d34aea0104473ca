"""Sample ids stay integers through `qwenrl votes import` and export, and judge–human agreement is
computed on imported human votes (they used to come back as 329.0, and agreement read 0 of 14)."""

from __future__ import annotations

import json

from click.testing import CliRunner

from app.inspector import agreement
from arena.cli import export_votes, import_votes
from arena.io import read_votes
from arena.store import ArenaStore
from tests.studio_support import filled_workspace, tiny_models  # noqa: F401


def _votes_file(ws, path):
    """Human votes between gallery samples (their ids), and one vote without sample ids: the
    missing value is what turned a column of integers into floats."""
    by_model: dict[str, dict] = {}
    for s in ws.arena_samples("t2i"):
        by_model.setdefault(s["model"], {})[s["pool_id"]] = s
    a, b = sorted(by_model)[:2]
    records = []
    for k, pool_id in enumerate(sorted(set(by_model[a]) & set(by_model[b]))):
        records.append({"task": "t2i", "model_a": a, "model_b": b, "winner": ("model_a", "model_b")[k % 2],
                        "judge": "human", "sample_a": by_model[a][pool_id]["id"], "sample_b": by_model[b][pool_id]["id"],
                        "tstamp": 1.7e9 + k})
    records.append({"task": "t2i", "model_a": a, "model_b": b, "winner": "tie", "judge": "human", "tstamp": 1.8e9})
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return records


def test_sample_ids_round_trip_as_integers(tmp_path, filled_workspace):
    records = _votes_file(filled_workspace, tmp_path / "in.jsonl")
    frame = read_votes(tmp_path / "in.jsonl")
    assert frame["sample_a"].tolist()[:-1] == [r["sample_a"] for r in records[:-1]] and frame["sample_a"].tolist()[-1] is None
    runner = CliRunner()
    store = tmp_path / "other.db"
    result = runner.invoke(import_votes, ["--store", str(store), str(tmp_path / "in.jsonl")])
    assert result.exit_code == 0, result.output
    for fmt in ("jsonl", "csv"):
        out = tmp_path / f"out.{fmt}"
        result = runner.invoke(export_votes, ["--store", str(store), "--out", str(out)])
        assert result.exit_code == 0, result.output
        again = read_votes(out)
        assert again["sample_a"].tolist() == frame["sample_a"].tolist()
        assert again["sample_b"].tolist() == frame["sample_b"].tolist()
    lines = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert all(type(r["sample_a"]) is int for r in lines[:-1]) and lines[-1]["sample_a"] is None
    assert '"sample_a": 329.0' not in (tmp_path / "out.jsonl").read_text()
    with ArenaStore(store) as s:
        frame = s.votes_frame()
        assert all(type(v) is int for v in frame["sample_a"].tolist()[:-1])


def test_agreement_is_computed_on_imported_human_votes(tmp_path, filled_workspace):
    ws = filled_workspace
    records = _votes_file(ws, tmp_path / "human.jsonl")
    before = agreement(ws, "t2i")["overall"]
    result = CliRunner().invoke(import_votes, ["--store", str(ws.root / "arena.db"), str(tmp_path / "human.jsonl")])
    assert result.exit_code == 0, result.output
    after = agreement(ws, "t2i")["overall"]
    grew = {k: after[k] - before[k] for k in ("votes", "compared", "judge_ties", "missing")}
    with_samples = len(records) - 1  # the last vote names no samples: agreement leaves it out
    assert grew["votes"] == with_samples and grew["missing"] == 0, grew  # 329.0 matched no judgement: all missing
    assert grew["compared"] + grew["judge_ties"] == with_samples and grew["compared"] > 0, grew
