"""Vote files: the exported vote log and FastChat / GenAI-Arena ``clean_battle`` logs.

Formats (``input_format="auto"`` picks one from the file name, then from the first byte):

- ``jsonl``: one JSON object per line, what ``qwenrl votes export`` writes by default.
- ``csv``: a header row with the field names; empty cells are missing values.
- ``json``: a JSON list of objects, as FastChat and GenAI-Arena publish ``clean_battle`` logs.

A record needs ``model_a``, ``model_b`` and ``winner`` (one of :data:`OUTCOMES`); ``judge``,
``anony``, ``tstamp`` (Unix seconds), ``battle_id``, ``task``, ``prompt``, ``sample_a``,
``sample_b`` and ``flags`` (:mod:`arena.hygiene`) are optional, and other fields (FastChat's ``conversation_a``…) are ignored.
FastChat's ``question_id`` stands in for a missing ``battle_id``.

A **K-way vote** (K ≥ 3 images in one battle) has ``models`` (the K names in display order),
``best`` and ``worst`` (a name, or null; both null is "all bad") instead of ``model_a``,
``model_b`` and ``winner``, and ``samples`` (K sample ids) instead of ``sample_a`` and
``sample_b``. ``category`` (the prompt's family or editing verb) and ``covariates`` (one
object of numbers per image, in side order: ``aesthetics``, ``objects``…) may come with any
vote. :func:`write_votes` writes these fields only when a record has them (JSON lines) and as
JSON text in CSV cells; ``pairwise=True`` writes each K-way vote as the pairwise comparisons
it implies instead, for readers of FastChat's format, with a :class:`KwayExpandedWarning`.

Reading is all-or-nothing: every malformed record is reported as ``file:line: what is wrong``
(for a JSON list, the line where the record starts) in one :class:`VoteFileError`, and nothing
is returned. Large JSON-lines files are parsed by two processes at once.

Self-battles (the same model as ``model_a`` and ``model_b``) appear in published logs (GenAI-Arena's
``clean_battle_20240220.json`` has one). They carry no information — online Elo moves a model by
+K/2 − K/2 = 0, Bradley–Terry gets nothing from them — so they are left out, with one
:class:`SelfBattleWarning` giving their count and first positions; ``strict=True`` refuses them
like any malformed record instead.
"""

from __future__ import annotations

import csv
import ctypes
import functools
import json
import math
import os
import re
import tempfile
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from operator import attrgetter
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import numpy as np

from arena._quick import lazy_module, native_library
from arena.hygiene import is_flags_text
from arena.ratings import OUTCOMES, kway_comparisons, kway_problem, worker_pool

if TYPE_CHECKING:
    import pandas as pd
else:
    pd = lazy_module("pandas")  # imported on first use: see arena._quick

FORMATS: tuple[str, ...] = ("jsonl", "csv", "json")

BASE_FIELDS: tuple[str, ...] = (
    "battle_id", "task", "model_a", "model_b", "winner", "judge", "anony", "tstamp",
    "prompt", "sample_a", "sample_b", "flags",
)
"""Fields every exported vote has, in file order: FastChat's ``clean_battle`` fields (model_a,
model_b, winner, judge, anony, tstamp) and ours (battle_id, task, prompt, sample ids, flags:
see :mod:`arena.hygiene`)."""

EXTRA_FIELDS: tuple[str, ...] = ("category", "models", "best", "worst", "samples", "covariates")
"""Fields a vote has only when they apply: its category, a K-way vote's models and marks, and
the images' covariates. JSON lines leave them out when empty; CSV has a column for each."""

EXPORT_FIELDS: tuple[str, ...] = BASE_FIELDS + EXTRA_FIELDS

RATING_FIELDS: tuple[str, ...] = (
    "task", "model_a", "model_b", "winner", "judge", "anony", "tstamp", "flags", "models", "best", "worst",
)
"""The fields ``qwenrl elo`` needs; reading only these is faster."""

# Fields with few distinct values are returned as categoricals.
_CATEGORICAL = ("task", "model_a", "model_b", "winner", "judge", "flags", "best", "worst", "category")
_JSON_CELLS = ("models", "samples", "covariates")  # lists and objects: JSON text in a CSV cell
_MAX_PROBLEMS = 20
_PARALLEL_BYTES = 32 << 20  # JSON-lines files larger than this are parsed by two processes
_BLOCK_BYTES = 4 << 20  # read and decoded at a time


class SelfBattleWarning(UserWarning):
    """Self-battles were left out of the votes read (``strict=False``)."""


class KwayExpandedWarning(UserWarning):
    """K-way votes were written as the pairwise comparisons they imply (``pairwise=True``)."""


class VoteFileError(ValueError):
    """Malformed vote records; ``problems`` holds ``(path, line, message)`` for each."""

    def __init__(self, problems: Sequence[tuple[str, int, str]], total: int | None = None):
        self.problems = list(problems)
        total = len(self.problems) if total is None else total
        lines = [f"{path}:{line}: {message}" for path, line, message in self.problems[:_MAX_PROBLEMS]]
        if total > len(lines):
            lines.append(f"… and {total - len(lines)} more")
        super().__init__("\n".join(lines))


# ---------------------------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------------------------


def detect_format(path: str | os.PathLike) -> str:
    """``jsonl``, ``csv`` or ``json`` from the extension, else from the first non-blank byte."""
    suffixes = [s.lower() for s in Path(path).suffixes]
    suffixes = [s for s in suffixes if s not in (".gz",)]
    if suffixes and suffixes[-1] in (".jsonl", ".ndjson"):
        return "jsonl"
    if suffixes and suffixes[-1] == ".csv":
        return "csv"
    with open(path, "rb") as handle:
        head = handle.read(4096).lstrip()
    if head.startswith(b"["):
        return "json"
    if head.startswith(b"{"):
        return "jsonl"
    if suffixes and suffixes[-1] == ".json":
        return "json"
    if head:
        return "csv"
    return "jsonl"  # an empty file: no votes


