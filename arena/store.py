"""The arena's SQLite store: models, prompts, samples, judgements, battles and votes.

One :class:`ArenaStore` over sqlite-utils. The database runs in WAL mode, so readers never
wait for the writer. Every write goes through one connection under a lock, inside
``BEGIN IMMEDIATE``, so a write sees a consistent database and two writers (threads or
processes) never interleave; reads use one connection per thread.

Votes are append-only: one vote per battle (a UNIQUE column), no UPDATE or DELETE (triggers
refuse them). :meth:`ArenaStore.record_vote` accepts a vote only for an existing battle with no
vote yet, from the voter it was served to, with an outcome in :data:`OUTCOMES`; anything else
raises a :class:`VoteError` and changes nothing. A vote may carry flags (``fast``, ``burst``…,
see :mod:`arena.hygiene`); an admin may exclude a voter (:meth:`ArenaStore.exclude_voter`),
which leaves their votes out of the default boards without touching them, and reverses.

Schema changes are migrations: functions registered with :func:`migration`, applied in order
at open, each in its own transaction and recorded in the ``_migrations`` table.

A table another layer keeps in the same database (the studio's training jobs, ``app.jobs``) is
read and written through the same two doors: :meth:`ArenaStore.read` and the single writer
:meth:`ArenaStore.write`.

Example::

    store = ArenaStore("workspace/arena.db")
    store.register_model("shapes-base", tasks=["t2i"])
    ...
    battle = store.create_battle(sample_a, sample_b, voter="session-1")
    store.record_vote(battle["id"], "model_a", voter="session-1")
"""

from __future__ import annotations

import contextlib
import json
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import sqlite_utils

from arena.hygiene import EXCLUDED, FAST, NAMED, is_flags_text, join_flags, with_flags
from arena.io import HUMAN_JUDGE, frame_records, is_human_judge
from arena.ratings import OUTCOMES, kway_problem

class StoreError(ValueError):
    """A request the store cannot carry out (an unknown model, prompt or sample…)."""


class VoteError(StoreError):
    """A vote that was refused; nothing was written."""


class UnknownBattle(VoteError):
    """No battle has this id."""


class AlreadyVoted(VoteError):
    """The battle already has its vote."""


class InvalidOutcome(VoteError):
    """The outcome is not one of OUTCOMES."""


class WrongVoter(VoteError):
    """The battle was served to another voter."""


class RevealedBattle(VoteError):
    """The battle's names were shown before any vote: a vote now would not be blind."""


class ImportConflict(VoteError):
    """Imported votes that cannot be added; ``problems`` lists ``where: what`` for each."""

    def __init__(self, problems: list[str], total: int | None = None):
        self.problems = problems
        total = len(problems) if total is None else total
        shown = problems[:20] + ([f"… and {total - 20} more"] if total > 20 else [])
        super().__init__("\n".join(shown))


# ---------------------------------------------------------------------------------------------
# Migrations
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Migration:
    name: str
    apply: Callable[[sqlite_utils.Database], None]


MIGRATIONS: list[Migration] = []
"""Applied in this order; never edit or reorder one that has shipped, add a new one."""


def migration(fn: Callable[[sqlite_utils.Database], None]) -> Callable[[sqlite_utils.Database], None]:
    """Register a schema migration, named after the function."""
    if any(m.name == fn.__name__ for m in MIGRATIONS):
        raise ValueError(f"migration {fn.__name__} is registered twice")
    MIGRATIONS.append(Migration(fn.__name__, fn))
    return fn


@migration
def m001_initial(db: sqlite_utils.Database) -> None:
    statements = [
        """CREATE TABLE models (
            name TEXT PRIMARY KEY,
            tasks TEXT NOT NULL DEFAULT '[]',      -- JSON list of task names
            source TEXT,                           -- checkpoint folder or hub id
            parent TEXT,                           -- the model it was trained from
            kind TEXT NOT NULL DEFAULT 'model',    -- base, grpo, distill, imported…
            meta TEXT NOT NULL DEFAULT '{}',       -- JSON: step, config, anything else
            created REAL NOT NULL
        )""",
        """CREATE TABLE prompts (
            id INTEGER PRIMARY KEY,
            task TEXT NOT NULL,
            text TEXT NOT NULL,
            family TEXT,
            spec TEXT,                             -- JSON: what the prompt asks for, when known
            source_image TEXT,                     -- editing: the image to edit
            created REAL NOT NULL
        )""",
        "CREATE UNIQUE INDEX prompts_identity ON prompts (task, text, ifnull(source_image, ''))",
        """CREATE TABLE samples (
            id INTEGER PRIMARY KEY,
            model TEXT NOT NULL REFERENCES models (name),
            prompt_id INTEGER NOT NULL REFERENCES prompts (id),
            seed INTEGER NOT NULL,
            task TEXT NOT NULL,
            image_path TEXT NOT NULL,
            content_hash TEXT,
            created REAL NOT NULL,
            UNIQUE (model, prompt_id, seed)
        )""",
        "CREATE INDEX samples_by_prompt ON samples (prompt_id)",
        """CREATE TABLE judgements (
            id INTEGER PRIMARY KEY,
            sample_id INTEGER NOT NULL REFERENCES samples (id),
            judge TEXT NOT NULL,
            score REAL,                            -- NULL when the judge does not apply
            parts TEXT NOT NULL DEFAULT '{}',      -- JSON: named sub-scores
            rationale TEXT NOT NULL DEFAULT '',
            created REAL NOT NULL,
            UNIQUE (sample_id, judge)
        )""",
        """CREATE TABLE battles (
            id TEXT PRIMARY KEY,                   -- secrets.token_urlsafe: not guessable
            task TEXT NOT NULL,
            model_a TEXT NOT NULL REFERENCES models (name),
            model_b TEXT NOT NULL REFERENCES models (name),
            prompt_id INTEGER REFERENCES prompts (id),
            sample_a INTEGER REFERENCES samples (id),
            sample_b INTEGER REFERENCES samples (id),
            voter TEXT,                            -- who it was served to
            created REAL NOT NULL,
            meta TEXT,                             -- JSON: provenance of imported battles
            CHECK (model_a <> model_b)
        )""",
        "CREATE INDEX battles_by_task ON battles (task)",
        f"""CREATE TABLE votes (
            id INTEGER PRIMARY KEY,
            battle_id TEXT NOT NULL UNIQUE REFERENCES battles (id),
            outcome TEXT NOT NULL CHECK (outcome IN ({", ".join(repr(o) for o in OUTCOMES)})),
            voter TEXT,
            judge TEXT NOT NULL DEFAULT 'human',   -- 'human' or the automatic judge's name
            anony INTEGER NOT NULL DEFAULT 1 CHECK (anony IN (0, 1)),
            tstamp REAL NOT NULL
        )""",
        "CREATE INDEX votes_by_time ON votes (tstamp)",
        """CREATE TRIGGER votes_no_update BEFORE UPDATE ON votes
           BEGIN SELECT RAISE(ABORT, 'votes are append-only'); END""",
        """CREATE TRIGGER votes_no_delete BEFORE DELETE ON votes
           BEGIN SELECT RAISE(ABORT, 'votes are append-only'); END""",
        # the studio's training jobs (app.jobs keeps them, and their statuses): this migration
        # shipped with the table, and stays as it shipped
        """CREATE TABLE jobs (
            id INTEGER PRIMARY KEY,
            kind TEXT NOT NULL,                    -- grpo, distill…
            config TEXT NOT NULL DEFAULT '{}',   -- JSON
            status TEXT NOT NULL DEFAULT 'queued'
                CHECK (status IN ('queued', 'running', 'done', 'failed', 'cancelled', 'lost')),
            pid INTEGER,
            run_dir TEXT,
            created REAL NOT NULL,
            started REAL,
            finished REAL,
            error TEXT
        )""",
    ]
    for statement in statements:
        db.execute(statement)


