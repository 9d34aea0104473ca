"""Vote files: round trips, published formats, and every kind of malformed record."""

from __future__ import annotations

import io as stdio
import json

import numpy as np
import pandas as pd
import pytest

from arena import io as vote_io
from arena.io import SelfBattleWarning, VoteFileError, detect_format, read_votes, write_votes
from arena.ratings import leaderboard, online_elo

RECORDS = [
    {"battle_id": "b1", "task": "t2i", "model_a": "base", "model_b": "grpo", "winner": "model_b",
     "judge": "human", "anony": True, "tstamp": 1700000000.25, "prompt": "a red circle", "sample_a": 1, "sample_b": 2,
     "flags": "fast"},
    {"battle_id": "b2", "task": "edit", "model_a": "grpo", "model_b": "base", "winner": "tie (bothbad)",
     "judge": "oracle", "anony": False, "tstamp": 1700000001.5, "prompt": "make it blue,\n\"now\" — ok ✓",
     "sample_a": 3, "sample_b": 4, "flags": "burst,named"},
    {"battle_id": "b3", "task": "t2i", "model_a": "base", "model_b": "distill", "winner": "tie",
     "judge": None, "anony": None, "tstamp": None, "prompt": None, "sample_a": None, "sample_b": None,
     "flags": None},
]


def as_records(frame: pd.DataFrame) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in ("file", "line")} for r in vote_io.frame_records(frame)]


@pytest.mark.parametrize("name", ["votes.jsonl", "votes.csv"])
def test_round_trip(tmp_path, name):
    path = tmp_path / name
    assert write_votes(RECORDS, path) == 3
    frame = read_votes(path)
    assert as_records(frame) == RECORDS
    assert frame["line"].tolist() == ([1, 2, 3] if name.endswith("jsonl") else [2, 3, 5])
    assert str(frame["model_a"].dtype) == "category" and str(frame["anony"].dtype) == "boolean"


def test_write_to_an_open_file_and_from_a_frame(tmp_path):
    buffer = stdio.StringIO()
    write_votes(pd.DataFrame(RECORDS), buffer, format="csv")
    assert buffer.getvalue().splitlines()[0] == ",".join(vote_io.EXPORT_FIELDS)
    buffer = stdio.StringIO()
    write_votes(RECORDS, buffer)
    assert [json.loads(line)["battle_id"] for line in buffer.getvalue().splitlines()] == ["b1", "b2", "b3"]
    with pytest.raises(ValueError, match="jsonl or csv"):
        write_votes(RECORDS, tmp_path / "x", format="xml")


def test_detect_format(tmp_path):
    (tmp_path / "a.jsonl").write_text("")
    (tmp_path / "b.csv").write_text("model_a\n")
    (tmp_path / "c.json").write_text('  [{"model_a": "x"}]')
    (tmp_path / "d.json").write_text('{"model_a": "x"}\n')
    (tmp_path / "e.log").write_text("model_a,model_b\n")
    assert [detect_format(tmp_path / n) for n in ("a.jsonl", "b.csv", "c.json", "d.json", "e.log")] == [
        "jsonl", "csv", "json", "jsonl", "csv"]


def test_fastchat_and_genai_arena_clean_battle_lists(tmp_path):
    published = [  # as GenAI-Arena publishes them (indent=2), with FastChat's extra fields
        {"model_a": "SDXL", "model_b": "LCM", "winner": "model_a", "judge": "arena_user_::1", "anony": True,
         "tstamp": 1707700514.3167},
        {"question_id": "q-17", "model_a": "PixArt", "model_b": "SDXL", "winner": "tie (bothbad)",
         "judge": "arena_user_2", "anony": False, "tstamp": 1707701110.2369, "language": "English",
         "conversation_a": [{"role": "user", "content": "hi"}], "turn": 1},
    ]
    path = tmp_path / "clean_battle_20240220.json"
    path.write_text(json.dumps(published, indent=2))
    frame = read_votes(path)
    assert frame["winner"].tolist() == ["model_a", "tie (bothbad)"]
    assert frame["battle_id"].isna().tolist() == [True, False] and frame["battle_id"][1] == "q-17"
    assert frame["line"].tolist() == [2, 10]
    assert frame["task"].isna().all()