def read_votes(
    paths: str | os.PathLike | Iterable[str | os.PathLike],
    *,
    input_format: str = "auto",
    fields: Sequence[str] = EXPORT_FIELDS,
    workers: int | None = None,
    strict: bool = False,
) -> pd.DataFrame:
    """Read and validate vote files into one table, in file order.

    Columns: ``fields`` plus ``file`` and ``line`` (where each vote came from). ``task``,
    ``model_a``, ``model_b``, ``winner`` and ``judge`` are categoricals, ``anony`` a nullable
    boolean, ``tstamp`` float seconds (NaN when missing). Raises :class:`VoteFileError` listing
    every malformed record (of every file) and returns nothing in that case.

    Self-battles are left out with one :class:`SelfBattleWarning` (their count and the first
    few ``file:line``); with ``strict`` they are malformed records like any other.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    fields = tuple(dict.fromkeys(("model_a", "model_b", "winner", *fields)))
    unknown = [f for f in fields if f not in EXPORT_FIELDS]
    if unknown:
        raise ValueError(f"unknown vote field(s): {', '.join(unknown)}")
    if input_format not in ("auto", *FORMATS):
        raise ValueError(f"input format must be auto, {', '.join(FORMATS)}; not {input_format!r}")
    parts: list[_Part] = []
    problems: list[tuple[str, int, str]] = []
    total_problems = 0
    for path in map(str, paths):
        fmt = detect_format(path) if input_format == "auto" else input_format
        reader = {"jsonl": _read_jsonl, "csv": _read_csv, "json": _read_json_list}[fmt]
        file_parts = reader(path, fields, workers)
        for part in file_parts:
            if strict and part.self_battles:
                part.problems = sorted(part.problems + [
                    (line, f"model_a and model_b are both {_show(name)}") for line, name in part.self_battles])
                part.total_problems += len(part.self_battles)
            total_problems += part.total_problems
            problems.extend((path, line, message) for line, message in part.problems)
        parts.extend(file_parts)
    if total_problems:
        raise VoteFileError(problems, total_problems)
    left_out = [(part.path, line) for part in parts for line, _ in part.self_battles]
    if left_out:
        for part in parts:
            part.drop_self_battles()
        warnings.warn(SelfBattleWarning(self_battle_message(left_out)), stacklevel=2)
    return _assemble(parts, fields)


HUMAN_JUDGE = "human"
"""The ``judge`` of a person's vote (an automatic judge votes under its own name)."""


def is_human_judge(judge: Any) -> bool:
    """Whether a vote's ``judge`` is a person: ``human``, or a FastChat / GenAI-Arena voter id
    (``arena_user_…``), which is how those logs mark human votes."""
    return isinstance(judge, str) and (judge == HUMAN_JUDGE or judge.startswith("arena_user"))


def self_battle_message(positions: Sequence[tuple[str, int]], shown: int = 5) -> str:
    """The one warning about left-out self-battles: how many, and where the first ones are."""
    where = ", ".join(f"{path}:{line}" for path, line in positions[:shown])
    more = f" and {len(positions) - shown} more" if len(positions) > shown else ""
    noun = "self-battle" if len(positions) == 1 else "self-battles"
    return (f"left out {len(positions)} {noun} (model_a and model_b the same model; such a vote carries no "
            f"information and changes no rating): {where}{more}; --strict refuses them instead")


@dataclass
class _Part:
    """Columns parsed from one file, or one byte range of a file, already validated."""

    path: str
    columns: dict[str, Any]  # field -> (codes, categories) | float array | list
    lines: np.ndarray
    problems: list[tuple[int, str]] = field(default_factory=list)
    total_problems: int = 0
    line_count: int = 0  # physical lines in the range (JSON lines only)
    self_battles: list[tuple[int, str]] = field(default_factory=list)  # (line, model), else valid records
    self_rows: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    def drop_self_battles(self) -> None:
        """Remove the self-battle rows from the columns. Coded fields are coded afresh, in
        first-seen order, so the table is exactly the one of a file without those rows (the
        model order decides how the bootstrap draws)."""
        if not len(self.self_rows):
            return
        keep = np.ones(len(self.lines), dtype=bool)
        keep[self.self_rows] = False
        for name, values in self.columns.items():
            if isinstance(values, tuple):
                codes = values[0][keep]
                used, first = np.unique(codes, return_index=True)
                order = used[np.argsort(first, kind="stable")]
                remap = np.zeros(len(values[1]), dtype=np.int64)
                remap[order] = np.arange(len(order))
                self.columns[name] = (remap[codes], [values[1][k] for k in order.tolist()])
            elif isinstance(values, np.ndarray):
                self.columns[name] = values[keep]
            else:
                self.columns[name] = [v for v, k in zip(values, keep.tolist()) if k]
        self.lines = self.lines[keep]
        self.self_battles, self.self_rows = [], np.zeros(0, dtype=np.int64)


