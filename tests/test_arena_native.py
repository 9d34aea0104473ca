"""The optional C parts of the arena (arena/_loops.c, arena/_scan.c), the exact Poisson
sampler of the bootstrap, and pandas imported on first use: each gives what the plain Python
path gives."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from arena import io as vote_io
from arena import ratings
from arena.io import RATING_FIELDS, read_votes, write_votes


def test_the_extensions_are_built():
    # `pip install -e .` builds them wherever a C compiler is found (CI has one): a missing one
    # here means the fast paths below were never exercised.
    from arena import _loops, _scan  # noqa: F401

    assert ratings._compiled_passes() is not None and vote_io._scan_library() is not None


# --------------------------------------------------------------------------------------------
# Online Elo and TrueSkill in C
# --------------------------------------------------------------------------------------------


def random_codes(seed: int, n: int = 5000, m: int = 12):
    rng = np.random.default_rng(seed)
    a = rng.integers(0, m, n)
    b = (a + rng.integers(1, m, n)) % m
    outcome = rng.choice(np.array([ratings.B_WINS, ratings.TIE, ratings.A_WINS], dtype=np.int8), n, p=[0.45, 0.1, 0.45])
    return a, b, outcome, m


@pytest.mark.parametrize("seed", [0, 1])
def test_the_c_passes_give_the_python_loops_ratings(seed, monkeypatch):
    a, b, outcome, m = random_codes(seed)
    params = ratings._trueskill_params(ratings.trueskill.TrueSkill())
    elo_c = ratings._online_elo_arrays(a, b, outcome, m, 4.0, 10.0, 400.0, 1000.0)
    mu_c, sigma_c = ratings._trueskill_arrays(a, b, outcome, m, params)
    monkeypatch.setattr(ratings, "_compiled_passes", lambda: None)
    elo_py = ratings._online_elo_arrays(a, b, outcome, m, 4.0, 10.0, 400.0, 1000.0)
    mu_py, sigma_py = ratings._trueskill_arrays(a, b, outcome, m, params)
    assert np.abs(elo_c - elo_py).max() < 1e-9
    assert np.abs(mu_c - mu_py).max() < 1e-9 and np.abs(sigma_c - sigma_py).max() < 1e-9
    assert elo_c.std() > 10 and mu_c.std() > 0.5  # the votes moved the ratings


def test_the_c_passes_refuse_codes_out_of_range():
    a, b, outcome, m = random_codes(2, n=10)
    bad_model = b.copy()
    bad_model[3] = m
    with pytest.raises(ValueError, match="out of range"):
        ratings._online_elo_arrays(a, bad_model, outcome, m, 4.0, 10.0, 400.0, 1000.0)
    bad_outcome = outcome.copy()
    bad_outcome[0] = 7
    with pytest.raises(ValueError, match="out of range"):
        ratings._trueskill_arrays(a, b, bad_outcome, m, ratings._trueskill_params(ratings.trueskill.TrueSkill()))
    with pytest.raises(ValueError, match="differ in length"):
        ratings._online_elo_arrays(a, b[:-1], outcome, m, 4.0, 10.0, 400.0, 1000.0)


# --------------------------------------------------------------------------------------------
# The JSON-lines scanner
# --------------------------------------------------------------------------------------------

NAMES = vote_io._Columns(RATING_FIELDS).names


def scan(text: str | bytes, names: tuple[str, ...] = NAMES):
    data = text.encode() if isinstance(text, str) else text
    count = data.count(b"\n") + (not data.endswith(b"\n"))
    return vote_io._BlockScanner.for_names(names).scan(data, len(data), count)


def test_the_scanner_reads_a_block():
    lines = [
        {"battle_id": "x", "task": "t2i", "model_a": "base", "model_b": "grpo", "winner": "model_b", "judge": "human",
         "anony": True, "tstamp": 1750000000.4069152, "prompt": "a \"red\" circle \u2014 ok \\ \n", "sample_a": [1, {"k": []}],
         "flags": None},
        {"model_a": "grpo", "model_b": "b\u00e9se \u4e2d", "winner": "tie", "anony": False, "tstamp": -2.5e-3, "flags": "fast"},
        {"model_b": "base", "model_a": "grpo", "winner": "model_a", "anony": None, "tstamp": 17},
        {"model_a": "base", "model_b": "grpo", "winner": "model_a", "tstamp": None},
    ]
    text = "\n".join(json.dumps(line, ensure_ascii=False) for line in lines)
    scanned = scan(text)
    assert scanned is not None
    data = text.encode()
    k = {name: NAMES.index(name) for name in NAMES}

    def strings(name):
        spans = scanned.spans[k[name], : scanned.distinct[k[name]]]
        return [data[o : o + n].decode() for o, n in spans.tolist()]

    assert strings("model_a") == ["base", "grpo"] and scanned.codes[k["model_a"]].tolist() == [0, 1, 1, 0]
    assert strings("model_b") == ["grpo", "b\u00e9se \u4e2d", "base"]
    assert scanned.codes[k["task"]].tolist() == [0, -1, -1, -1] and scanned.codes[k["flags"]].tolist() == [-1, 0, -1, -1]
    assert scanned.codes[k["anony"]].tolist() == [1, 0, -1, -1] and scanned.codes[k["models"]].tolist() == [-1] * 4
    assert scanned.numbers[k["tstamp"]][:3].tolist() == [1750000000.4069152, -2.5e-3, 17.0]
    assert math.isnan(scanned.numbers[k["tstamp"]][3])  # null, as absent


@pytest.mark.parametrize("text", [
    "1750000000.4069152", "0.1", "-0", "0", "123456789012345678", "9007199254740993", "1e22", "1E-7", "4.35",
    "2.2250738585072014e-308", "0.30000000000000004", "99999999999999999999", "1.7976931348623157e308",
])
def test_the_scanner_rounds_numbers_as_python_does(text):
    scanned = scan('{"model_a": "a", "model_b": "b", "winner": "tie", "tstamp": %s}' % text)
    value = scanned.numbers[NAMES.index("tstamp")][0]
    assert value == float(text) and math.copysign(1, value) == math.copysign(1, float(text))


def test_the_scanner_rounds_random_timestamps_as_python_does():
    rng = np.random.default_rng(3)
    values = np.concatenate([1.75e9 + rng.random(300) * 1e7, rng.random(100), rng.normal(0, 1e5, 100)])
    text = "\n".join('{"model_a": "a", "model_b": "b", "winner": "tie", "tstamp": %r}' % float(v) for v in values)
    assert scan(text).numbers[NAMES.index("tstamp")].tolist() == [float(repr(float(v))) for v in values]


def test_the_scanner_rounds_long_decimals_as_python_does():
    # 16 to 19 digits, every split between whole and fraction digits, and decimals that lie
    # exactly halfway between two doubles: correctly rounded, as float() rounds them.
    rng = np.random.default_rng(4)
    texts = []
    for digits in rng.integers(10**15, 10**19, 3000, dtype=np.uint64).tolist():
        text = str(digits)
        point = int(rng.integers(1, len(text)))
        texts.append(text[:point] + "." + text[point:])
    texts += [str(2**53 + k) for k in range(1, 40, 2)] + [f"{2**54 + 2 * k}.5" for k in range(10)]
    text = "\n".join('{"model_a": "a", "model_b": "b", "winner": "tie", "tstamp": %s}' % t for t in texts)
    assert scan(text).numbers[NAMES.index("tstamp")].tolist() == [float(t) for t in texts]


GOOD = '{"model_a": "a", "model_b": "b", "winner": "tie"}'


@pytest.mark.parametrize("block", [
    GOOD + "\n\n" + GOOD,  # a blank line
    GOOD + " \n" + GOOD,  # a space after the object
    GOOD + "\r\n" + GOOD,  # CRLF
    '{"model_a": "a", "model_a": "c", "model_b": "b", "winner": "tie"}',  # a repeated wanted key
    '{"model_a": "a\\u0041", "model_b": "b", "winner": "tie"}',  # an escape in a wanted string
    '{"model\\u005fa": "a", "model_b": "b", "winner": "tie"}',  # an escaped key
    '{"model_a": 5, "model_b": "b", "winner": "tie"}',  # a number where text belongs
    '{"model_a": "a", "model_b": "b", "winner": "tie", "tstamp": NaN}',
    '{"model_a": "a", "model_b": "b", "winner": "tie", "tstamp": "5"}',
    '{"model_a": "a", "model_b": "b", "winner": "tie", "tstamp": 1e999}',
    '{"model_a": "a", "model_b": "b", "winner": "tie", "anony": 1}',
    '{"models": ["a", "b", "c"], "best": "a"}',  # a K-way vote: msgspec reads it
    '{"model_a": "a", "model_b": "b", "winner": "tie"',  # unfinished
    GOOD + GOOD,  # two objects on one line
    '[1, 2]',
    '{"model_a": "a", "model_b": "b", "winner": "tie", "prompt": "\\x"}',  # a bad escape in a skipped string
    '{"model_a": "a", "model_b": "b", "winner": "tie", "prompt": "tab\there"}',  # a raw control character
    '{"model_a": "a", "model_b": "b", "winner": "tie", "x": 01}',  # a leading zero
    '{"model_a": "a", "model_b": "b", "winner": "tie", "x": [1, 2,]}',  # a trailing comma
    '{"model_a": "a", "model_b": "b", "winner": "tie", "x": ' + "[" * 70 + "]" * 70 + "}",  # too deep
    b'{"model_a": "\xff", "model_b": "b", "winner": "tie"}',  # not UTF-8
    b'{"model_a": "\xed\xa0\x80", "model_b": "b", "winner": "tie"}',  # an encoded surrogate
    b'{"model_a": "a", "model_b": "b", "winner": "tie", "prompt": "\xc0\xaf"}',  # an overlong form, skipped field
])
def test_the_scanner_gives_up_on_anything_unusual(block):
    assert scan(block) is None


def test_the_scanner_only_takes_fields_it_reads():
    assert vote_io._BlockScanner.for_names(("model_a", "model_b", "winner", "prompt")) is None
    assert vote_io._BlockScanner.for_names(("model_a", "model_b", "winner", "category")) is not None


def tricky_records(n: int, seed: int) -> list[dict]:
    """Votes whose fields take every form a file may hold, some blocks of them unusual."""
    rng = np.random.default_rng(seed)
    names = ["base", "grpo-t2i", "b\u00e9se", "\u6a21\u578b", "emoji \U0001f600", ""]
    records = []
    for k in range(n):
        a, b = rng.choice(len(names) - 1, 2, replace=False)
        record = {"battle_id": f"b{k}", "task": ["t2i", "edit", None][k % 3], "model_a": names[a], "model_b": names[b],
                  "winner": ["model_a", "model_b", "tie", "tie (bothbad)"][k % 4], "judge": ["human", "oracle"][k % 2],
                  "anony": [True, False, None][k % 3], "tstamp": float(1.75e9 + rng.random() * 1e6) if k % 7 else 12,
                  "prompt": "line\nbreak \u2014 \"quoted\" \\ back", "sample_a": k, "sample_b": {"nested": [k, None]},
                  "flags": ["fast", None, "burst,named"][k % 3], "category": ["counting", "color"][k % 2]}
        if k % 5 == 0:
            del record["judge"], record["tstamp"]
        records.append(record)
    records[150] = {"models": ["base", "grpo-t2i", "b\u00e9se"], "best": "base", "worst": None, "task": "t2i"}
    records[-1]["model_a"] = 'quote"d'  # an escape in a wanted string: that block takes msgspec's path
    records[7]["prompt"] = "a long prompt " * 1500  # a line longer than a block of the tests below
    return records


@pytest.mark.parametrize("fields", [RATING_FIELDS, (*RATING_FIELDS, "category"),
                                    ("model_a", "model_b", "winner", "models", "best", "worst")])
def test_files_read_with_the_scanner_equal_files_read_without(tmp_path, monkeypatch, fields):
    path = tmp_path / "votes.jsonl"
    write_votes(tricky_records(600, seed=1), path)
    monkeypatch.setattr(vote_io, "_BLOCK_BYTES", 8192)  # many blocks, one of them with the K-way vote
    scanned_blocks = []
    scan_block = vote_io._BlockScanner.scan
    monkeypatch.setattr(vote_io._BlockScanner, "scan", lambda self, data, length, count: scanned_blocks.append(
        result := scan_block(self, data, length, count)) or result)
    with_scanner = read_votes(path, fields=fields, workers=1)
    assert sum(block is not None for block in scanned_blocks) >= 3  # the scanner read most blocks…
    assert "models" not in fields or any(block is None for block in scanned_blocks)  # …not the K-way one
    monkeypatch.setattr(vote_io, "_PARALLEL_BYTES", 1)
    pd.testing.assert_frame_equal(read_votes(path, fields=fields, workers=2), with_scanner)  # two threads
    monkeypatch.setattr(vote_io, "_scan_library", lambda: None)
    pd.testing.assert_frame_equal(read_votes(path, fields=fields, workers=1), with_scanner)
    pd.testing.assert_frame_equal(read_votes(path, fields=fields, workers=2), with_scanner)  # two processes


def test_malformed_records_are_reported_the_same_with_the_scanner(tmp_path, monkeypatch):
    path = tmp_path / "votes.jsonl"
    lines = [json.dumps(r) for r in tricky_records(300, seed=2)]
    lines[40] = lines[40].replace('"winner": "', '"winner": "x')
    lines[200] = '{"model_a": "base", "model_b": 3, "winner": "tie"}'
    path.write_text("\n".join(lines) + "\n")
    monkeypatch.setattr(vote_io, "_BLOCK_BYTES", 8192)
    with pytest.raises(vote_io.VoteFileError) as with_scanner:
        read_votes(path, fields=RATING_FIELDS)
    monkeypatch.setattr(vote_io, "_scan_library", lambda: None)
    with pytest.raises(vote_io.VoteFileError) as without:
        read_votes(path, fields=RATING_FIELDS)
    assert with_scanner.value.problems == without.value.problems
    assert [line for _, line, _ in with_scanner.value.problems] == [41, 201]


# --------------------------------------------------------------------------------------------
# The bootstrap's Poisson sampler
# --------------------------------------------------------------------------------------------


def test_the_table_sampler_draws_poisson_counts():
    counts = np.array([1.0, 4.0, 4.0, 30.0, 250.0, 999.0])
    draws = ratings.PoissonSampler(counts).draw(np.random.default_rng(0), 40_000)
    assert draws.dtype.kind == "i" and (draws >= 0).all()
    assert draws.mean(axis=0) == pytest.approx(counts, rel=0.02)
    assert draws.var(axis=0) == pytest.approx(counts, rel=0.06)
    for cell, lam in ((0, 1.0), (3, 30.0)):  # the probabilities of single values
        for value in range(max(0, int(lam) - 2), int(lam) + 3):
            pmf = math.exp(value * math.log(lam) - lam - math.lgamma(value + 1))
            share = (draws[:, cell] == value).mean()
            assert share == pytest.approx(pmf, abs=5 * math.sqrt(pmf * (1 - pmf) / len(draws)))


def test_the_sampler_leaves_large_and_fractional_counts_to_numpy():
    counts = np.array([0.0, 2.5, 5000.0, 7.0])
    sampler = ratings.PoissonSampler(counts)
    assert sampler.table_cells.tolist() == [3] and sampler.other_cells.tolist() == [1, 2]
    draws = sampler.draw(np.random.default_rng(1), 20_000)
    assert (draws[:, 0] == 0).all()
    assert draws.mean(axis=0)[1:] == pytest.approx(counts[1:], rel=0.03)
    assert sampler.draw(np.random.default_rng(1), 0).shape == (0, 4)


def test_intervals_agree_with_numpys_sampler(monkeypatch):
    # The tables change which resamples a seed draws, not their distribution: the intervals of
    # the two samplers agree to within the bootstrap's own noise.
    from tests.test_arena_ratings import STRENGTHS, synthetic_votes

    votes = synthetic_votes(STRENGTHS, 3000, seed=5, tie_rate=0.1)
    ours = ratings.leaderboard(votes, rounds=2000, seed=1, with_online=False)
    monkeypatch.setattr(ratings, "POISSON_TABLES", 0)  # every cell through numpy's sampler
    numpys = ratings.leaderboard(votes, rounds=2000, seed=1, with_online=False)
    for a, b in zip(ours.rows, numpys.rows):
        assert a["elo"] == b["elo"]
        width = a["ci_high"] - a["ci_low"]
        assert a["ci_low"] == pytest.approx(b["ci_low"], abs=0.08 * width)
        assert a["ci_high"] == pytest.approx(b["ci_high"], abs=0.08 * width)


# --------------------------------------------------------------------------------------------
# pandas on first use
# --------------------------------------------------------------------------------------------


def test_qwenrl_elo_imports_pandas_only_when_it_needs_it():
    probe = ("import sys, arena.cli; print('pandas' in sys.modules); "
             "from arena import io; io.pd.DataFrame; print('pandas' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "True"]


def test_the_lazy_module_answers_as_the_module():
    from arena._quick import import_in_background, lazy_module

    stand_in = lazy_module("json")
    assert stand_in.dumps([1]) == "[1]" and stand_in.loads is json.loads
    thread = import_in_background("json")
    thread.join()
    assert not thread.is_alive()
    with pytest.raises(ModuleNotFoundError):
        lazy_module("no_such_module_here").anything  # noqa: B018