@migration
def m002_vote_flags(db: sqlite_utils.Database) -> None:
    """Flags on votes (a sorted, comma-separated set of names: see arena.hygiene) and the
    voters an admin left out of the boards (a row per voter while excluded; votes untouched)."""
    db.execute("ALTER TABLE votes ADD COLUMN flags TEXT NOT NULL DEFAULT ''")
    db.execute(
        """CREATE TABLE excluded_voters (
            voter TEXT PRIMARY KEY,
            reason TEXT NOT NULL DEFAULT '',
            created REAL NOT NULL
        )"""
    )


RANKED = "ranked"
"""The ``outcome`` of a K-way vote; its marks are in ``best`` and ``worst``."""


@migration
def m003_kway_battles(db: sqlite_utils.Database) -> None:
    """K-way battles and votes: a battle's ``models`` and ``samples`` (JSON lists, K ≥ 3; NULL for
    a pair), when its names were ``revealed``; a vote's ``best`` and ``worst`` marks with the
    outcome 'ranked'. The votes table is rebuilt from its own SQL to widen the outcome check,
    keeping every column, index and trigger (votes stay append-only: DROP fires no trigger)."""
    db.execute("ALTER TABLE battles ADD COLUMN models TEXT")
    db.execute("ALTER TABLE battles ADD COLUMN samples TEXT")
    db.execute("ALTER TABLE battles ADD COLUMN revealed REAL")
    sql = db.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'votes'").fetchone()[0]
    check = "CHECK (outcome IN (" + ", ".join(repr(o) for o in OUTCOMES) + "))"
    if check not in sql:
        raise RuntimeError(f"votes has an outcome check this migration does not know: {sql}")
    wider = "CHECK (outcome IN (" + ", ".join(repr(o) for o in (*OUTCOMES, RANKED)) + "))"
    others = db.execute(
        "SELECT sql FROM sqlite_master WHERE tbl_name = 'votes' AND type IN ('index', 'trigger') AND sql IS NOT NULL"
    ).fetchall()
    db.execute(sql.replace(check, wider).replace("CREATE TABLE votes", "CREATE TABLE votes_wider", 1))
    db.execute("INSERT INTO votes_wider SELECT * FROM votes")
    db.execute("DROP TABLE votes")
    db.execute("ALTER TABLE votes_wider RENAME TO votes")
    for (statement,) in others:
        db.execute(statement)
    db.execute("ALTER TABLE votes ADD COLUMN best TEXT")
    db.execute("ALTER TABLE votes ADD COLUMN worst TEXT")


@migration
def m004_battles_by_voter(db: sqlite_utils.Database) -> None:
    """An index on who each battle was served to: the studio asks whether a voter is new on
    every first battle of a voter it has not seen since it started."""
    db.execute("CREATE INDEX IF NOT EXISTS battles_by_voter ON battles (voter)")


# ---------------------------------------------------------------------------------------------
# The store
# ---------------------------------------------------------------------------------------------

_VOTE_COLUMNS = (
    "battle_id", "task", "model_a", "model_b", "winner", "judge", "anony", "tstamp", "prompt",
    "sample_a", "sample_b", "flags", "category", "models", "best", "worst", "samples", "covariates",
)