def _read_jsonl(path: str, fields: tuple[str, ...], workers: int | None) -> list[_Part]:
    size = os.path.getsize(path)
    if workers is None:
        workers = 2 if (os.cpu_count() or 1) > 1 else 1
    if workers < 2 or size < _PARALLEL_BYTES:
        return [_parse_jsonl_range(path, 0, size, fields)]
    bounds = [0]
    with open(path, "rb") as handle:
        for k in range(1, workers):
            handle.seek(size * k // workers)
            handle.readline()  # move to the start of the next line
            bounds.append(max(handle.tell(), bounds[-1]))
    bounds.append(size)
    ranges = list(zip(bounds[:-1], bounds[1:]))
    # Where the C scanner reads the file it runs without the GIL, so threads share the work with
    # nothing to copy between processes; where msgspec does (it holds the GIL), processes.
    with worker_pool(workers - 1, threads=_scans_cleanly(path, fields)) as pool:
        futures = [pool.submit(_parse_jsonl_range, path, start, end, fields) for start, end in ranges[1:]]
        parts = [_parse_jsonl_range(path, *ranges[0], fields)]  # this process takes the first range
        parts += [future.result() for future in futures]
    # Line numbers restart in each range; shift them to the file's numbering.
    offset = 0
    for part in parts:
        part.lines += offset
        part.problems = [(line + offset, message) for line, message in part.problems]
        part.self_battles = [(line + offset, name) for line, name in part.self_battles]
        offset += part.line_count
    return parts


def _scans_cleanly(path: str, fields: tuple[str, ...]) -> bool:
    """Whether the C scanner reads the file's first block (and so most likely the rest)."""
    scanner = _BlockScanner.for_names(_Columns(fields).names)
    if scanner is None:
        return False
    blocks = _byte_blocks(path, 0, os.path.getsize(path))
    try:
        first, data, length, count = next(blocks)
    finally:
        blocks.close()
    return scanner.scan(data, length, count) is not None


def _parse_jsonl_range(path: str, start: int, end: int, fields: tuple[str, ...]) -> _Part:
    """Parse the lines in bytes [start, end) of a JSON-lines file (``start`` begins a line);
    line numbers count from 1 at ``start``. The loop is the hot path of ``qwenrl elo``.

    Each block of lines is first decoded by msgspec into records holding only the fields asked
    for (other fields are skipped unparsed, which is most of a line's bytes); a block with a
    blank line, a line that is not one JSON object, or anything else unusual is parsed again
    line by line, which says what is wrong and where.
    """
    columns = _Columns(fields)
    decoder = None  # msgspec's, made when a block first needs it
    scanner = _BlockScanner.for_names(columns.names)
    problems: list[tuple[int, str]] = []
    line_number = 0
    for first, data, length, count in _byte_blocks(path, start, end):
        line_number = first + count - 1
        scanned = scanner.scan(data, length, count) if scanner else None
        if scanned is not None:
            columns.add_scanned(scanner, data, scanned, first)
            continue
        block = data if length == len(data) else data[:length]  # a copy only on the slower paths
        decoder = decoder or _record_decoder(columns.names)
        if (structs := _fast_decode(decoder, block, count)) is not None:
            columns.add_structs(structs, first)
        else:
            _parse_lines_slowly(columns, block, first, problems)
    part = columns.validate(path)
    part.problems = sorted(problems + part.problems)
    part.total_problems += len(problems)
    part.line_count = line_number
    return part


_BLANK_LINE = re.compile(rb"\n[ \t\r]*\n")

# What the C scanner (arena/_scan.c) reads each field as: 0 text, 1 number, 2 boolean, 3 null only.
_SCAN_KINDS = {**{name: 0 for name in _CATEGORICAL}, "tstamp": 1, "anony": 2, "models": 3}
_SCAN_VALUES = np.array([False, True, None], dtype=object)  # the scanner's int8 codes 0, 1, -1


def _chunk_values(chunk: list | np.ndarray) -> list:
    """A chunk of a list-valued column as values: the scanner's int8 codes become values."""
    return _SCAN_VALUES[chunk].tolist() if isinstance(chunk, np.ndarray) else chunk


@functools.cache
def _scan_library() -> Any:
    """The C scanner ``arena/_scan.c`` (``scan_lines``, ``count_lines``), or None (see
    :func:`arena._quick.native_library`; msgspec then reads every block)."""
    library = native_library("_scan")
    if library is None:
        return None
    integers, real = (np.ctypeslib.ndpointer(t, flags="C_CONTIGUOUS") for t in (np.int64, np.float64))
    kinds = np.ctypeslib.ndpointer(np.int8, flags="C_CONTIGUOUS")
    n = ctypes.c_int64
    library.scan_lines.argtypes = [ctypes.c_char_p, n, n, ctypes.c_char_p, integers, kinds, n, integers, real,
                                   integers, integers]
    library.count_lines.argtypes = [ctypes.c_char_p, n]
    library.scan_lines.restype = library.count_lines.restype = n
    return library


@dataclass
class _Scanned:
    codes: np.ndarray  # (field, row): text codes (-1 missing), booleans 1 / 0 / -1
    numbers: np.ndarray  # (field, row), for number fields
    spans: np.ndarray  # (field, distinct, 2): offset and length of each distinct string
    distinct: np.ndarray  # (field,) how many distinct strings


class _BlockScanner:
    """The C scanner set up for one list of field names: the fast path for the common block,
    which gives up (None) on anything unusual; the callers then decode the block with msgspec."""

    def __init__(self, function: Any, names: tuple[str, ...]):
        self.function = function
        self.names = names
        encoded = [name.encode() for name in names]
        self.key_text = b"".join(encoded)
        self.key_len = np.array([len(k) for k in encoded], dtype=np.int64)
        self.kinds = np.array([_SCAN_KINDS[name] for name in names], dtype=np.int8)

    @classmethod
    def for_names(cls, names: tuple[str, ...]) -> _BlockScanner | None:
        """A scanner, or None where the extension is missing or a field is not one it reads."""
        library = _scan_library()
        if library is None or not all(name in _SCAN_KINDS for name in names) or len(names) > 64:
            return None
        return cls(library.scan_lines, names)

    def scan(self, data: bytes, length: int, count: int) -> _Scanned | None:
        """The ``count`` lines of ``data[:length]``, or None where the scanner gave up."""
        n_keys = len(self.names)
        codes = np.empty((n_keys, count), dtype=np.int64)
        numbers = np.empty((n_keys, count), dtype=np.float64)
        spans = np.empty((n_keys, count, 2), dtype=np.int64)
        distinct = np.zeros(n_keys, dtype=np.int64)
        status = self.function(data, length, count, self.key_text, self.key_len, self.kinds, n_keys, codes,
                               numbers, spans, distinct)
        return _Scanned(codes, numbers, spans, distinct) if status == 0 else None


def _record_decoder(names: tuple[str, ...]):
    """A msgspec decoder of JSON objects into records with only ``names``. ``tstamp`` must be a
    number (or absent: NaN) and ``anony`` a boolean; any other value of theirs, like any
    surprise, makes the block take the careful path, which names the line."""
    import msgspec

    typed = {"tstamp": (float, math.nan), "anony": (bool | None, None)}
    record = msgspec.defstruct("VoteRecord", [(name, *typed.get(name, (Any, None))) for name in names], gc=False)
    return msgspec.json.Decoder(record)


def _fast_decode(decoder, data: bytes, count: int) -> list | None:
    """The block's records, one per line, or None when the block needs the careful path."""
    import msgspec

    body = data[:-1] if data.endswith(b"\n") else data
    # decode_lines skips blank lines, so the line numbers would drift: such blocks take the careful path
    if not body or body[:1] in b" \t\r\n" or body[-1:] in b" \t\n" or _BLANK_LINE.search(body):
        return None
    try:
        structs = decoder.decode_lines(data)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    return structs if len(structs) == count else None  # two objects on one line: not one record


def _parse_lines_slowly(columns: _Columns, data: bytes, first: int, problems: list[tuple[int, str]]) -> None:
    """The careful path: each line decoded alone, every problem reported with its line."""
    decode = json.JSONDecoder().raw_decode
    keep, lines = columns.pending.append, columns.lines.append
    if data.endswith(b"\n"):
        data = data[:-1]
    for line_number, raw in enumerate(data.split(b"\n"), first):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            problems.append((line_number, f"not UTF-8 text ({exc.reason})"))
            continue
        try:
            record, stop = decode(text)
            if stop != len(text) and text[stop:].strip():
                raise ValueError
        except ValueError:
            if not text.strip():
                continue  # blank lines are allowed
            try:
                record = json.loads(text)  # slower, but says what is wrong
            except json.JSONDecodeError as exc:
                problems.append((line_number, f"not valid JSON: {exc.msg} (column {exc.colno})"))
                continue
        if type(record) is dict:
            keep(record)
            lines(line_number)
        else:
            problems.append((line_number, f"expected a JSON object, found {type(record).__name__}"))
    columns.flush()


def _byte_blocks(path: str, start: int, end: int):
    """(first line number, data, length, lines) for each block of whole lines in bytes
    [start, end): the block is ``data[:length]``. A partial last line is not copied onto the
    block but read again with the next one (unless one line is longer than a block)."""
    library = _scan_library()
    count_lines = library.count_lines if library else None  # C, faster than bytes.count
    first = 1
    with open(path, "rb") as handle:
        handle.seek(start)
        remaining = end - start
        while remaining > 0:
            data = handle.read(min(_BLOCK_BYTES, remaining))
            length = len(data)
            if length < remaining and not data.endswith(b"\n"):
                cut = data.rfind(b"\n") + 1
                if cut:
                    handle.seek(cut - length, os.SEEK_CUR)
                    length = cut
                else:  # a line longer than a block
                    data += handle.readline()
                    length = len(data)
            remaining -= length
            if count_lines:
                count = count_lines(data, length)
            else:
                count = data.count(b"\n", 0, length) + (not data.endswith(b"\n", 0, length))
            yield first, data, length, count
            first += count


def _read_json_list(path: str, fields: tuple[str, ...], workers: int | None) -> list[_Part]:
    with open(path, "rb") as handle:
        raw = handle.read()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise VoteFileError([(path, raw[: exc.start].count(b"\n") + 1, "not UTF-8 text")]) from None
    records, lines = _json_list_records(path, text)
    columns = _Columns(fields)
    problems: list[tuple[int, str]] = []
    for record, line in zip(records, lines.tolist()):
        columns.add(record, line, problems)
    del records
    part = columns.validate(path)
    part.problems = sorted(problems + part.problems)
    part.total_problems += len(problems)
    return [part]


def _json_list_records(path: str, text: str) -> tuple[list[Any], np.ndarray]:
    """Elements of a top-level JSON list and the line on which each starts, in one pass."""
    decode = json.JSONDecoder().raw_decode
    space = re.compile(r"\s*")
    pos = space.match(text).end()
    if pos == len(text):
        return [], np.zeros(0, dtype=np.int64)
    if text[pos] != "[":
        raise VoteFileError([(path, text.count("\n", 0, pos) + 1, "expected a JSON list of vote records")])
    records, lines = [], []
    line, last = 1, 0
    pos = space.match(text, pos + 1).end()
    try:
        if text.startswith("]", pos):
            pos += 1
        else:
            while True:
                line += text.count("\n", last, pos)
                last = pos
                record, pos = decode(text, pos)
                records.append(record)
                lines.append(line)
                pos = space.match(text, pos).end()
                if text.startswith("]", pos):
                    pos += 1
                    break
                if not text.startswith(",", pos):
                    raise json.JSONDecodeError("Expecting ',' delimiter", text, pos)
                pos = space.match(text, pos + 1).end()
        if text[pos:].strip():
            raise json.JSONDecodeError("Extra data", text, pos)
    except json.JSONDecodeError as exc:
        raise VoteFileError([(path, exc.lineno, f"not valid JSON: {exc.msg} (column {exc.colno})")]) from None
    return records, np.array(lines, dtype=np.int64)


def _read_csv(path: str, fields: tuple[str, ...], workers: int | None) -> list[_Part]:
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, na_filter=False, encoding="utf-8")
    except pd.errors.EmptyDataError:
        frame = pd.DataFrame(columns=list(fields))
    except (pd.errors.ParserError, UnicodeDecodeError):
        raise VoteFileError([_csv_first_bad_row(path)]) from None
    required = [name for name in ("model_a", "model_b", "winner") if name not in frame.columns]
    if required and len(frame.columns):  # one error for the header, not one per row
        shown = ", ".join(map(str, frame.columns[:12])) + (" …" if len(frame.columns) > 12 else "")
        raise VoteFileError([(path, 1, f"the header has no {', '.join(required)} column; it has: {shown}")])
    records_columns: dict[str, list] = {}
    for name in fields:
        if name in frame.columns:
            records_columns[name] = [None if v == "" else v for v in frame[name].tolist()]
        else:
            records_columns[name] = [None] * len(frame)
    if "battle_id" in fields and "question_id" in frame.columns:
        records_columns["battle_id"] = [
            b if b is not None else (q or None)
            for b, q in zip(records_columns["battle_id"], frame["question_id"].tolist())
        ]
    lines = np.arange(2, len(frame) + 2, dtype=np.int64)
    with open(path, "rb") as handle:
        physical = handle.read().rstrip(b"\r\n").count(b"\n") + 1
    if physical != len(frame) + 1:  # quoted newlines: count the lines each record spans
        lines = np.array(_csv_record_lines(path), dtype=np.int64)
    problems: list[tuple[int, str]] = []
    if "tstamp" in records_columns:
        records_columns["tstamp"] = _csv_numbers(records_columns["tstamp"], lines, problems)
    if "anony" in records_columns:
        records_columns["anony"] = _csv_booleans(records_columns["anony"], lines, problems)
    for name in ("sample_a", "sample_b"):
        if name in records_columns:
            records_columns[name] = [int(v) if v is not None and v.isdigit() else v for v in records_columns[name]]
    for name in _JSON_CELLS:
        if name in records_columns:
            records_columns[name] = _csv_json(name, records_columns[name], lines, problems)
    part = _validate_columns(path, records_columns, lines, fields)
    part.problems = sorted(problems + part.problems)
    part.total_problems += len(problems)
    return [part]