def test_large_files_are_split_between_processes(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    records = [{"model_a": f"m{a}", "model_b": f"m{(a + 1) % 7}", "winner": "model_a", "tstamp": float(k)}
               for k, a in enumerate(rng.integers(0, 7, 3000))]
    path = tmp_path / "big.jsonl"
    write_votes(records, path)
    single = read_votes(path, workers=1)
    assert single["tstamp"].tolist() == [float(k) for k in range(3000)]
    monkeypatch.setattr(vote_io, "_BLOCK_BYTES", 4096)  # many blocks per range
    pd.testing.assert_frame_equal(read_votes(path, workers=1), single)
    monkeypatch.setattr(vote_io, "_PARALLEL_BYTES", 1)
    pd.testing.assert_frame_equal(read_votes(path, workers=2), single)
    lines = path.read_text().splitlines()
    lines[2500] = '{"model_a": "m1", "model_b": "m2", "winner": "oops"}'
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(VoteFileError, match=r"big.jsonl:2501: winner is 'oops'"):
        read_votes(path, workers=2)


def test_blank_lines_and_empty_files(tmp_path):
    path = tmp_path / "v.jsonl"
    path.write_text('\n{"model_a": "a", "model_b": "b", "winner": "tie"}\r\n\n  \n')
    frame = read_votes(path)
    assert len(frame) == 1 and frame["line"].tolist() == [2]
    (tmp_path / "empty.jsonl").write_text("")
    (tmp_path / "empty.json").write_text("[]")
    assert len(read_votes([tmp_path / "empty.jsonl", tmp_path / "empty.json"])) == 0


BAD_JSONL = "\n".join([
    '{"model_a": "a", "model_b": "b", "winner": "model_a"}',
    '{"model_a": "a", "model_b": "a", "winner": "tie"}',
    '{"model_a": "a", "model_b": "b", "winner": "draw"}',
    '[1, 2]',
    '{"model_a": "a", "model_b":',
    '{"model_a": ["x"], "model_b": "b", "winner": "tie", "anony": "yes", "tstamp": "now"}',
    '{"model_a": "a", "model_b": "b", "winner": "tie"} extra',
    '{"model_b": "b", "winner": "tie", "tstamp": NaN}',
    '{"model_a": " ", "model_b": "b", "winner": "tie", "sample_a": 1.5, "battle_id": 7}',
]) + "\n"


def test_every_malformed_record_is_reported_with_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(BAD_JSONL)
    with pytest.raises(VoteFileError) as caught:
        read_votes(path, strict=True)
    message = str(caught.value)
    expected = [
        "bad.jsonl:2: model_a and model_b are both 'a'",
        "bad.jsonl:3: winner is 'draw', expected one of model_a, model_b, tie, tie (bothbad)",
        "bad.jsonl:4: expected a JSON object, found list",
        "bad.jsonl:5: not valid JSON: Expecting value",
        "bad.jsonl:6: anony is 'yes', expected true or false",
        'bad.jsonl:6: model_a is ["x"], expected a non-empty string',
        "bad.jsonl:6: tstamp is 'now', expected a number",
        "bad.jsonl:7: not valid JSON: Extra data",
        "bad.jsonl:8: model_a is missing",
        "bad.jsonl:8: tstamp is NaN",
        "bad.jsonl:9: model_a is ' ', expected a non-empty string",
        "bad.jsonl:9: sample_a is 1.5, expected an integer or a string",
        "bad.jsonl:9: battle_id is 7, expected a non-empty string",
    ]
    for fragment in expected:
        assert str(tmp_path / fragment) in message or fragment in message, fragment
    assert all(line.startswith(str(path) + ":") for line in message.splitlines())
    assert ":1:" not in message
    # not strict: the self-battle on line 2 is no longer a problem, the others still fail the file
    with pytest.raises(VoteFileError) as caught:
        read_votes(path)
    assert "bad.jsonl:2:" not in str(caught.value) and "bad.jsonl:3: winner is 'draw'" in str(caught.value)


def test_malformed_json_lists_report_the_line_where_the_record_starts(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('[\n  {"model_a": "a", "model_b": "b", "winner": "model_a"},\n  {"model_a": "a",\n'
                    '   "model_b": "b", "winner": "bogus"},\n  "not a vote"\n]\n')
    with pytest.raises(VoteFileError) as caught:
        read_votes(path)
    assert str(caught.value).splitlines() == [
        f"{path}:3: winner is 'bogus', expected one of model_a, model_b, tie, tie (bothbad)",
        f"{path}:5: expected a JSON object, found str",
    ]
    path.write_text('[{"model_a": "a"},\n {"model_b": ]')
    with pytest.raises(VoteFileError, match=r"bad.json:2: not valid JSON"):
        read_votes(path)
    path.write_text('{"model_a": "a", "model_b": "b", "winner": "tie"}')
    with pytest.raises(VoteFileError, match="expected a JSON list"):
        read_votes(path, input_format="json")


def test_malformed_csv(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text('model_a,model_b,winner,tstamp,anony,prompt\na,b,model_a,1,true,"two\nlines"\n'
                    'a,b,bogus,x,maybe,\n')
    with pytest.raises(VoteFileError) as caught:
        read_votes(path)
    assert str(caught.value).splitlines() == [
        f"{path}:4: anony is 'maybe', expected true or false",
        f"{path}:4: tstamp is 'x', not a number",
        f"{path}:4: winner is 'bogus', expected one of model_a, model_b, tie, tie (bothbad)",
    ]
    path.write_text("model_a,model_b,winner\na,b,tie\na,b,tie,extra\n")
    with pytest.raises(VoteFileError, match=r"bad.csv:3: 4 cells where the header has 3"):
        read_votes(path)


def test_reading_is_all_or_nothing_across_files(tmp_path):
    good, bad = tmp_path / "good.jsonl", tmp_path / "bad.jsonl"
    write_votes(RECORDS, good)
    bad.write_text('{"model_a": "a", "model_b": "b", "winner": "?"}\n')
    with pytest.raises(VoteFileError, match="bad.jsonl:1"):
        read_votes([good, bad])
    frame = read_votes([good, good])
    assert len(frame) == 6 and frame["file"].nunique() == 1


def test_not_utf8(tmp_path):
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(b'{"model_a": "a", "model_b": "b", "winner": "tie"}\n{"model_a": "caf\xe9"}\n')
    with pytest.raises(VoteFileError, match=r"latin1.jsonl:2: not UTF-8"):
        read_votes(path)


def test_unknown_fields_and_formats_are_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown vote field"):
        read_votes([], fields=["colour"])
    with pytest.raises(ValueError, match="input format"):
        read_votes([], input_format="xml")


# ---------------------------------------------------------------------------------------------
# Published logs as published: GenAI-Arena / FastChat clean_battle files and their quirks
# ---------------------------------------------------------------------------------------------

# As GenAI-Arena publishes clean_battle_*.json (indent=2): voter ids in judge, FastChat's extra
# fields (some nested), and self-battles — one non-anonymous "both bad" tie, one anonymous win.
PUBLISHED = [
    {"question_id": "q1", "model_a": "SDXL", "model_b": "LCM", "winner": "model_a", "judge": "arena_user_1",
     "anony": True, "tstamp": 1707700001.5, "language": "English", "turn": 1,
     "conversation_a": [{"role": "user", "content": "a cat"}], "dedup_tag": {"high_freq": False, "sampled": True}},
    {"question_id": "q2", "model_a": "PixArt", "model_b": "SDXL", "winner": "tie (bothbad)", "judge": "arena_user_2",
     "anony": False, "tstamp": 1707700002.5, "category_tag": {"criteria": [1, 2]}},
    {"question_id": "q3", "model_a": "SDXLTurbo", "model_b": "SDXLTurbo", "winner": "tie (bothbad)",
     "judge": "arena_user_3", "anony": False, "tstamp": 1707700003.5, "language": "unknown"},
    {"question_id": "q4", "model_a": "LCM", "model_b": "PixArt", "winner": "model_b", "judge": "arena_user_1",
     "anony": True, "tstamp": 1707700004.5},
    {"question_id": "q5", "model_a": "SDXL", "model_b": "SDXL", "winner": "model_a", "judge": "arena_user_4",
     "anony": True, "tstamp": 1707700005.5},
    {"question_id": "q6", "model_a": "SDXLTurbo", "model_b": "LCM", "winner": "model_b", "judge": "arena_user_2",
     "anony": True, "tstamp": 1707700006.5, "new_field_from_2025": None},
    {"question_id": "q7", "model_a": "PixArt", "model_b": "SDXLTurbo", "winner": "tie", "judge": "arena_user_5",
     "anony": True, "tstamp": 1707700007.5},
]


def write_published(path, records):
    """Write records as a JSON list, each indented over several lines; returns each one's first line."""
    chunks, starts, line = [], [], 2
    for record in records:
        text = json.dumps(record, indent=2)
        starts.append(line)
        chunks.append(text)
        line += text.count("\n") + 1
    path.write_text("[\n" + ",\n".join(chunks) + "\n]\n")
    return starts


def fastchat_online_elo(records, k=4.0, scale=400.0, base=10.0, init=1000.0):
    """FastChat's compute_online_elo, as published: every record, self-battles included."""
    rating = {}
    for r in sorted(records, key=lambda r: r["tstamp"]):
        a, b = r["model_a"], r["model_b"]
        ra, rb = rating.setdefault(a, init), rating.setdefault(b, init)
        ea = 1 / (1 + base ** ((rb - ra) / scale))
        eb = 1 / (1 + base ** ((ra - rb) / scale))
        sa = {"model_a": 1.0, "model_b": 0.0}.get(r["winner"], 0.5)
        rating[a] += k * (sa - ea)
        rating[b] += k * (1 - sa - eb)
    return rating


def test_self_battles_are_left_out_with_one_warning(tmp_path):
    path = tmp_path / "clean_battle_20240220.json"
    starts = write_published(path, PUBLISHED)
    with pytest.warns(SelfBattleWarning) as caught:
        frame = read_votes(path)
    assert len(caught) == 1
    message = str(caught[0].message)
    assert message.startswith("left out 2 self-battles")
    assert f"{path}:{starts[2]}, {path}:{starts[4]};" in message and "--strict" in message
    assert frame["battle_id"].tolist() == ["q1", "q2", "q4", "q6", "q7"]
    assert frame["line"].tolist() == [starts[k] for k in (0, 1, 3, 5, 6)]
    assert (frame["model_a"] != frame["model_b"]).all()
    with pytest.raises(VoteFileError) as refused:
        read_votes(path, strict=True)
    assert str(refused.value).splitlines() == [
        f"{path}:{starts[2]}: model_a and model_b are both 'SDXLTurbo'",
        f"{path}:{starts[4]}: model_a and model_b are both 'SDXL'",
    ]


def test_a_self_battle_changes_no_rating(tmp_path):
    quirky, clean = tmp_path / "quirky.json", tmp_path / "clean.json"
    write_published(quirky, PUBLISHED)
    without = [r for r in PUBLISHED if r["model_a"] != r["model_b"]]
    clean.write_text(json.dumps(without))
    with pytest.warns(SelfBattleWarning):
        left_out = read_votes(quirky)
    board = leaderboard(left_out, rounds=50, seed=0)
    assert board.rows == leaderboard(read_votes(clean), rounds=50, seed=0).rows
    # FastChat's own online Elo, fed every record (self-battles too), gives the same numbers
    reference = fastchat_online_elo(PUBLISHED)
    assert online_elo(left_out) == pytest.approx({m: v for m, v in reference.items()}, abs=1e-9)


def test_many_self_battles_are_counted_and_the_first_few_placed(tmp_path):
    lines = ['{"model_a": "a", "model_b": "b", "winner": "model_a"}']
    lines += ['{"model_a": "c", "model_b": "c", "winner": "tie", "extra": [1, {"x": 2}]}'] * 8
    path = tmp_path / "votes.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with pytest.warns(SelfBattleWarning, match=r"left out 8 self-battles .*votes.jsonl:6 and 3 more") as caught:
        frame = read_votes(path)
    assert len(caught) == 1 and len(frame) == 1 and "votes.jsonl:7" not in str(caught[0].message)
    assert "c" not in set(frame["model_a"]) | set(frame["model_b"])


def test_self_battles_across_files_and_formats_make_one_warning(tmp_path, monkeypatch):
    csv_path, jsonl = tmp_path / "a.csv", tmp_path / "b.jsonl"
    csv_path.write_text("model_a,model_b,winner,colour\nx,y,tie,red\nx,x,model_b,blue\n")
    records = [{"model_a": "y", "model_b": "z", "winner": "model_a"}] * 2000 + [
        {"model_a": "z", "model_b": "z", "winner": "model_a"}]
    write_votes(records, jsonl)
    monkeypatch.setattr(vote_io, "_PARALLEL_BYTES", 1)  # two processes, line numbers shifted
    with pytest.warns(SelfBattleWarning) as caught:
        frame = read_votes([csv_path, jsonl], workers=2)
    assert len(caught) == 1
    assert f"left out 2 self-battles" in str(caught[0].message)
    assert f"{csv_path}:3, {jsonl}:2001;" in str(caught[0].message)
    assert len(frame) == 2001 and frame["file"].tolist()[0] == str(csv_path)


def test_uninterpretable_records_still_fail_the_whole_file(tmp_path):
    """Self-battles are forgiven; a missing model, an unknown winner or broken JSON are not."""
    cases = {
        "missing_model": ([{**PUBLISHED[0]}, {k: v for k, v in PUBLISHED[1].items() if k != "model_b"}],
                          "model_b is missing"),
        "unknown_winner": ([PUBLISHED[0], {**PUBLISHED[3], "winner": "leftvote"}], "winner is 'leftvote'"),
        "self_battle_and_bad_winner": ([PUBLISHED[0], {**PUBLISHED[2], "winner": "?"}], "winner is '?'"),
    }
    for name, (records, message) in cases.items():
        path = tmp_path / f"{name}.json"
        starts = write_published(path, records)
        with pytest.raises(VoteFileError) as caught:
            read_votes(path)
        assert str(caught.value).splitlines()[0].startswith(f"{path}:{starts[1]}: {message}"), name
    broken = tmp_path / "broken.json"
    write_published(broken, PUBLISHED)
    text = broken.read_text().splitlines()
    text[20] = text[20] + " oops"
    broken.write_text("\n".join(text))
    with pytest.raises(VoteFileError, match=r"broken.json:21: not valid JSON"):
        read_votes(broken)
