"""A studio workspace: the vote store, the registered models, the arena gallery, the runs.

Layout of a workspace folder::

    arena.db              the store (SQLite, WAL): models, prompts, samples, battles, votes, jobs
    gallery/<model>/<task>/<prompt>-s<seed>.png    arena images, one per (prompt, seed)
    gallery/sources/<prompt>.png                   source images of the editing prompts
    runs/<job>/           a training job: log.txt, metrics.jsonl, checkpoints/
    logs/gallery.log      output of the gallery subprocesses

``Workspace.open`` creates what is missing and registers the bundled models
(``data/models/*/manifest.json``). ``Workspace.import_seed_votes`` adds the bundled
automatic-arena votes (``benchmarks/results/seed_recipe_votes.jsonl``) between the models this
workspace has, so that a new studio's leaderboard is never empty; the studio calls it at
every start (it skips what is already there). ``CheckpointWatcher`` registers every complete checkpoint
that appears later under ``data/models/`` or ``runs/*/checkpoints/`` and has its gallery
filled by ``GalleryRunner`` (a ``python -m app.gallery`` subprocess), so new models join the
arena without a restart. Half-written checkpoints (temporary folders, no manifest) are skipped.

Nothing here imports gradio, and nothing here samples: images are made in the gallery
subprocess, so the server never runs a model.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from arena.io import frame_records, is_human_judge, read_votes
from arena.store import ArenaStore
from qwenrl.checkpoints import CheckpointError, is_complete, read_manifest

from qwenrl.tasks import TASKS

from .paths import MODELS_DIR, REPO_ROOT
from .pool import (
    POOL_SIZE,
    SEEDS_PER_PROMPT,
    PoolItem,
    arena_pool,
    composite_reward,
    model_slug,
    pool_seeds,
    reward_path,
    showcase_seed,
)

SEED_VOTES = REPO_ROOT / "benchmarks" / "results" / "seed_recipe_votes.jsonl"
STORE_NAME = "arena.db"
#: the judge name of the learned judge's pairwise votes (``qwenrl arena auto --judge learned``, ``app.autojudge``)
LEARNED_JUDGE = "learned"
#: the judge name of the reader's pairwise votes (``--judge reader``: the judge that writes positions
#: reads each image, the world's rules decide)
READER_JUDGE = "reader"
#: the judge name of the reader's votes by the likelier pass (``--judge reader-probability``)
READER_PROBABILITY_JUDGE = "reader-probability"
#: the automatic judges whose votes are pairwise answers with a rationale, by their display names
PAIRWISE_VOTE_JUDGES = {LEARNED_JUDGE: "learned judge", READER_JUDGE: "reader judge",
                        READER_PROBABILITY_JUDGE: "reader judge by the likelier pass"}


@dataclass
class SeedVotes:
    """What :meth:`Workspace.import_seed_votes` did with a file of bundled automatic votes."""

    path: str
    imported: int = 0  #: votes added now
    present: int = 0  #: votes already in the store (an earlier start imported them)
    by_task: dict[str, int] = field(default_factory=dict)  #: votes of the file now in the store, per task
    judges: list[str] = field(default_factory=list)
    unknown_models: dict[str, int] = field(default_factory=dict)  #: model not in this workspace → votes left out
    left_out_human: int = 0  #: human votes in the file: never imported as bundled votes
    left_out_task: int = 0  #: votes of no arena task

    def summary(self) -> str:
        """One line for the studio's start-up log."""
        text = (f"bundled votes {self.path}: {self.imported} imported, {self.present} already there "
                f"(automatic, judge {', '.join(self.judges) or '—'})")
        if self.unknown_models:
            names = ", ".join(f"{m} ({n})" for m, n in sorted(self.unknown_models.items()))
            text += f"; left out the votes naming models this workspace does not have: {names}"
        if self.left_out_human:
            text += f"; left out {self.left_out_human} human votes"
        if self.left_out_task:
            text += f"; left out {self.left_out_task} votes of no arena task"
        return text