def _csv_json(name: str, values: list, lines: np.ndarray, problems: list[tuple[int, str]]) -> list:
    out = []
    for k, value in enumerate(values):
        try:
            out.append(None if value is None else json.loads(value))
        except ValueError:
            problems.append((int(lines[k]), f"{name} is {_show(value)}, not JSON"))
            out.append(None)
    return out


def _csv_numbers(values: list, lines: np.ndarray, problems: list[tuple[int, str]]) -> list:
    out = []
    for k, value in enumerate(values):
        if value is None:
            out.append(None)
            continue
        try:
            out.append(float(value))
        except ValueError:
            problems.append((int(lines[k]), f"tstamp is {value!r}, not a number"))
            out.append(None)
    return out


_TRUE = {"true", "True", "TRUE", "1"}
_FALSE = {"false", "False", "FALSE", "0"}


def _csv_booleans(values: list, lines: np.ndarray, problems: list[tuple[int, str]]) -> list:
    out = []
    for k, value in enumerate(values):
        if value is None or value in _TRUE or value in _FALSE:
            out.append(None if value is None else value in _TRUE)
        else:
            problems.append((int(lines[k]), f"anony is {value!r}, expected true or false"))
            out.append(None)
    return out


def _csv_record_lines(path: str) -> list[int]:
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        next(reader, None)
        starts, previous = [], reader.line_num
        for _ in reader:
            starts.append(previous + 1)
            previous = reader.line_num
    return starts