class ArenaStore:
    """The arena database. Safe to share between threads; see the module docstring."""

    def __init__(self, path: str | Path = ":memory:", *, timeout: float = 30.0):
        self.path = str(path)
        self._timeout = timeout
        self._memory = self.path == ":memory:"
        self._lock = threading.RLock()
        self._local = threading.local()
        self._readers: list[sqlite_utils.Database] = []
        if not self._memory:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._writer = self._connect()
        if not self._memory:
            self._writer.enable_wal()
            self._writer.execute("PRAGMA synchronous = NORMAL")  # durable across crashes in WAL
        self._migrate()

    # -- connections ---------------------------------------------------------------------------

    def _connect(self) -> sqlite_utils.Database:
        conn = sqlite3.connect(self.path, timeout=self._timeout, check_same_thread=False)
        db = sqlite_utils.Database(conn, execute_plugins=False)
        db.execute("PRAGMA foreign_keys = ON")
        return db

    @contextlib.contextmanager
    def write(self) -> Iterator[sqlite_utils.Database]:
        """The single writer: one transaction, taken with BEGIN IMMEDIATE, under the lock."""
        with self._lock:
            db = self._writer
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.conn.rollback()
                raise
            else:
                db.execute("COMMIT")

    @contextlib.contextmanager
    def read(self) -> Iterator[sqlite_utils.Database]:
        """This thread's reader (an in-memory database has only the writer's connection)."""
        if self._memory:
            with self._lock:
                yield self._writer
            return
        db = getattr(self._local, "db", None)
        if db is None:
            db = self._local.db = self._connect()
            with self._lock:
                self._readers.append(db)
        yield db

    def _query(self, sql: str, params: Iterable | Mapping | None = None) -> list[dict[str, Any]]:
        with self.read() as db:
            return list(db.query(sql, params))

    def close(self) -> None:
        with self._lock:
            for db in self._readers:
                db.close()
            self._readers.clear()
            self._writer.close()

    def __enter__(self) -> ArenaStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- migrations ----------------------------------------------------------------------------

    def _migrate(self) -> None:
        with self.write() as db:
            db.execute("CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied REAL NOT NULL)")
        for step in MIGRATIONS:
            with self.write() as db:
                if db.execute("SELECT 1 FROM _migrations WHERE name = ?", [step.name]).fetchone():
                    continue
                step.apply(db)
                db["_migrations"].insert({"name": step.name, "applied": time.time()})

    def applied_migrations(self) -> list[str]:
        return [row["name"] for row in self._query("SELECT name FROM _migrations ORDER BY rowid")]

    # -- models --------------------------------------------------------------------------------

    def register_model(
        self, name: str, *, tasks: Iterable[str] = (), source: str | None = None, parent: str | None = None,
        kind: str = "model", meta: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Add a model, or update its tasks, source, parent, kind and meta; returns it."""
        if not isinstance(name, str) or not name.strip():
            raise StoreError("a model needs a non-empty name")
        row = {
            "name": name, "tasks": json.dumps(sorted(set(tasks))), "source": source, "parent": parent,
            "kind": kind, "meta": json.dumps(dict(meta or {})),
        }
        with self.write() as db:
            db.execute(
                """INSERT INTO models (name, tasks, source, parent, kind, meta, created)
                   VALUES (:name, :tasks, :source, :parent, :kind, :meta, :created)
                   ON CONFLICT (name) DO UPDATE SET tasks = excluded.tasks, source = excluded.source,
                       parent = excluded.parent, kind = excluded.kind, meta = excluded.meta""",
                {**row, "created": time.time()},
            )
        return self.get_model(name)  # type: ignore[return-value]

    def get_model(self, name: str) -> dict[str, Any] | None:
        rows = self._query("SELECT * FROM models WHERE name = ?", [name])
        return _model_row(rows[0]) if rows else None

    def list_models(self, task: str | None = None) -> list[dict[str, Any]]:
        """Models, oldest first; with ``task``, only those registered for it."""
        rows = self._query(
            """SELECT * FROM models WHERE :task IS NULL
                   OR EXISTS (SELECT 1 FROM json_each(models.tasks) WHERE value = :task)
               ORDER BY created, name""",
            {"task": task},
        )
        return [_model_row(row) for row in rows]

    def lineage(self, name: str) -> list[str]:
        """The chain of parents ending with ``name``, oldest first (e.g. base → grpo@300)."""
        chain = [name]
        model = self.get_model(name)
        if model is None:
            raise StoreError(f"unknown model {name!r}")
        while model and model["parent"] and model["parent"] not in chain:
            chain.append(model["parent"])
            model = self.get_model(model["parent"])
        return chain[::-1]

    # -- prompts -------------------------------------------------------------------------------

    def add_prompt(
        self, task: str, text: str, *, family: str | None = None, spec: Mapping[str, Any] | None = None,
        source_image: str | None = None,
    ) -> int:
        """Add a prompt (or find the same one: task, text and source image) and return its id."""
        return self.add_prompts([{"task": task, "text": text, "family": family, "spec": spec,
                                  "source_image": source_image}])[0]

    def add_prompts(self, prompts: Iterable[Mapping[str, Any]]) -> list[int]:
        ids = []
        with self.write() as db:
            for prompt in prompts:
                task, text = prompt.get("task"), prompt.get("text")
                if not task or not isinstance(text, str):
                    raise StoreError("a prompt needs a task and a text")
                spec = prompt.get("spec")
                db.execute(
                    """INSERT INTO prompts (task, text, family, spec, source_image, created)
                       VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING""",
                    [task, text, prompt.get("family"), None if spec is None else json.dumps(spec),
                     prompt.get("source_image"), time.time()],
                )
                row = db.execute(
                    "SELECT id FROM prompts WHERE task = ? AND text = ? AND ifnull(source_image, '') = ifnull(?, '')",
                    [task, text, prompt.get("source_image")],
                ).fetchone()
                ids.append(row[0])
        return ids

    def get_prompt(self, prompt_id: int) -> dict[str, Any] | None:
        rows = self._query("SELECT * FROM prompts WHERE id = ?", [prompt_id])
        return _json_fields(rows[0], spec=None) if rows else None

    def list_prompts(self, task: str | None = None, family: str | None = None) -> list[dict[str, Any]]:
        rows = self._query(
            """SELECT * FROM prompts WHERE (:task IS NULL OR task = :task)
               AND (:family IS NULL OR family = :family) ORDER BY id""",
            {"task": task, "family": family},
        )
        return [_json_fields(row, spec=None) for row in rows]

    # -- samples and judgements ----------------------------------------------------------------

    def add_sample(
        self, model: str, prompt_id: int, seed: int, image_path: str, *, content_hash: str | None = None
    ) -> int:
        """Add a generated image; the same (model, prompt, seed) returns the existing id."""
        return self.add_samples([{"model": model, "prompt_id": prompt_id, "seed": seed,
                                  "image_path": image_path, "content_hash": content_hash}])[0]

    def add_samples(self, samples: Iterable[Mapping[str, Any]]) -> list[int]:
        ids = []
        with self.write() as db:
            for sample in samples:
                model, prompt_id = sample.get("model"), sample.get("prompt_id")
                if db.execute("SELECT 1 FROM models WHERE name = ?", [model]).fetchone() is None:
                    raise StoreError(f"unknown model {model!r}: register it first")
                prompt = db.execute("SELECT task FROM prompts WHERE id = ?", [prompt_id]).fetchone()
                if prompt is None:
                    raise StoreError(f"unknown prompt {prompt_id!r}")
                db.execute(
                    """INSERT INTO samples (model, prompt_id, seed, task, image_path, content_hash, created)
                       VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING""",
                    [model, prompt_id, int(sample["seed"]), prompt[0], str(sample["image_path"]),
                     sample.get("content_hash"), time.time()],
                )
                row = db.execute(
                    "SELECT id FROM samples WHERE model = ? AND prompt_id = ? AND seed = ?",
                    [model, prompt_id, int(sample["seed"])],
                ).fetchone()
                ids.append(row[0])
        return ids

    def get_sample(self, sample_id: int) -> dict[str, Any] | None:
        rows = self._query("SELECT * FROM samples WHERE id = ?", [sample_id])
        return rows[0] if rows else None

    def list_samples(
        self, *, model: str | None = None, task: str | None = None, prompt_id: int | None = None
    ) -> list[dict[str, Any]]:
        return self._query(
            """SELECT * FROM samples WHERE (:model IS NULL OR model = :model)
               AND (:task IS NULL OR task = :task) AND (:prompt_id IS NULL OR prompt_id = :prompt_id)
               ORDER BY id""",
            {"model": model, "task": task, "prompt_id": prompt_id},
        )

    def add_judgement(
        self, sample_id: int, judge: str, score: float | None, *, parts: Mapping[str, Any] | None = None,
        rationale: str = "",
    ) -> int:
        """Store a judge's verdict on a sample (replacing that judge's earlier one)."""
        with self.write() as db:
            if db.execute("SELECT 1 FROM samples WHERE id = ?", [sample_id]).fetchone() is None:
                raise StoreError(f"unknown sample {sample_id!r}")
            db.execute(
                """INSERT INTO judgements (sample_id, judge, score, parts, rationale, created)
                   VALUES (?, ?, ?, ?, ?, ?)
                   ON CONFLICT (sample_id, judge) DO UPDATE SET score = excluded.score,
                       parts = excluded.parts, rationale = excluded.rationale, created = excluded.created""",
                [sample_id, judge, score, json.dumps(dict(parts or {})), rationale, time.time()],
            )
            return db.execute(
                "SELECT id FROM judgements WHERE sample_id = ? AND judge = ?", [sample_id, judge]
            ).fetchone()[0]

    def judgements(self, *, sample_id: int | None = None, judge: str | None = None) -> list[dict[str, Any]]:
        rows = self._query(
            """SELECT * FROM judgements WHERE (:sample_id IS NULL OR sample_id = :sample_id)
               AND (:judge IS NULL OR judge = :judge) ORDER BY id""",
            {"sample_id": sample_id, "judge": judge},
        )
        return [_json_fields(row, parts={}) for row in rows]

    # -- battles and votes ---------------------------------------------------------------------

    def create_battle(
        self, sample_a: int, sample_b: int, *, voter: str | None = None, meta: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """A battle between two samples of the same prompt by different models; ``voter`` is
        who it is served to (only they may vote on it); ``meta`` is kept with it (``covariates``:
        one object of numbers per image, in side order). Returns the battle with its id."""
        with self.write() as db:
            rows = {
                row[0]: row
                for row in db.execute(
                    "SELECT id, model, prompt_id, task FROM samples WHERE id IN (?, ?)", [sample_a, sample_b]
                )
            }
            for sample in (sample_a, sample_b):
                if sample not in rows:
                    raise StoreError(f"unknown sample {sample!r}")
            a, b = rows[sample_a], rows[sample_b]
            if a[2] != b[2]:
                raise StoreError(f"samples {sample_a} and {sample_b} answer different prompts")
            if a[1] == b[1]:
                raise StoreError(f"samples {sample_a} and {sample_b} are both by {a[1]!r}")
            battle = {
                "id": secrets.token_urlsafe(16), "task": a[3], "model_a": a[1], "model_b": b[1],
                "prompt_id": a[2], "sample_a": sample_a, "sample_b": sample_b, "voter": voter,
                "created": time.time(), "meta": json.dumps(dict(meta)) if meta else None,
            }
            db["battles"].insert(battle)
        return battle

    def create_kway_battle(
        self, samples: list[int], *, voter: str | None = None, meta: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """A battle among K ≥ 3 samples of the same prompt by K different models, shown in this
        order; voted on with :meth:`record_ranking`. Returns it with ``models`` and its id."""
        samples = [int(x) for x in samples]
        if len(samples) < 3:
            raise StoreError("a K-way battle needs three or more samples (two: create_battle)")
        with self.write() as db:
            marks = ", ".join("?" * len(samples))
            rows = {row[0]: row for row in db.execute(
                f"SELECT id, model, prompt_id, task FROM samples WHERE id IN ({marks})", samples)}
            for sample in samples:
                if sample not in rows:
                    raise StoreError(f"unknown sample {sample!r}")
            if len({rows[x][2] for x in samples}) != 1:
                raise StoreError(f"samples {samples} answer different prompts")
            models = [rows[x][1] for x in samples]
            if len(set(models)) != len(models):
                raise StoreError(f"samples {samples} are not by {len(samples)} different models: {models}")
            first = rows[samples[0]]
            battle = {
                "id": secrets.token_urlsafe(16), "task": first[3], "model_a": models[0], "model_b": models[1],
                "prompt_id": first[2], "sample_a": samples[0], "sample_b": samples[1], "voter": voter,
                "created": time.time(), "meta": json.dumps(dict(meta)) if meta else None,
                "models": json.dumps(models), "samples": json.dumps(samples),
            }
            db["battles"].insert(battle)
        return {**battle, "models": models, "samples": samples}

    def reveal_battle(self, battle_id: str, voter: str | None = None) -> dict[str, Any]:
        """Show a battle's names without a vote (the voter skips it): from then on no vote is
        taken for it (:class:`RevealedBattle`). Returns the battle."""
        with self.write() as db:
            row = db.execute("SELECT voter FROM battles WHERE id = ?", [battle_id]).fetchone()
            if row is None:
                raise UnknownBattle(f"no battle {battle_id!r}")
            if voter is not None and row[0] is not None and voter != row[0]:
                raise WrongVoter(f"battle {battle_id!r} was served to another voter")
            db.execute("UPDATE battles SET revealed = coalesce(revealed, ?) WHERE id = ?", [time.time(), battle_id])
        return self.get_battle(battle_id)  # type: ignore[return-value]

    def open_battle(self, voter: str, task: str, k: int, since: float) -> dict[str, Any] | None:
        """The latest battle of ``task`` with ``k`` images served to ``voter`` after ``since``
        that is still open (neither voted on nor revealed, and not a named one): its ``id``,
        ``prompt_id``, ``sample_a``, ``sample_b`` and ``samples`` (JSON text); None when none is."""
        shape = "b.models IS NULL" if k == 2 else "json_array_length(b.models) = :k"
        rows = self._query(
            f"""SELECT b.id, b.prompt_id, b.sample_a, b.sample_b, b.samples FROM battles b
               WHERE b.voter = :voter AND b.task = :task AND {shape} AND b.revealed IS NULL AND b.created > :window
                 AND coalesce(json_extract(b.meta, '$.named'), 0) = 0
                 AND NOT EXISTS (SELECT 1 FROM votes v WHERE v.battle_id = b.id)
               ORDER BY b.created DESC LIMIT 1""", {"voter": voter, "task": task, "window": since, "k": k})
        return rows[0] if rows else None

    def get_battle(self, battle_id: str) -> dict[str, Any] | None:
        """The battle, with its ``vote`` (None until voted)."""
        rows = self._query("SELECT * FROM battles WHERE id = ?", [battle_id])
        if not rows:
            return None
        battle = _json_fields(rows[0], meta=None, models=None, samples=None)
        votes = self._query(
            "SELECT outcome, voter, judge, anony, tstamp, flags, best, worst FROM votes WHERE battle_id = ?", [battle_id]
        )
        battle["vote"] = {**votes[0], "anony": bool(votes[0]["anony"])} if votes else None
        return battle

    def record_vote(
        self, battle_id: str, outcome: str, *, voter: str | None = None, judge: str = "human",
        anony: bool = True, tstamp: float | None = None, flags: Iterable[str] = (),
        min_seconds: float | None = None,
    ) -> dict[str, Any]:
        """Record the one vote of a two-image battle; returns it with the model names revealed.

        ``flags`` are stored with the vote (see :mod:`arena.hygiene`); with ``min_seconds``, a
        vote sent sooner than that after the battle was created also gets the ``fast`` flag.
        Raises :class:`InvalidOutcome`, :class:`UnknownBattle`, :class:`WrongVoter` (the
        battle was served to another voter), :class:`AlreadyVoted` or :class:`RevealedBattle`
        (its names were shown); nothing is written then.
        """
        if not isinstance(outcome, str) or outcome not in OUTCOMES:
            raise InvalidOutcome(f"outcome {outcome!r} is not one of {', '.join(OUTCOMES)}")
        return self._record(battle_id, outcome, None, None, voter=voter, judge=judge, anony=anony, tstamp=tstamp,
                            flags=flags, min_seconds=min_seconds)

    def record_ranking(
        self, battle_id: str, best: str | None, worst: str | None = None, *, voter: str | None = None,
        judge: str = "human", anony: bool = True, tstamp: float | None = None, flags: Iterable[str] = (),
        min_seconds: float | None = None,
    ) -> dict[str, Any]:
        """Record the one vote of a K-way battle: the ``best`` model and optionally the ``worst``
        (names from the battle's ``models``); neither is "all bad". Refusals as for :meth:`record_vote`."""
        for name, mark in (("best", best), ("worst", worst)):
            if mark is not None and not isinstance(mark, str):
                raise InvalidOutcome(f"{name} must be a model name or None, not {mark!r}")
        if best is not None and best == worst:
            raise InvalidOutcome("the best and the worst image cannot be the same")
        return self._record(battle_id, RANKED, best, worst, voter=voter, judge=judge, anony=anony, tstamp=tstamp,
                            flags=flags, min_seconds=min_seconds)

    def _record(
        self, battle_id: str, outcome: str, best: str | None, worst: str | None, *, voter: str | None, judge: str,
        anony: bool, tstamp: float | None, flags: Iterable[str], min_seconds: float | None,
    ) -> dict[str, Any]:
        if not isinstance(judge, str) or not judge:
            raise VoteError("a vote needs a judge: 'human' or the automatic judge's name")
        if not isinstance(battle_id, str):
            raise UnknownBattle(f"no battle {battle_id!r}")
        try:
            flag_text = join_flags(flags)
        except ValueError as exc:
            raise VoteError(str(exc)) from None
        when = time.time() if tstamp is None else float(tstamp)
        with self.write() as db:
            battle = db.execute(
                "SELECT model_a, model_b, voter, task, created, models, revealed, json_extract(meta, '$.named') "
                "FROM battles WHERE id = ?", [battle_id]
            ).fetchone()
            if battle is None:
                raise UnknownBattle(f"no battle {battle_id!r}")
            model_a, model_b, served_to, task, created, models_json, revealed, named = battle
            anony = anony and not named  # a battle served with the names shown is never an anonymous vote
            if voter is not None and served_to is not None and voter != served_to:
                raise WrongVoter(f"battle {battle_id!r} was served to another voter")
            if db.execute("SELECT 1 FROM votes WHERE battle_id = ?", [battle_id]).fetchone():
                raise AlreadyVoted(f"battle {battle_id!r} already has a vote: its names were revealed with it")
            if revealed is not None:
                raise RevealedBattle(f"battle {battle_id!r} was revealed without a vote: a vote now would not be blind")
            models = json.loads(models_json) if models_json else None
            if models is None and outcome == RANKED:
                raise InvalidOutcome(f"battle {battle_id!r} shows two images: vote one of {', '.join(OUTCOMES)}")
            if models is not None and outcome != RANKED:
                raise InvalidOutcome(f"battle {battle_id!r} shows {len(models)} images: mark the best (and the worst), "
                                     "or neither for 'all bad'")
            for name, mark in (("best", best), ("worst", worst)):
                if mark is not None and mark not in models:
                    raise InvalidOutcome(f"{name} {mark!r} is not one of the battle's models")
            if min_seconds is not None and when - created < min_seconds:
                flag_text = with_flags(flag_text, FAST)
            vote = {
                "battle_id": battle_id, "outcome": outcome, "voter": voter if voter is not None else served_to,
                "judge": judge, "anony": int(bool(anony)), "tstamp": when, "flags": flag_text,
                "best": best, "worst": worst,
            }
            try:
                db["votes"].insert(vote)
            except sqlite3.IntegrityError as exc:  # another process won the race
                raise AlreadyVoted(f"battle {battle_id!r} already has a vote") from exc
            db.execute("UPDATE battles SET revealed = ? WHERE id = ?", [when, battle_id])
        out = {**vote, "anony": bool(anony), "task": task, "model_a": model_a, "model_b": model_b}
        if models is None:
            del out["best"], out["worst"]
        else:
            out["models"] = models
        return out

    def vote_count(self, task: str | None = None) -> int:
        rows = self._query(
            "SELECT count(*) AS n FROM votes JOIN battles ON battles.id = votes.battle_id "
            "WHERE :task IS NULL OR battles.task = :task",
            {"task": task},
        )
        return rows[0]["n"]

    def judge_counts(self, task: str | None = None) -> dict[str, int]:
        """Votes per judge (``human``, ``oracle``…) of a task, or of every task."""
        rows = self._query(
            "SELECT votes.judge, count(*) AS n FROM votes JOIN battles ON battles.id = votes.battle_id "
            "WHERE :task IS NULL OR battles.task = :task GROUP BY votes.judge ORDER BY votes.judge",
            {"task": task},
        )
        return {row["judge"]: row["n"] for row in rows}

    def vote_records(
        self, task: str | None = None, judge: str | None = None, voter: str | None = None
    ) -> Iterator[dict[str, Any]]:
        """Votes in time order as export records (the fields of :data:`arena.io.EXPORT_FIELDS`);
        voters are left out: they identify people (``voter`` selects one voter's votes).

        ``flags`` holds the vote's stored flags plus ``named`` for a vote cast with the names
        shown and ``excluded`` while its voter is excluded, so that the records say by themselves
        which votes the default board leaves out (:func:`arena.hygiene.counted_votes`).
        """
        sql = """
            SELECT b.id AS battle_id, b.task,
                   CASE WHEN b.models IS NULL THEN b.model_a END AS model_a,
                   CASE WHEN b.models IS NULL THEN b.model_b END AS model_b,
                   CASE WHEN b.models IS NULL THEN v.outcome END AS winner, v.judge,
                   v.anony, v.tstamp, coalesce(p.text, json_extract(b.meta, '$.prompt')) AS prompt,
                   CASE WHEN b.models IS NULL THEN coalesce(b.sample_a, json_extract(b.meta, '$.sample_a')) END AS sample_a,
                   CASE WHEN b.models IS NULL THEN coalesce(b.sample_b, json_extract(b.meta, '$.sample_b')) END AS sample_b,
                   v.flags, x.voter IS NOT NULL AS voter_excluded,
                   coalesce(json_extract(b.meta, '$.category'), p.family) AS category,
                   b.models, v.best, v.worst, coalesce(b.samples, json_extract(b.meta, '$.samples')) AS samples,
                   json_extract(b.meta, '$.covariates') AS covariates
            FROM votes v JOIN battles b ON b.id = v.battle_id LEFT JOIN prompts p ON p.id = b.prompt_id
            LEFT JOIN excluded_voters x ON x.voter = v.voter
            WHERE (:task IS NULL OR b.task = :task) AND (:judge IS NULL OR v.judge = :judge)
                  AND (:voter IS NULL OR v.voter = :voter)
            ORDER BY v.tstamp, v.id"""
        loads = json.loads
        with self.read() as db:
            for row in db.query(sql, {"task": task, "judge": judge, "voter": voter}):
                row["anony"] = bool(row["anony"])
                derived = ([] if row["anony"] else [NAMED]) + ([EXCLUDED] if row.pop("voter_excluded") else [])
                if derived:
                    row["flags"] = with_flags(row["flags"], *derived)
                for name in ("models", "samples", "covariates"):
                    if row[name] is not None:
                        row[name] = loads(row[name])
                for key in ("sample_a", "sample_b"):  # an id an older import stored as 329.0
                    if isinstance(row[key], float) and row[key].is_integer():
                        row[key] = int(row[key])
                yield row

    def votes_frame(self, task: str | None = None, judge: str | None = None, voter: str | None = None) -> pd.DataFrame:
        """The vote table the rating functions take (see :mod:`arena.ratings`); sample ids keep
        their type (an object column: integers with a missing one among them stay integers)."""
        records = list(self.vote_records(task, judge, voter))
        frame = pd.DataFrame(records, columns=list(_VOTE_COLUMNS))
        for name in ("sample_a", "sample_b"):
            frame[name] = pd.Series([r.get(name) for r in records], index=frame.index, dtype=object)
        return frame

    def judged_battles(self, task: str | None = None, judge: str | None = None) -> list[dict[str, Any]]:
        """Two-image battles with their vote, in vote order, each with its ``meta`` (a dict, empty
        when none: what an automatic judge kept beside its verdict, e.g. the learned judge's
        answer): ``battle_id``, ``task``, ``model_a``, ``model_b``, ``sample_a``, ``sample_b``,
        ``prompt``, ``winner``, ``judge``, ``tstamp``, ``meta``. The export leaves ``meta`` out;
        this is the read that needs it."""
        rows = self._query(
            """SELECT b.id AS battle_id, b.task, b.model_a, b.model_b, b.sample_a, b.sample_b,
                      coalesce(p.text, json_extract(b.meta, '$.prompt')) AS prompt, v.outcome AS winner, v.judge,
                      v.tstamp, b.meta
               FROM votes v JOIN battles b ON b.id = v.battle_id LEFT JOIN prompts p ON p.id = b.prompt_id
               WHERE b.models IS NULL AND (:task IS NULL OR b.task = :task) AND (:judge IS NULL OR v.judge = :judge)
               ORDER BY v.tstamp, v.id""",
            {"task": task, "judge": judge},
        )
        return [_json_fields(row, meta={}) for row in rows]

    def import_votes(
        self, votes: pd.DataFrame | Iterable[Mapping[str, Any]], *, task: str | None = None,
        skip_existing: bool = False, source: str | None = None,
    ) -> int:
        """Add votes read from files (:func:`arena.io.read_votes`) with their battles, all or
        nothing; returns how many were added.

        ``task`` fills in records without one. Unknown models are registered (kind
        ``imported``). A record without ``battle_id`` gets a new one; one repeated in the input
        is refused, and so is one whose battle is already in the store, unless
        ``skip_existing`` (then it is left out, which makes importing the same file again a
        no-op). FastChat's voter ids in ``judge`` (``arena_user_…``) become human votes with
        that voter. Missing ``anony`` counts as anonymous and a missing ``tstamp`` as now;
        ``flags`` are kept as they are (an exported ``excluded`` or ``named`` flag stays with the vote).
        ``source`` (where the votes come from) is kept in each battle's ``meta``.

        The rows are prepared first, without the database (:func:`prepare_import`); the write
        then only checks which battles exist and inserts.
        """
        records = list(frame_records(votes)) if isinstance(votes, pd.DataFrame) else [dict(record) for record in votes]
        rows = prepare_import(records, task=task, source=source, now=time.time())
        with self.write() as db:
            existing = set()
            ids = [b[0] for b in rows.battles]
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                marks = ", ".join("?" * len(chunk))
                existing.update(row[0] for row in db.execute(f"SELECT id FROM battles WHERE id IN ({marks})", chunk))
            problems = rows.problems
            if skip_existing and existing:
                rows = rows.without(existing)
            else:
                problems = problems + [f"{rows.seen[b]}: battle {b!r} is already in the store" for b in ids if b in existing]
            if problems:
                raise ImportConflict(problems)
            db.conn.executemany(
                "INSERT INTO models (name, tasks, kind, created) VALUES (?, ?, 'imported', ?) ON CONFLICT DO NOTHING",
                [(name, json.dumps(sorted(tasks)), rows.now) for name, tasks in rows.models.items()],
            )
            db.conn.executemany(
                "INSERT INTO battles (id, task, model_a, model_b, voter, created, meta, models) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                rows.battles,
            )
            db.conn.executemany(
                "INSERT INTO votes (battle_id, outcome, voter, judge, anony, tstamp, flags, best, worst) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows.votes,
            )
        return len(rows.votes)

    # -- voters --------------------------------------------------------------------------------

    def exclude_voter(self, voter: str, reason: str = "") -> dict[str, Any]:
        """Leave a voter's votes out of the default boards (their votes stay as they are; the
        exports flag them ``excluded``). Refused for a voter with no vote (a typo, most likely).
        Excluding again updates the reason. :meth:`include_voter` reverses it."""
        if not isinstance(voter, str) or not voter:
            raise StoreError("a voter id is needed")
        with self.write() as db:
            if db.execute("SELECT 1 FROM votes WHERE voter = ? LIMIT 1", [voter]).fetchone() is None:
                raise StoreError(f"no votes from voter {voter!r}: nothing to exclude (voters: qwenrl votes voters)")
            db.execute(
                """INSERT INTO excluded_voters (voter, reason, created) VALUES (?, ?, ?)
                   ON CONFLICT (voter) DO UPDATE SET reason = excluded.reason""",
                [voter, str(reason or ""), time.time()],
            )
        return self._query("SELECT * FROM excluded_voters WHERE voter = ?", [voter])[0]

    def include_voter(self, voter: str) -> bool:
        """Count an excluded voter's votes again; False when the voter was not excluded."""
        with self.write() as db:
            return db.execute("DELETE FROM excluded_voters WHERE voter = ?", [voter]).rowcount > 0

    def voter_seen(self, voter: str) -> bool:
        """Whether any battle was ever served to ``voter`` (a returning voter, not a new one)."""
        return bool(self._query("SELECT 1 AS seen FROM battles WHERE voter = ? LIMIT 1", [voter]))

    def excluded_voters(self) -> list[dict[str, Any]]:
        """Excluded voters (``voter``, ``reason``, ``created``), oldest first."""
        return self._query("SELECT * FROM excluded_voters ORDER BY created, voter")

    def voters(self, task: str | None = None) -> list[dict[str, Any]]:
        """Each voter's ``votes``, ``flagged`` (votes stored with a flag), ``first`` and ``last``
        vote times and whether ``excluded``: what an admin looks at before excluding one.
        Automatic judges vote as themselves and are listed too."""
        rows = self._query(
            """SELECT v.voter, count(*) AS votes, sum(v.flags != '') AS flagged, min(v.tstamp) AS first,
                      max(v.tstamp) AS last, x.voter IS NOT NULL AS excluded
               FROM votes v JOIN battles b ON b.id = v.battle_id
               LEFT JOIN excluded_voters x ON x.voter = v.voter
               WHERE v.voter IS NOT NULL AND (:task IS NULL OR b.task = :task)
               GROUP BY v.voter ORDER BY votes DESC, v.voter""",
            {"task": task},
        )
        return [{**row, "excluded": bool(row["excluded"])} for row in rows]


@dataclass
class ImportRows:
    """The rows an import would insert, prepared from records without the database."""

    battles: list[tuple]  #: (id, task, model_a, model_b, voter, created, meta, models)
    votes: list[tuple]  #: (battle_id, outcome, voter, judge, anony, tstamp, flags, best, worst)
    models: dict[str, set[str]]  #: every model named → its tasks
    problems: list[str]  #: "where: what" for each record refused
    seen: dict[str, str]  #: battle id → where its record is
    now: float

    def without(self, existing: set[str]) -> "ImportRows":
        """These rows less the battles ``existing`` (and the models only they named)."""
        battles = [b for b in self.battles if b[0] not in existing]
        votes = [v for v in self.votes if v[0] not in existing]
        used = {name for b in battles for name in (json.loads(b[7]) if b[7] else (b[2], b[3]))}
        models = {name: tasks for name, tasks in self.models.items() if name in used}
        return ImportRows(battles, votes, models, self.problems, self.seen, self.now)


def prepare_import(records: list[Mapping[str, Any]], *, task: str | None, source: str | None, now: float) -> ImportRows:
    """The battle and vote rows of ``records`` (see :meth:`ArenaStore.import_votes`), and the
    problem of each record refused, without the database (``now`` is the time of the import;
    a record without ``battle_id`` gets a random one)."""
    out = ImportRows([], [], {}, [], {}, now)
    for k, record in enumerate(records):
        where = f"{record['file']}:{record['line']}" if record.get("file") and record.get("line") else f"record {k + 1}"
        problem = _import_problem(record, task)
        battle_id = record.get("battle_id") or secrets.token_urlsafe(16)
        if problem is None and battle_id in out.seen:
            problem = f"battle {battle_id!r} appears twice (also at {out.seen[battle_id]})"
        if problem:
            out.problems.append(f"{where}: {problem}")
            continue
        out.seen[battle_id] = where
        record_task = record.get("task") or task
        kway = record.get("models") is not None
        names = list(record["models"]) if kway else [record["model_a"], record["model_b"]]
        for name in names:
            out.models.setdefault(name, set()).add(record_task)
        judge = record.get("judge") or HUMAN_JUDGE
        voter = judge if judge != HUMAN_JUDGE and is_human_judge(judge) else None  # FastChat's arena_user_… ids
        meta = {key: record.get(key) for key in ("prompt", "sample_a", "sample_b", "samples", "category", "covariates")
                if record.get(key) is not None}
        for key in ("sample_a", "sample_b"):  # an id read as 329.0 is the integer 329
            if isinstance(meta.get(key), float) and meta[key].is_integer():
                meta[key] = int(meta[key])
        if source is not None:
            meta["source"] = source
        out.battles.append((battle_id, record_task, names[0], names[1], voter, now,
                            json.dumps(meta) if meta else None, json.dumps(names) if kway else None))
        anony, tstamp = record.get("anony"), record.get("tstamp")
        out.votes.append((battle_id, RANKED if kway else record["winner"], voter, HUMAN_JUDGE if is_human_judge(judge) else judge,
                          1 if anony is None else int(bool(anony)), now if tstamp is None else float(tstamp),
                          join_flags(record.get("flags") or ""), record.get("best") if kway else None,
                          record.get("worst") if kway else None))
    return out


def _import_problem(record: Mapping[str, Any], task: str | None) -> str | None:
    if record.get("models") is not None:
        problem = kway_problem(record["models"], record.get("best"), record.get("worst"))
        if problem:
            return problem
        if not (record.get("task") or task):
            return "no task: the record has none and no default task was given"
        flags = record.get("flags")
        if flags is not None and not is_flags_text(flags):
            return f"flags is {flags!r}, expected comma-separated flag names"
        return None
    for side in ("model_a", "model_b"):
        name = record.get(side)
        if not isinstance(name, str) or not name.strip():
            return f"{side} is missing or not a name"
    if record["model_a"] == record["model_b"]:
        return f"model_a and model_b are both {record['model_a']!r}"
    if record.get("winner") not in OUTCOMES:
        return f"winner is {record.get('winner')!r}, expected one of {', '.join(OUTCOMES)}"
    if not (record.get("task") or task):
        return "no task: the record has none and no default task was given"
    judge = record.get("judge")
    if judge is not None and not isinstance(judge, str):
        return f"judge is {judge!r}, expected a string"
    flags = record.get("flags")
    if flags is not None and not is_flags_text(flags):
        return f"flags is {flags!r}, expected comma-separated flag names"
    return None


def _model_row(row: dict[str, Any]) -> dict[str, Any]:
    return _json_fields(row, tasks=[], meta={})


def _json_fields(row: dict[str, Any], **defaults: Any) -> dict[str, Any]:
    out = dict(row)
    for name, default in defaults.items():
        value = out.get(name)
        out[name] = json.loads(value) if value is not None else default
    return out