class Workspace:
    """One studio's state on disk; thread-safe through the store."""

    def __init__(self, root: Path, store: ArenaStore, *, models_dir: Path = MODELS_DIR,
                 pool_size: int = POOL_SIZE, seeds_per_prompt: int = SEEDS_PER_PROMPT,
                 num_steps: int | None = None, batch_size: int = 32) -> None:
        self.root = Path(root)
        self.store = store
        self.models_dir = Path(models_dir)
        self.pool_size = pool_size
        self.seeds_per_prompt = seeds_per_prompt
        self.num_steps = num_steps
        self.batch_size = batch_size
        self._loaded: dict[Any, Any] = {}  # rewards and judges the workers load once (``loaded``)
        self._pool: dict[str, PoolItem] = {}  # pool id → PoolItem
        self._prompt_ids: dict[str, int] = {}  # pool id → store prompt id
        self._pool_of: dict[int, tuple[PoolItem, list[int]]] = {}  # store prompt id → (PoolItem, arena seeds)
        self._showcase_of: dict[int, int] = {}  # store prompt id → its showcase seed (the inspector's image)
        self.seed_votes: SeedVotes | None = None  #: the last import_seed_votes

    # -- opening ------------------------------------------------------------------------
    @classmethod
    def open(cls, root: str | Path, *, models_dir: str | Path | None = None, register_bundled: bool = True,
             **settings: Any) -> "Workspace":
        """Open (creating if needed) a workspace; settings are remembered in ``settings.json``.

        ``settings``: ``pool_size``, ``seeds_per_prompt``, ``num_steps`` (sampling steps of the
        gallery; default the checkpoint's), ``batch_size``, ``models_dir``.
        """
        root = Path(root).resolve()
        for sub in ("gallery/sources", "runs", "logs"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        saved_path = root / "settings.json"
        saved = json.loads(saved_path.read_text()) if saved_path.exists() else {}
        if models_dir is not None:
            settings["models_dir"] = str(Path(models_dir).resolve())
        merged = {**saved, **{k: v for k, v in settings.items() if v is not None}}
        if merged != saved:
            tmp = saved_path.with_suffix(".tmp")
            tmp.write_text(json.dumps(merged, indent=2, sort_keys=True))
            os.replace(tmp, saved_path)
        store = ArenaStore(root / STORE_NAME)
        ws = cls(root, store, models_dir=Path(merged.pop("models_dir", MODELS_DIR)), **merged)
        ws.register_prompts()
        if register_bundled:
            ws.scan_checkpoints()
        return ws

    def close(self) -> None:
        self.store.close()

    @property
    def gallery_dir(self) -> Path:
        return self.root / "gallery"

    @property
    def runs_dir(self) -> Path:
        return self.root / "runs"

    def source_path(self, prompt_id: str) -> Path:
        """Source image of an editing prompt (prompt ids come from the store, never from users)."""
        safe = "".join(c for c in prompt_id if c.isalnum() or c in "-_")
        return self.gallery_dir / "sources" / f"{safe}.png"

    def reward(self, task: str, name: str | None = None) -> Any:
        """The reward YAML ``name`` of ``task`` (default the task's composite, ``shapes_{task}``),
        loaded once per workspace object: the workers that judge images (gallery, learned judge,
        automatic arena) share it through the workspace."""
        name = name or composite_reward(task)

        def load() -> Any:
            from qwenrl.rewards import load_reward

            return load_reward(reward_path(name), cache=False)

        return self.loaded(("reward", name), load)

    def loaded(self, key: Any, load: Callable[[], Any]) -> Any:
        """What ``load()`` gives, kept under ``key`` for the life of this workspace object (the
        judges a worker loads once: rewards, the pairwise judge)."""
        if key not in self._loaded:
            self._loaded[key] = load()
        return self._loaded[key]

    # -- prompts and models -------------------------------------------------------------
    def register_prompts(self) -> None:
        """Add the arena pools to the store (idempotent) and map pool ids to store ids."""
        for task in TASKS:
            items = arena_pool(task, self.pool_size)
            rows = [{"task": task, "text": it.text, "family": it.family, "spec": it.record,
                     "source_image": str(self.source_path(it.id).relative_to(self.root)) if task == "edit" else None}
                    for it in items]
            for i, (it, pid) in enumerate(zip(items, self.store.add_prompts(rows))):
                self._pool[it.id] = it
                self._prompt_ids[it.id] = pid
                self._pool_of[pid] = (it, pool_seeds(i, self.seeds_per_prompt))
                self._showcase_of[pid] = showcase_seed(i)

    def prompt_id(self, pool_id: str) -> int:
        """The store's id of an arena-pool prompt (``t2i-test-0000`` → an integer)."""
        return self._prompt_ids[pool_id]

    def edit_sources(self) -> list[dict[str, Any]]:
        """Source images a visitor may edit live: the editing pool's, once the gallery made them.
        Each: ``source_id`` (the pool id), ``description`` (the scene in words), ``path``."""
        out = []
        for pool_id, item in self._pool.items():
            path = self.source_path(pool_id)
            if item.task == "edit" and path.is_file():
                out.append({"source_id": pool_id, "description": describe_scene(item.record["source"]), "path": path})
        return out

    def edit_source(self, source_id: Any) -> dict[str, Any] | None:
        """The source ``source_id`` (from :meth:`edit_sources`) with its ``scene``, or None when
        there is no such source image in the gallery (ids are looked up, never used as paths)."""
        item = self._pool.get(source_id) if isinstance(source_id, str) else None
        if item is None or item.task != "edit" or not self.source_path(source_id).is_file():
            return None
        return {"source_id": source_id, "description": describe_scene(item.record["source"]),
                "path": self.source_path(source_id), "scene": item.record["source"]}

    def pool_item(self, prompt_id: int) -> PoolItem | None:
        """The pool item of a store prompt id, or None for a prompt outside the arena pool."""
        entry = self._pool_of.get(int(prompt_id))
        return entry[0] if entry else None

    def scan_checkpoints(self) -> list[str]:
        """Register complete checkpoints not yet known; returns the names of the new models."""
        new = []
        known = {m["source"] for m in self.store.list_models()}
        for path, run_id in self._checkpoint_candidates():
            if str(path) in known or not is_complete(path):
                continue
            try:
                manifest = read_manifest(path)
            except CheckpointError:
                continue
            name = self.register_checkpoint(path, manifest, run_id)
            if name:
                new.append(name)
        return new

    def _checkpoint_candidates(self) -> list[tuple[Path, str | None]]:
        out: list[tuple[Path, str | None]] = []
        if self.models_dir.is_dir():
            out += [(p.resolve(), None) for p in sorted(self.models_dir.iterdir())
                    if p.is_dir() and not p.name.startswith(".")]
        for run in sorted(self.runs_dir.iterdir()) if self.runs_dir.is_dir() else []:
            ckpts = run / "checkpoints"
            if run.name.startswith(".") or not ckpts.is_dir():
                continue
            out += [(p.resolve(), run.name) for p in sorted(ckpts.iterdir())
                    if p.is_dir() and not p.name.startswith(".")]
        return out

    def register_checkpoint(self, path: Path, manifest: dict[str, Any], run_id: str | None = None) -> str | None:
        """Add a checkpoint as an arena model (name, parent and lineage from its manifest).

        A bundled model keeps its manifest name; a checkpoint of a run is named
        ``NAME@stepN``. Returns the arena name, or None when the checkpoint does no arena task.
        """
        tasks = [t for t in (manifest.get("tasks") or _tasks_from(manifest.get("task"))) if t in TASKS]
        if not tasks:
            return None
        base = str(manifest.get("name") or (run_id or path.name))
        step = manifest.get("step")
        if run_id is None or "@" in base:  # trainers already name checkpoints NAME@stepN
            name = base
        else:
            if step is None:
                digits = "".join(c for c in path.name if c.isdigit())
                step = int(digits) if digits else None
            name = f"{base}@step{step}" if step is not None else f"{base}@{path.name}"
        existing = self.store.get_model(name)
        if existing is not None and existing["source"] != str(path):
            name = f"{name} ({run_id or path.parent.name})"
            if self.store.get_model(name) is not None:
                return None
        lineage = [str(x) for x in (manifest.get("lineage") or [])]
        # the parent is the nearest ancestor the arena knows (a manifest may name a path or a run)
        parent = None
        for candidate in [manifest.get("parent"), *reversed(lineage)]:
            if candidate and candidate not in (name, base) and self.store.get_model(str(candidate)) is not None:
                parent = str(candidate)
                break
        kind = "base" if run_id is None and not manifest.get("parent") else str(manifest.get("trainer") or "checkpoint")
        self.store.register_model(
            name, tasks=tasks, source=str(path), parent=parent, kind=kind,
            meta={"step": step, "run": run_id, "manifest_lineage": lineage, "manifest_parent": manifest.get("parent"),
                  "absorbed_guidance": manifest.get("absorbed_guidance")},
        )
        return name

    def lineage(self, name: str) -> str:
        """``shapes-base → grpo-t2i@step300``; a student that absorbed its teachers' guidance
        (and is sampled without it) says so: ``shapes-base → shapes-distilled (guidance-free, absorbed 2)``."""
        chain = " → ".join(self.store.lineage(name))
        model = self.store.get_model(name)
        absorbed = ((model or {}).get("meta") or {}).get("absorbed_guidance")
        return f"{chain} (guidance-free, absorbed {absorbed:g})" if absorbed else chain

    def arena_model_names(self, task: str) -> set[str]:
        """Models registered from a checkpoint for ``task`` (not names imported with votes)."""
        return {m["name"] for m in self.store.list_models(task) if m.get("source") and m["kind"] != "imported"}

    def import_seed_votes(self, path: str | Path = SEED_VOTES) -> SeedVotes:
        """Add a file of automatic-arena votes (``qwenrl votes export`` format) to the store.

        Only votes between two models this workspace has for the vote's task are added: a
        rating of a model nobody can battle here would only puzzle, and a model that joins
        later gets its votes at the next call. Votes already in the store are skipped, so
        calling this at every start is harmless. Human votes in the file are left out (bundled
        votes are never mixed with the workspace's people); sample ids are dropped (they name
        images of another store). Raises ``VoteFileError`` for a malformed file, adding nothing.
        """
        path = Path(path)
        shown = str(path.relative_to(REPO_ROOT)) if path.is_relative_to(REPO_ROOT) else str(path)
        result = SeedVotes(shown)
        frame = read_votes(path, strict=True)
        arena = {task: self.arena_model_names(task) for task in TASKS}
        keep: list[dict[str, Any]] = []
        for record in frame_records(frame):
            task = record.get("task")
            if task not in arena:
                result.left_out_task += 1
                continue
            if record.get("judge") is None or is_human_judge(record["judge"]):
                result.left_out_human += 1
                continue
            missing = [m for m in (record["model_a"], record["model_b"]) if m not in arena[task]]
            for name in missing:
                result.unknown_models[name] = result.unknown_models.get(name, 0) + 1
            if missing:
                continue
            kept = {k: v for k, v in record.items() if k not in ("sample_a", "sample_b")}
            if not kept.get("battle_id"):  # a stable id, so that the next start finds it present
                key = f"{shown}:{record.get('line')}:{record['model_a']}:{record['model_b']}:{record.get('tstamp')}"
                kept["battle_id"] = "seed-" + hashlib.sha1(key.encode()).hexdigest()[:20]
            keep.append(kept)
            result.by_task[task] = result.by_task.get(task, 0) + 1
        result.judges = sorted({r["judge"] for r in keep})
        result.imported = self.store.import_votes(keep, skip_existing=True, source=shown) if keep else 0
        result.present = len(keep) - result.imported
        self.seed_votes = result
        return result

    # -- gallery ------------------------------------------------------------------------
    def gallery_total(self, model: dict[str, Any]) -> int:
        """Images of a model's gallery: the arena's seeds and the showcase image, per prompt and task."""
        return sum(self.pool_size * (self.seeds_per_prompt + 1) for t in model["tasks"] if t in TASKS)

    def failure_marker(self, name: str) -> Path:
        return self.gallery_dir / model_slug(name) / "FAILED.txt"

    def mark_gallery_failed(self, name: str, why: str) -> None:
        path = self.failure_marker(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(why)

    def clear_gallery_failures(self) -> None:
        """Forget earlier failures, so that a restart tries those models again."""
        for marker in self.gallery_dir.glob("*/FAILED.txt"):
            marker.unlink(missing_ok=True)

    def gallery_status(self) -> list[dict[str, Any]]:
        """One row per model: images done of total, and ready, pending or failed (with why)."""
        done: dict[str, int] = {}
        for row in self.store.list_samples():
            entry = self._pool_of.get(row["prompt_id"])
            if entry and (row["seed"] in entry[1] or row["seed"] == self._showcase_of.get(row["prompt_id"])):
                done[row["model"]] = done.get(row["model"], 0) + 1
        out = []
        for m in self.store.list_models():
            if not m.get("source") or m["kind"] == "imported":
                continue
            total, n = self.gallery_total(m), done.get(m["name"], 0)
            marker = self.failure_marker(m["name"])
            if n >= total:
                status, note = "ready", ""
            elif marker.exists():
                status, note = "failed", marker.read_text()[:500]
            else:
                status, note = "pending", ""
            out.append({"model": m["name"], "status": status, "done": n, "total": total,
                        "lineage": self.lineage(m["name"]), "note": note})
        return out

    def pending_gallery_models(self) -> list[str]:
        return [r["model"] for r in self.gallery_status() if r["status"] == "pending"]

    def missing_samples(self, name: str, task: str) -> list[tuple[PoolItem, int]]:
        """(pool item, seed) pairs of a task that model ``name`` has no image for yet."""
        have = {(s["prompt_id"], s["seed"]) for s in self.store.list_samples(model=name, task=task)}
        out = []
        for i, item in enumerate(arena_pool(task, self.pool_size)):
            for seed in [*pool_seeds(i, self.seeds_per_prompt), showcase_seed(i)]:
                if (self._prompt_ids[item.id], seed) not in have:
                    out.append((item, seed))
        return out

    def add_gallery_samples(self, rows: list[dict[str, Any]]) -> None:
        """Store images and their judgements (rows: model, pool_id, seed, image_path, content_hash, judgement)."""
        ids = self.store.add_samples([
            {"model": r["model"], "prompt_id": self._prompt_ids[r["pool_id"]], "seed": r["seed"],
             "image_path": r["image_path"], "content_hash": r["content_hash"]} for r in rows
        ])
        for sample_id, r in zip(ids, rows):
            j = r["judgement"]
            self.store.add_judgement(sample_id, j["judge"], j["score"], parts=j["parts"], rationale=j["rationale"])

    def arena_samples(self, task: str) -> list[dict[str, Any]]:
        """Gallery samples of a task in the arena pool at the arena's seeds (the images anonymous
        battles show, and no public page), with their prompt text and family."""
        return [s for s in self.gallery_samples(task) if s["role"] == "arena"]

    def showcase_samples(self, task: str) -> list[dict[str, Any]]:
        """The showcase samples of a task (one per prompt and model, at the showcase seed): what
        the public reward inspector shows, with model names. Never in a battle; and one whose
        pixels equal an arena image's (a model that draws the same picture from any noise) is
        left out, so that no battle image can be looked up by its content."""
        samples = self.gallery_samples(task)
        in_arena = {s["content_hash"] for s in samples if s["role"] == "arena" and s.get("content_hash")}
        return [s for s in samples if s["role"] == "showcase" and s.get("content_hash") not in in_arena]

    def gallery_samples(self, task: str) -> list[dict[str, Any]]:
        """Every gallery sample of a task, with its prompt text, family and ``role``: ``arena``
        or ``showcase``."""
        out = []
        for s in self.store.list_samples(task=task):
            entry = self._pool_of.get(s["prompt_id"])
            if entry is None:
                continue
            role = "arena" if s["seed"] in entry[1] else "showcase" if s["seed"] == self._showcase_of[s["prompt_id"]] else None
            if role is None:
                continue
            item = entry[0]
            out.append({**s, "pool_id": item.id, "prompt": item.text, "family": item.family, "role": role})
        return out

    def is_showcase(self, sample: dict[str, Any]) -> bool:
        """Whether a stored sample is a showcase image (one a public page may show with its model)."""
        return self._showcase_of.get(sample.get("prompt_id")) == sample.get("seed")

    # -- battles and votes --------------------------------------------------------------
    def create_battle(self, sample_a: dict[str, Any], sample_b: dict[str, Any], voter: str,
                      meta: dict[str, Any] | None = None) -> str:
        return self.store.create_battle(sample_a["id"], sample_b["id"], voter=voter, meta=meta)["id"]

    def create_kway_battle(self, samples: list[dict[str, Any]], voter: str, meta: dict[str, Any] | None = None) -> str:
        return self.store.create_kway_battle([s["id"] for s in samples], voter=voter, meta=meta)["id"]

    def record_vote(self, battle_id: str, winner: str, voter: str, judge: str = "human", **options: Any) -> dict[str, Any]:
        """``options``: ``flags``, ``min_seconds``, ``anony`` (see ``ArenaStore.record_vote``)."""
        return self.store.record_vote(battle_id, winner, voter=voter, judge=judge, **options)

    def votes_frame(self, task: str | None = None, judges: str = "human"):
        """Votes of ``judges``: "human", "auto" (every automatic judge), a ``PAIRWISE_VOTE_JUDGES``
        name (that pairwise judge's votes only) or "all"; any other value is refused (ValueError)."""
        if judges == "human" or judges in PAIRWISE_VOTE_JUDGES:
            return self.store.votes_frame(task=task, judge=judges)
        if judges not in ("auto", "all"):
            raise ValueError(f"judges must be 'human', 'auto', {', '.join(repr(j) for j in PAIRWISE_VOTE_JUDGES)} or 'all', "
                             f"not {judges!r}")
        frame = self.store.votes_frame(task=task)
        if judges == "auto":
            frame = frame[frame["judge"] != "human"].reset_index(drop=True)
        return frame


def worker_args(description: str, model_help: str, argv: list[str] | None = None) -> argparse.Namespace:
    """The command line of a worker that fills a workspace (``python -m app.gallery``,
    ``python -m app.learned_judge``): ``--workspace`` and repeatable ``--model``."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--workspace", required=True, type=Path, help="the studio workspace folder")
    ap.add_argument("--model", action="append", default=[], help=model_help)
    return ap.parse_args(argv)


def describe_scene(scene: dict[str, Any]) -> str:
    """A Shapes scene in words: ``large green square, small cyan triangle on gray``."""
    objects = ", ".join(f"{o['size']} {o['color']} {o['shape']}" for o in scene.get("objects", []))
    return f"{objects or 'nothing'} on {scene.get('background', '?')}"


def _tasks_from(task: Any) -> list[str]:
    if isinstance(task, str):
        return [t for t in task.replace(",", "+").split("+") if t]
    return []


class GalleryRunner:
    """Keeps one ``python -m app.gallery`` subprocess running while models wait for images."""

    def __init__(self, ws: Workspace, python: str = sys.executable, env: dict[str, str] | None = None,
                 retry_s: float = 60.0):
        self.ws = ws
        self.python = python
        self.env = env
        self.retry_s = retry_s
        self._proc: subprocess.Popen | None = None
        self._lock = threading.Lock()
        self._spawned_for: set[str] = set()
        self._failed_at: float | None = None  # when a filler last exited without finishing

    def ensure(self) -> bool:
        """Start a filler if some model is pending and none runs; True if one is running.

        A filler that crashed, or left the models it was started for still pending, is not
        restarted before ``retry_s`` (no busy loop of subprocesses that each import torch).
        """
        with self._lock:
            if self._proc is not None:
                if self._proc.poll() is None:
                    return True
                pending = set(self.ws.pending_gallery_models())
                if self._proc.returncode != 0 or pending & self._spawned_for:
                    self._failed_at = time.monotonic()
                self._proc = None
            pending_list = self.ws.pending_gallery_models()
            if not pending_list:
                return False
            if self._failed_at is not None and time.monotonic() - self._failed_at < self.retry_s:
                return False
            self._failed_at = None
            self._spawned_for = set(pending_list)
            env = dict(os.environ if self.env is None else self.env)
            env.setdefault("OMP_NUM_THREADS", "1")
            env.setdefault("PYTHONUNBUFFERED", "1")
            log = open(self.ws.root / "logs" / "gallery.log", "ab")
            try:
                self._proc = subprocess.Popen(
                    [self.python, "-m", "app.gallery", "--workspace", str(self.ws.root)],
                    cwd=REPO_ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            finally:
                log.close()
            return True

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        with self._lock:
            proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


class CheckpointWatcher:
    """A polling thread: registers new complete checkpoints and keeps the gallery filling."""

    def __init__(self, ws: Workspace, runner: GalleryRunner | None = None, *, interval_s: float = 2.0,
                 on_new: Callable[[list[str]], None] | None = None) -> None:
        self.ws = ws
        self.runner = runner or GalleryRunner(ws)
        self.interval_s = interval_s
        self.on_new = on_new
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def tick(self) -> list[str]:
        new = self.ws.scan_checkpoints()
        if new and self.on_new is not None:
            self.on_new(new)
        self.runner.ensure()
        return new

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception as exc:  # a bad folder must not stop the watcher
                print(f"checkpoint watcher: {type(exc).__name__}: {exc}", file=sys.stderr)
            self._stop.wait(self.interval_s)

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="checkpoint-watcher", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        self.runner.stop()