def _csv_first_bad_row(path: str) -> tuple[str, int, str]:
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.reader(handle)
            header = next(reader, [])
            previous = reader.line_num
            for row in reader:
                if len(row) != len(header):
                    return (path, previous + 1, f"{len(row)} cells where the header has {len(header)}")
                previous = reader.line_num
    except UnicodeDecodeError:
        return (path, 1, "not UTF-8 text")
    except csv.Error as exc:
        return (path, previous + 1, f"not valid CSV: {exc}")
    return (path, 1, "not valid CSV")


# ---------------------------------------------------------------------------------------------
# Validation: per column, on the distinct values, so a million votes check in milliseconds
# ---------------------------------------------------------------------------------------------


class _Columns:
    """Collects records as columns, a chunk at a time: a million live dicts would cost
    gigabytes and slow every pass of the garbage collector. Fields with few distinct values
    are stored as integer codes as they arrive."""

    def __init__(self, fields: tuple[str, ...]):
        self.fields = fields
        names = (*fields, "question_id") if "battle_id" in fields else fields
        self.names: tuple[str, ...] = tuple(names)
        # per field, chunks: code arrays (coded fields), float arrays or lists (tstamp), lists of
        # values or, from the C scanner, int8 codes (1 true, 0 false, -1 null: see _SCAN_VALUES)
        self.columns: dict[str, list] = {name: [] for name in names}
        self.index: dict[str, dict] = {name: {} for name in names if name in _CATEGORICAL}
        self.lines: list[int] = []  # of the pending records
        self.line_chunks: list[np.ndarray] = []
        self.pending: list[dict] = []

    def add(self, record: Any, line: int, problems: list[tuple[int, str]]) -> None:
        if type(record) is not dict:
            problems.append((line, f"expected a JSON object, found {type(record).__name__}"))
            return
        self.pending.append(record)
        self.lines.append(line)
        if len(self.pending) >= 50_000:
            self.flush()

    def add_structs(self, structs: list, first: int) -> None:
        """Records decoded by msgspec (attributes, one per field), from line ``first`` on."""
        self.flush()
        for name, column in self.columns.items():
            values = list(map(attrgetter(name), structs))
            if name in self.index:
                column.append(_codes_fast(values, self.index[name]))
            elif name == "tstamp":  # chunks: arrays from here, lists from the careful path
                column.append(np.array(values, dtype=np.float64))
            else:
                column.append(values)
        self.line_chunks.append(np.arange(first, first + len(structs), dtype=np.int64))

    def add_scanned(self, scanner: _BlockScanner, data: bytes, scanned: _Scanned, first: int) -> None:
        """A block read by the C scanner, from line ``first`` on."""
        self.flush()
        count = scanned.codes.shape[1]
        for k, (name, column) in enumerate(self.columns.items()):
            kind = scanner.kinds[k]
            if kind == 0:  # text: each distinct string decoded once, coded in first-seen order
                index = self.index[name]
                lookup = np.empty(scanned.distinct[k] + 1, dtype=np.int64)
                for u, (offset, length) in enumerate(scanned.spans[k, : scanned.distinct[k]].tolist()):
                    lookup[u] = index.setdefault(data[offset : offset + length].decode(), len(index))
                row = scanned.codes[k]
                if (row < 0).any():
                    lookup[-1] = index.setdefault(None, len(index))
                column.append(lookup[row])
            elif kind == 1:
                column.append(scanned.numbers[k].copy())
            else:  # true, false or null (anony), or null only (models)
                column.append(scanned.codes[k].astype(np.int8))
        self.line_chunks.append(np.arange(first, first + count, dtype=np.int64))

    def flush(self) -> None:
        for name, column in self.columns.items():
            values = [record.get(name) for record in self.pending]
            if name in self.index:
                column.append(_codes(values, self.index[name]))
            elif name == "tstamp":
                if values:
                    column.append(values)
            elif values:
                column.append(values)
        if self.lines:
            self.line_chunks.append(np.array(self.lines, dtype=np.int64))
        self.pending.clear()  # in place: the parse loop holds its append method
        self.lines.clear()

    def validate(self, path: str) -> _Part:
        self.flush()
        columns: dict[str, Any] = {}
        for name, column in self.columns.items():
            if name in self.index:
                codes = np.concatenate(column) if column else np.zeros(0, dtype=np.int64)
                columns[name] = (codes, [_unwrap(v) for v in self.index[name]])
            elif name == "tstamp":
                if all(isinstance(chunk, np.ndarray) for chunk in column):
                    columns[name] = np.concatenate(column) if column else np.zeros(0)
                else:  # the careful path's raw values, checked one by one (NaN: absent)
                    columns[name] = [v for chunk in column for v in (
                        [None if x != x else x for x in chunk.tolist()] if isinstance(chunk, np.ndarray) else chunk)]
            elif column and all(isinstance(chunk, np.ndarray) for chunk in column):
                columns[name] = np.concatenate(column)  # codes from the C scanner, checked there
            else:
                columns[name] = [v for chunk in column for v in _chunk_values(chunk)]
        if "battle_id" in columns:  # FastChat calls it question_id
            ids, questions = columns["battle_id"], columns.pop("question_id")
            columns["battle_id"] = [b if b is not None else q for b, q in zip(ids, questions)]
        lines = np.concatenate(self.line_chunks) if self.line_chunks else np.zeros(0, dtype=np.int64)
        return _validate_columns(path, columns, lines, self.fields)


