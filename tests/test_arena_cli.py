"""``qwenrl elo`` and ``qwenrl votes``; and ``arena`` importing without torch or gradio."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from arena import io as vote_io
from arena.cli import elo, votes
from arena.ratings import ROW_FIELDS, leaderboard
from arena.store import ArenaStore
from qwenrl.cli import main
from tests.arena_fixtures import synthetic_votes

STRENGTHS = {"base": 0.0, "grpo": 120.0, "distill": 60.0}


@pytest.fixture
def vote_file(tmp_path):
    frame = synthetic_votes(STRENGTHS, 400, seed=0, tie_rate=0.1)
    frame["task"] = ["t2i" if k % 4 else "edit" for k in range(len(frame))]
    frame["judge"] = ["human" if k % 5 else "oracle" for k in range(len(frame))]
    frame["anony"] = [k % 3 != 0 for k in range(len(frame))]
    frame["battle_id"] = [f"b{k}" for k in range(len(frame))]
    path = tmp_path / "votes.jsonl"
    vote_io.write_votes(frame, path)
    return path


def run(command, args):
    result = CliRunner().invoke(command, [str(a) for a in args])
    return result


def test_elo_json_matches_the_library(vote_file):
    result = run(elo, [vote_file, "--format", "json", "--bootstrap", "50", "--seed", "3"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [row["model"] for row in rows] == ["grpo", "distill", "base"]
    assert all(set(ROW_FIELDS) <= set(row) for row in rows)
    expected = leaderboard(vote_io.read_votes(vote_file), rounds=50, seed=3).rows
    assert rows == json.loads(json.dumps(expected))
    assert "bootstrap 50/50" in result.stderr


@pytest.mark.parametrize("output_format", ["table", "markdown", "csv"])
def test_elo_text_formats(vote_file, output_format):
    result = run(elo, [vote_file, "--format", output_format, "--bootstrap", "20"])
    assert result.exit_code == 0, result.output
    text = result.stdout
    assert all(name in text for name in STRENGTHS)
    if output_format == "csv":
        rows = list(csv.DictReader(io.StringIO(text)))
        assert list(rows[0]) == list(ROW_FIELDS) and len(rows) == 3
    if output_format == "markdown":
        assert text.splitlines()[1].startswith("|---:|:---|")
    if output_format == "table":
        assert text.splitlines()[0].split()[:2] == ["rank", "(UB)"]


def test_elo_filters_and_options(vote_file):
    base = run(elo, [vote_file, "--format", "json", "--ci", "sandwich"])
    filtered = run(elo, [vote_file, "--format", "json", "--ci", "sandwich", "--task", "t2i", "--judge", "human",
                         "--anony-only", "--anchor", "base=1100", "--l2", "0.5", "--min-votes", "10"])
    assert base.exit_code == 0 and filtered.exit_code == 0, filtered.output
    rows = {row["model"]: row for row in json.loads(filtered.stdout)}
    assert rows["base"]["elo"] == pytest.approx(1100.0)
    assert sum(r["votes"] for r in rows.values()) < sum(r["votes"] for r in json.loads(base.stdout))


def test_elo_errors_are_clear(vote_file, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"model_a": "a", "model_b": "b", "winner": "model_a"}\n{"model_a": "a", "winner": "x"}\n')
    cases = [
        ([bad], "bad.jsonl:2: model_b is missing"),
        ([vote_file, "--task", "video"], "no votes with task 'video'; the files have edit, t2i"),
        ([vote_file, "--anchor", "base"], "MODEL=RATING"),
        ([vote_file, "--anchor", "nobody=1000"], "anchor model 'nobody' has no votes"),
        ([tmp_path / "missing.jsonl"], "does not exist"),
    ]
    for args, message in cases:
        result = run(elo, args)
        assert result.exit_code != 0 and message in result.output, (args, result.output)
        assert "Traceback" not in result.output


def test_votes_export_and_import(tmp_path, vote_file):
    db = tmp_path / "arena.db"
    result = run(votes, ["import", "--store", db, vote_file])
    assert result.exit_code == 0, result.output
    assert "imported 400 votes" in result.stderr
    again = run(votes, ["import", "--store", db, vote_file])
    assert again.exit_code != 0 and "votes.jsonl:1: battle 'b0' is already in the store" in again.output
    for name in ("out.jsonl", "out.csv"):
        out = tmp_path / name
        result = run(votes, ["export", "--store", db, "--out", out, "--task", "t2i"])
        assert result.exit_code == 0, result.output
        exported = vote_io.read_votes(out)
        assert len(exported) == 300 and set(exported["task"]) == {"t2i"}
    with ArenaStore(db) as store:
        assert store.vote_count() == 400


def test_the_qwenrl_entry_point_loads_the_arena_commands(vote_file):
    result = CliRunner().invoke(main, ["elo", str(vote_file), "--bootstrap", "10", "--format", "csv"])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(",".join(ROW_FIELDS))


def test_every_command_has_help_with_an_example():
    for command, args in [(elo, []), (votes, []), (votes, ["export"]), (votes, ["import"])]:
        result = CliRunner().invoke(command, [*args, "--help"])
        assert result.exit_code == 0 and "Example" in result.output, args
    for option in ("--task", "--anony-only", "--ci", "--bootstrap", "--seed", "--anchor", "--l2", "--min-votes",
                   "--format", "--input-format"):
        assert option in CliRunner().invoke(elo, ["--help"]).output


def test_arena_imports_without_torch_or_gradio():
    code = (
        "import sys, arena.store, arena.ratings, arena.io, arena.matchmaking, arena.cli\n"
        "heavy = sorted(m for m in ('torch', 'gradio', 'diffusers', 'transformers') if m in sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
