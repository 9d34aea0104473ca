"""Clear one-line errors with failing exit codes (issue 20's cases 8–10, and `arena auto`'s counts),
through the CLI runner."""

from __future__ import annotations

import json
import socket

from click.testing import CliRunner

from app.cli import arena, studio
from arena.cli import elo, votes
from tests.studio_support import make_tiny_models


def run(command, args):
    return CliRunner().invoke(command, [str(a) for a in args])


def one_line_error(result, message: str) -> None:
    assert result.exit_code == 1, (result.exit_code, result.output)
    assert "Traceback" not in result.output and result.exception is None or isinstance(result.exception, SystemExit)
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: ") and message in lines[0], result.output


def test_elo_on_an_empty_file(tmp_path):
    """With --task it said "the votes have no task field"; without, it printed an empty table and exited 0."""
    empty = tmp_path / "votes.jsonl"
    empty.write_text("")
    one_line_error(run(elo, [empty, "--task", "t2i"]), f"no votes in {empty}: the file holds no vote records")
    one_line_error(run(elo, [empty]), "the file holds no vote records")


def test_elo_warns_when_human_and_automatic_votes_mix(tmp_path):
    """README step 5 used to rate human and automatic votes together without a word."""
    path = tmp_path / "votes.jsonl"
    path.write_text("".join(json.dumps({"model_a": "a", "model_b": "b", "winner": "model_a", "task": "t2i",
                                        "judge": "human" if k % 3 else "oracle"}) + "\n" for k in range(12)))
    mixed = run(elo, [path, "--task", "t2i", "--bootstrap", "10"])
    assert mixed.exit_code == 0 and "warning: these votes mix 8 human votes with 4 automatic ones (judge oracle)" in mixed.stderr
    for judge in ("oracle", "human"):
        one_kind = run(elo, [path, "--judge", judge, "--bootstrap", "10"])
        assert one_kind.exit_code == 0 and "mix" not in one_kind.stderr


def test_votes_import_into_a_file_that_is_not_a_store(tmp_path):
    """It printed a 37-line traceback."""
    votes_file = tmp_path / "votes.jsonl"
    votes_file.write_text(json.dumps({"model_a": "a", "model_b": "b", "winner": "tie", "task": "t2i"}) + "\n")
    not_a_store = tmp_path / "notes.txt"
    not_a_store.write_text("these are my notes, not a database\n" * 100)
    one_line_error(run(votes, ["import", "--store", not_a_store, votes_file]),
                   f"--store {not_a_store}: not a QwenRL store (file is not a database)")
    one_line_error(run(votes, ["export", "--store", not_a_store, "--out", tmp_path / "out.jsonl"]), "not a QwenRL store")
    assert not_a_store.read_text().startswith("these are my notes")


def test_votes_import_into_a_missing_folder(tmp_path):
    """It silently created the folder."""
    votes_file = tmp_path / "votes.jsonl"
    votes_file.write_text(json.dumps({"model_a": "a", "model_b": "b", "winner": "tie", "task": "t2i"}) + "\n")
    store = tmp_path / "no" / "such" / "arena.db"
    one_line_error(run(votes, ["import", "--store", store, votes_file]), "does not exist")
    assert not (tmp_path / "no").exists()


def test_a_csv_missing_a_column_gets_one_header_error(tmp_path):
    """It got one error per row."""
    path = tmp_path / "votes.csv"
    path.write_text("model_a,model_b,task\n" + "a,b,t2i\n" * 50)
    result = run(votes, ["import", "--store", tmp_path / "arena.db", path])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.output.strip() == f"Error: {path}:1: the header has no winner column; it has: model_a, model_b, task"
    assert run(elo, [path]).output.count("winner") == 1


def test_studio_on_a_port_in_use(tmp_path):
    """It printed "QwenRL Studio on http://127.0.0.1:7860", then "[Errno 98]", and exited 3."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run(studio, ["--workspace", tmp_path / "ws", "--port", port, "--no-seed-votes"])
    one_line_error(result, f"cannot listen on 127.0.0.1:{port}: address already in use")
    assert "QwenRL Studio on" not in result.output and not (tmp_path / "ws").exists()


def test_arena_auto_says_how_many_votes_its_table_rates(tmp_path):
    """It said "2000 battles judged" over a table of 4,000 (the earlier run's votes too)."""
    models = make_tiny_models(tmp_path / "models", ["tiny-a", "tiny-b"])
    args = ["auto", "--workspace", tmp_path / "ws", "--task", "t2i", "--battles", 6, "--models-dir", models,
            "--pool-size", 2]
    first = run(arena, args)
    assert first.exit_code == 0, first.output
    assert "6 new t2i battles judged by oracle" in first.stderr and "the table rates all 6 t2i votes by oracle" in first.stderr
    second = run(arena, args + ["--seed", 1])
    assert "6 new t2i battles judged by oracle" in second.stderr and "the table rates all 12 t2i votes" in second.stderr