class _Unhashable:
    """A list or object found where a string belongs: hashed by identity, reported later."""

    def __init__(self, value: Any):
        self.value = value


def _unwrap(value: Any) -> Any:
    return value.value if isinstance(value, _Unhashable) else value


def _codes_fast(values: list, index: dict) -> np.ndarray:
    """:func:`_codes` through pandas' hash table: a chunk's distinct values are coded once and
    looked up (a missing value, None, gets its own code after the chunk's others)."""
    if values and values.count(values[0]) == len(values):  # a constant column (task, judge…): no hashing
        try:
            return np.full(len(values), index.setdefault(values[0], len(index)), dtype=np.int64)
        except TypeError:
            return _codes(values, index)
    try:
        local, uniques = pd.factorize(np.array(values, dtype=object), use_na_sentinel=True)
    except TypeError:  # an unhashable value (a list where a string belongs)
        return _codes(values, index)
    lookup = np.empty(len(uniques) + 1, dtype=np.int64)
    for u, value in enumerate(uniques.tolist()):
        lookup[u] = index.setdefault(value, len(index))
    if (local < 0).any():
        lookup[-1] = index.setdefault(None, len(index))
    return lookup[local]


def _codes(values: list, index: dict) -> np.ndarray:
    try:
        return np.array([index.setdefault(v, len(index)) for v in values], dtype=np.int64)
    except TypeError:
        codes = []
        for v in values:
            try:
                codes.append(index.setdefault(v, len(index)))
            except TypeError:
                codes.append(index.setdefault(_Unhashable(v), len(index)))
        return np.array(codes, dtype=np.int64)


def _is_text(value: Any) -> bool:
    return type(value) is str


def _is_name(value: Any) -> bool:
    return type(value) is str and value.strip() != ""


def _is_number(value: Any) -> bool:
    return type(value) in (int, float) and math.isfinite(value)


def _is_sample_ref(value: Any) -> bool:
    return type(value) in (int, str)


# field -> (test for a present value, what to say, required)
_RULES: dict[str, tuple[Callable[[Any], bool], str, bool]] = {
    "model_a": (_is_name, "a non-empty string", True),
    "model_b": (_is_name, "a non-empty string", True),
    "winner": (lambda v: v in OUTCOMES, "one of " + ", ".join(OUTCOMES), True),
    "judge": (_is_text, "a string", False),
    "task": (_is_name, "a non-empty string", False),
    "battle_id": (_is_name, "a non-empty string", False),
    "prompt": (_is_text, "a string", False),
    "anony": (lambda v: type(v) is bool, "true or false", False),
    "tstamp": (_is_number, "a number (Unix seconds)", False),
    "sample_a": (_is_sample_ref, "an integer or a string", False),
    "sample_b": (_is_sample_ref, "an integer or a string", False),
    "flags": (is_flags_text, "comma-separated flag names (fast, burst…)", False),
    "category": (_is_name, "a non-empty string", False),
    "models": (lambda v: type(v) is list, "a list of three or more model names", False),
    "best": (_is_name, "a model name or null", False),
    "worst": (_is_name, "a model name or null", False),
    "samples": (lambda v: type(v) is list and all(_is_sample_ref(x) for x in v), "a list of sample ids", False),
    "covariates": (lambda v: _covariates_problem(v) is None, "a list of objects of numbers, one per image", False),
}
_PAIRWISE_ONLY = ("model_a", "model_b", "winner")


def _covariates_problem(value: Any) -> str | None:
    if type(value) is not list or not value:
        return "not a list"
    for side in value:
        if type(side) is not dict or not all(type(k) is str and _is_number(v) for k, v in side.items()):
            return "not objects of numbers"
    return None


def _validate_columns(path: str, columns: dict[str, Any], lines: np.ndarray, fields: tuple[str, ...]) -> _Part:
    """Check every field against :data:`_RULES`; coded fields are checked on their distinct
    values only, so a million votes take milliseconds. Coded fields arrive as
    ``(codes, distinct values)`` or as a plain list."""
    problems: list[tuple[int, str]] = []
    total = 0
    out: dict[str, Any] = {}
    bad_rows: set[int] = set()

    def report(rows: Iterable[int], name: str, value_of: Callable[[int], Any], expected: str) -> None:
        nonlocal total
        for row in rows:
            value = value_of(row)
            what = "missing" if value is None else f"{_show(value)}, expected {expected}"
            problems.append((int(lines[row]), f"{name} is {what}"))
            bad_rows.add(row)
            total += 1

    kway = np.zeros(len(lines), dtype=bool)
    if "models" in columns and not isinstance(columns["models"], np.ndarray):  # codes: all null
        kway = np.array([v is not None for v in columns["models"]], dtype=bool)
    for name in fields:
        values = columns[name]
        test, expected, required = _RULES[name]
        if name in _CATEGORICAL:
            codes, uniques = values if isinstance(values, tuple) else _factorize(values)
            invalid = [
                code for code, value in enumerate(uniques)
                if (value is None and required) or (value is not None and not _safe(test, value))
            ]
            if invalid:
                rows = np.flatnonzero(np.isin(codes, invalid))
                if name in _PAIRWISE_ONLY and kway.any():  # a K-way vote has no model_a, model_b, winner
                    missing = [code for code, value in enumerate(uniques) if value is None]
                    rows = rows[~(kway[rows] & np.isin(codes[rows], missing))]
                report(rows.tolist(), name, lambda row: uniques[codes[row]], expected)
            out[name] = (codes, uniques)
        elif name == "tstamp":
            numbers, rows = _float_column(values, test)
            report(rows, name, values.__getitem__, expected)
            out[name] = numbers
        elif isinstance(values, np.ndarray):  # the C scanner's codes: their types were checked there
            out[name] = values
        else:
            if set(map(type, values)) <= {str, type(None)} and name != "anony":
                rows = [] if name not in ("battle_id", "task") else [k for k, v in enumerate(values) if v is not None and not v.strip()]
            elif name == "anony" and set(map(type, values)) <= {bool, type(None)}:
                rows = []
            else:
                rows = [k for k, v in enumerate(values) if v is not None and not _safe(test, v)]
            report(rows, name, values.__getitem__, expected)
            out[name] = values
    if kway.any():
        for row, message in _kway_row_problems(columns, kway, bad_rows):
            problems.append((int(lines[row]), message))
            bad_rows.add(row)
            total += 1
    # The same model on both sides: not a draw but no vote at all (read_votes leaves it out or,
    # strict, refuses it).
    a_codes, a_names = out["model_a"]
    b_codes, b_names = out["model_b"]
    b_index = {name: k for k, name in enumerate(b_names) if type(name) is str}
    lookup = np.array([b_index.get(name, -2) if type(name) is str else -2 for name in a_names], dtype=np.int64)
    same = np.flatnonzero(lookup[a_codes] == b_codes) if len(a_codes) else np.zeros(0, dtype=np.int64)
    self_rows = np.array([row for row in same.tolist() if row not in bad_rows], dtype=np.int64)
    self_battles = [(int(lines[row]), a_names[a_codes[row]]) for row in self_rows.tolist()]
    problems.sort()
    return _Part(path, out, lines, problems[: _MAX_PROBLEMS * 5], total,
                 self_battles=self_battles, self_rows=self_rows)


def _kway_row_problems(columns: dict[str, Any], kway: np.ndarray, bad_rows: set[int]) -> list[tuple[int, str]]:
    """What is wrong with each K-way record whose fields passed their own checks: its models
    and marks together, a pairwise field beside them, sample ids or covariates of another length."""
    def column(name: str) -> list:
        values = columns.get(name)
        if values is None:
            return [None] * len(kway)
        if isinstance(values, tuple):
            codes, uniques = values
            return [uniques[c] for c in codes.tolist()]
        return values

    models, best, worst = column("models"), column("best"), column("worst")
    pairwise = [column(name) for name in _PAIRWISE_ONLY if name in columns]
    samples, covariates = column("samples"), column("covariates")
    out = []
    for row in np.flatnonzero(kway).tolist():
        if row in bad_rows:
            continue
        problem = kway_problem(models[row], best[row], worst[row])
        if problem is None and any(values[row] is not None for values in pairwise):
            problem = "a K-way vote (models) has no model_a, model_b or winner"
        for name, values in (("samples", samples), ("covariates", covariates)):
            if problem is None and type(values[row]) is list and len(values[row]) != len(models[row]):
                problem = f"{name} has {len(values[row])} entries for {len(models[row])} models"
        if problem:
            out.append((row, problem))
    return out


def _safe(test: Callable[[Any], bool], value: Any) -> bool:
    try:
        return bool(test(value))
    except TypeError:  # e.g. an unhashable value tested for membership
        return False


def _show(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 60 else text[:57] + "…"


def _factorize(values: list) -> tuple[np.ndarray, list]:
    """Integer codes and distinct values, in first-seen order; unhashable values stay apart."""
    index: dict = {}
    try:
        codes = [index.setdefault(v, len(index)) for v in values]
        return np.array(codes, dtype=np.int64), list(index)
    except TypeError:  # a list or an object where a string belongs: give it its own slot
        uniques: list = []
        codes = []
        index = {}
        for v in values:
            try:
                code = index.setdefault(v, len(uniques))
            except TypeError:
                code = len(uniques)
            if code == len(uniques):
                uniques.append(v)
            codes.append(code)
        return np.array(codes, dtype=np.int64), uniques


def _float_column(values: list, test: Callable[[Any], bool]) -> tuple[np.ndarray, list[int]]:
    if isinstance(values, np.ndarray):  # decoded as numbers already (NaN where absent)
        return values, np.flatnonzero(np.isinf(values)).tolist()
    types = set(map(type, values))
    if types <= {float, int, type(None)}:
        numbers = np.array([math.nan if v is None else v for v in values], dtype=np.float64)
        bad = np.flatnonzero(~np.isfinite(numbers) & np.array([v is not None for v in values], dtype=bool))
        return numbers, bad.tolist()
    bad = [k for k, v in enumerate(values) if v is not None and not _safe(test, v)]
    numbers = np.array([float(v) if _safe(test, v) else math.nan for v in values], dtype=np.float64)
    return numbers, bad


def _assemble(parts: list[_Part], fields: tuple[str, ...]) -> pd.DataFrame:
    columns: dict[str, Any] = {}
    for name in fields:
        pieces = [part.columns[name] for part in parts]
        if name in _CATEGORICAL:
            columns[name] = _join_categoricals(pieces)
        elif name == "anony" and all(isinstance(piece, np.ndarray) for piece in pieces) and pieces:
            codes = np.concatenate(pieces)
            columns[name] = pd.arrays.BooleanArray(codes == 1, codes < 0)
        elif name == "anony":
            columns[name] = pd.array(
                np.array([value for piece in pieces for value in _chunk_values(piece)], dtype=object), dtype="boolean"
            )
        elif name == "tstamp":
            columns[name] = np.concatenate(pieces) if pieces else np.zeros(0)
        elif all(isinstance(piece, np.ndarray) for piece in pieces) and pieces:  # scanner codes: null only
            columns[name] = np.full(sum(map(len, pieces)), None, dtype=object)
        else:  # object columns: a list of ints with a None in it would become floats (329 → 329.0)
            columns[name] = _objects([value for piece in pieces for value in _chunk_values(piece)])
    files = list(dict.fromkeys(part.path for part in parts))
    part_file = [files.index(part.path) for part in parts]
    columns["file"] = pd.Categorical.from_codes(
        np.repeat(np.array(part_file, dtype=np.int64), [len(part.lines) for part in parts]), categories=files
    )
    columns["line"] = np.concatenate([part.lines for part in parts]) if parts else np.zeros(0, np.int64)
    return pd.DataFrame(columns)


def _objects(values: list) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


def sample_ref(value: Any) -> Any:
    """A sample id as it was written: an integer stays an integer (a table that held a missing
    value may have turned it into a float, 329.0), a string stays a string, missing is None."""
    value = _plain(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _categorical(codes: np.ndarray, uniques: list) -> pd.Categorical:
    """Codes over distinct values that may include None (mapped to missing)."""
    if any(u is None for u in uniques):
        keep = [k for k, u in enumerate(uniques) if u is not None]
        remap = np.full(len(uniques), -1)
        remap[keep] = np.arange(len(keep))
        return pd.Categorical.from_codes(remap[codes], categories=[uniques[k] for k in keep])
    return pd.Categorical.from_codes(codes, categories=uniques)


def _join_categoricals(pieces: list[tuple[np.ndarray, list]]) -> pd.Categorical:
    if not pieces:
        return pd.Categorical([])
    if len(pieces) == 1:
        return _categorical(*pieces[0])
    # Categories in first-seen order over the pieces; a piece may have none (a field null
    # throughout one half of a file), which pandas' union_categoricals refuses for its dtype.
    index: dict[Any, int] = {}
    recoded = []
    for codes, uniques in pieces:
        lookup = np.array([-1 if value is None else index.setdefault(value, len(index)) for value in uniques] + [-1],
                          dtype=np.int64)
        recoded.append(lookup[codes])
    return pd.Categorical.from_codes(np.concatenate(recoded), categories=list(index))


# ---------------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------------


def write_votes(
    records: Iterable[Mapping[str, Any]] | pd.DataFrame,
    destination: str | os.PathLike | TextIO,
    *,
    format: str = "auto",  # noqa: A002 - the word users know
    pairwise: bool = False,
) -> int:
    """Write votes (:data:`EXPORT_FIELDS`, in that order) as JSON lines or CSV; returns the count
    of records written.

    ``destination`` is a path or an open text file. ``format="auto"`` means CSV for a ``.csv``
    path, else JSON lines. A path is written aside and renamed, so the file appears whole or
    not at all. ``pairwise``: each K-way vote is written as the comparisons it implies
    (:func:`arena.ratings.kway_comparisons`), for readers of FastChat's pairwise format, and a
    :class:`KwayExpandedWarning` says how many were; those comparisons are not independent votes.
    """
    is_path = isinstance(destination, (str, os.PathLike))
    fmt = format
    if fmt == "auto":
        fmt = "csv" if is_path and str(destination).lower().endswith(".csv") else "jsonl"
    if fmt not in ("jsonl", "csv"):
        raise ValueError(f"output format must be jsonl or csv, not {fmt!r}")
    if isinstance(records, pd.DataFrame):
        records = frame_records(records)
    if pairwise:
        records = _PairwiseRecords(records)
    if not is_path:
        return _write_records(records, destination, fmt)  # type: ignore[arg-type]
    target = Path(destination)  # type: ignore[arg-type]
    target.parent.mkdir(parents=True, exist_ok=True)
    handle = tempfile.NamedTemporaryFile(
        "w", encoding="utf-8", newline="", dir=target.parent, prefix=f".{target.name}.", delete=False
    )
    try:
        with handle:
            count = _write_records(records, handle, fmt)
        os.replace(handle.name, target)
    except BaseException:
        os.unlink(handle.name)
        raise
    return count


def _write_records(records: Iterable[Mapping[str, Any]], handle: TextIO, fmt: str) -> int:
    count = 0
    cell = {name: sample_ref if name in ("sample_a", "sample_b") else _plain for name in EXPORT_FIELDS}  # 329 stays 329
    if fmt == "jsonl":
        dumps = json.JSONEncoder(ensure_ascii=False).encode
        for record in records:
            line = {name: cell[name](record.get(name)) for name in BASE_FIELDS}
            for name in EXTRA_FIELDS:
                value = _plain(record.get(name))
                if value is not None:
                    line[name] = value
            handle.write(dumps(line) + "\n")
            count += 1
    else:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(EXPORT_FIELDS)
        for record in records:
            writer.writerow([_csv_cell(cell[name](record.get(name))) for name in EXPORT_FIELDS])
            count += 1
    if isinstance(records, _PairwiseRecords) and records.expanded:
        warnings.warn(KwayExpandedWarning(
            f"wrote {records.expanded} K-way vote(s) as the {records.comparisons} pairwise comparisons they imply "
            "(FastChat's format has no K-way vote); they are not independent votes, so intervals computed from "
            "these records are too narrow: rate the K-way file instead"), stacklevel=3)
    return count


class _PairwiseRecords:
    """Records with each K-way vote replaced by its comparisons (counting how many were)."""

    def __init__(self, records: Iterable[Mapping[str, Any]]):
        self.records = records
        self.expanded = self.comparisons = 0

    def __iter__(self):
        for record in self.records:
            models = record.get("models")
            if models is None:
                yield record
                continue
            self.expanded += 1
            samples, covariates = record.get("samples") or [], record.get("covariates") or []
            side = {name: k for k, name in enumerate(models)}
            base = {k: v for k, v in record.items() if k not in ("models", "best", "worst", "samples", "covariates")}
            for model_a, model_b, winner in kway_comparisons(list(models), record.get("best"), record.get("worst")):
                a, b = side[model_a], side[model_b]
                self.comparisons += 1
                yield {**base, "model_a": model_a, "model_b": model_b, "winner": winner,
                       "sample_a": samples[a] if samples else None, "sample_b": samples[b] if samples else None,
                       "covariates": [covariates[a], covariates[b]] if covariates else None}


def _plain(value: Any) -> Any:
    """JSON-ready value: numpy and pandas scalars become Python ones, missing becomes None."""
    if value is None or value is pd.NA:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, np.generic):
        return _plain(value.item())
    return value


def _csv_cell(value: Any) -> str:
    value = _plain(value)
    if value is None:
        return ""
    if isinstance(value, (list, dict)):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def frame_records(frame: pd.DataFrame) -> Iterable[dict[str, Any]]:
    """Rows of a vote table (from :func:`read_votes` or a store) as plain dicts, missing
    values as None; the fields of :data:`EXTRA_FIELDS` only when a row has them."""
    names = [name for name in (*EXPORT_FIELDS, "file", "line") if name in frame.columns]
    data = {name: frame[name].tolist() for name in names}
    plain = {name: sample_ref if name in ("sample_a", "sample_b") else _plain for name in names}
    extra = [name for name in names if name in EXTRA_FIELDS]
    for k in range(len(frame)):
        record = {name: plain[name](data[name][k]) for name in names}
        for name in extra:
            if record[name] is None:
                del record[name]
        yield record


__all__ = [
    "BASE_FIELDS", "EXPORT_FIELDS", "EXTRA_FIELDS", "FORMATS", "KwayExpandedWarning", "RATING_FIELDS",
    "SelfBattleWarning", "VoteFileError", "detect_format",
    "frame_records", "is_human_judge", "read_votes", "sample_ref", "self_battle_message", "write_votes",
]
