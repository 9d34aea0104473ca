"""Background training jobs: subprocesses with their status in the store and a run folder each.

A job is ``python -m training.<kind> --config CONFIG --run RUNS/<id> --set KEY=VALUE ...``
started in its own session (process group), with stdout and stderr going to
``RUNS/<id>/log.txt``; the trainer writes ``metrics.jsonl`` and ``checkpoints/`` in the same
folder. The store's jobs table holds each job's status:

    queued → running → done | failed | cancelled
    queued → cancelled
    running → lost      (the process vanished while no studio watched it)

At most ``max_concurrent`` jobs run at once (default 1 on a machine without a GPU: two
trainers on two cores each run about ten times slower); the others wait in the queue, oldest
first. ``JobManager.recover()`` at start-up marks jobs whose process is gone as ``lost``, so no
job is ever left "running" by a studio that died.

    jobs = JobManager(JobQueue(store), workspace / "runs")
    jobs.recover(); jobs.start()
    job_id = jobs.submit("grpo", "training/configs/shapes_grpo_t2i.yaml", {"steps": "20"})
    jobs.cancel(job_id)
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from arena.store import ArenaStore, StoreError
from qwenrl.metrics import read_metrics
from qwenrl.objectives import DEFAULT_OBJECTIVE, OBJECTIVE_TITLES, OBJECTIVES

from .paths import CONFIG_DIR, MODELS_DIR, REPO_ROOT


#: job kind → the module run with ``python -m``
TRAINERS: dict[str, str] = {"grpo": "training.grpo", "distill": "training.distill"}

#: a job's status, as the jobs table holds it (see the module docstring for the transitions)
STATUSES = ("queued", "running", "done", "failed", "cancelled", "lost")

_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]{0,63}$")
LOG_NAME = "log.txt"
METRICS_NAME = "metrics.jsonl"


class JobError(ValueError):
    """A job request that cannot be honoured; the message says why."""


class JobQueue:
    """The studio's training jobs: a table of the workspace database (``arena.db``), read and
    written through the store's single writer (``ArenaStore.read`` / ``ArenaStore.write``), so
    a job's status changes are transactions beside the arena's votes. The arena library knows
    nothing of it."""

    FIELDS = ("status", "pid", "run_dir", "started", "finished", "error")  #: what ``update_job`` may change

    def __init__(self, store: ArenaStore) -> None:
        self.store = store

    def create_job(self, kind: str, config: dict[str, Any], *, run_dir: str | None = None) -> int:
        with self.store.write() as db:
            return db["jobs"].insert(
                {"kind": kind, "config": json.dumps(dict(config)), "status": "queued", "run_dir": run_dir,
                 "created": time.time()}
            ).last_pk

    def update_job(self, job_id: int, **changes: Any) -> dict[str, Any]:
        """Change a job's ``status``, ``pid``, ``run_dir``, ``started``, ``finished`` or ``error``."""
        unknown = set(changes) - set(self.FIELDS)
        if unknown:
            raise StoreError(f"jobs have no field {', '.join(sorted(unknown))}")
        if "status" in changes and changes["status"] not in STATUSES:
            raise StoreError(f"job status must be one of {', '.join(STATUSES)}")
        with self.store.write() as db:
            if db.execute("SELECT 1 FROM jobs WHERE id = ?", [job_id]).fetchone() is None:
                raise StoreError(f"unknown job {job_id!r}")
            if changes:
                db["jobs"].update(job_id, changes)
        return self.get_job(job_id)  # type: ignore[return-value]

    def get_job(self, job_id: int) -> dict[str, Any] | None:
        rows = self._select("SELECT * FROM jobs WHERE id = ?", [job_id])
        return rows[0] if rows else None

    def list_jobs(self, status: str | None = None) -> list[dict[str, Any]]:
        return self._select("SELECT * FROM jobs WHERE :status IS NULL OR status = :status ORDER BY id", {"status": status})

    def _select(self, sql: str, params: Any) -> list[dict[str, Any]]:
        with self.store.read() as db:
            rows = list(db.query(sql, params))
        return [{**row, "config": json.loads(row["config"]) if row["config"] is not None else {}} for row in rows]


def default_max_concurrent() -> int:
    """1 without a CUDA device (CPU trainers compete for the same cores), else the GPU count."""
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=5)
        gpus = sum(1 for line in out.stdout.splitlines() if line.startswith("GPU "))
    except (OSError, subprocess.SubprocessError):
        gpus = 0
    return max(1, gpus)


#: the GRPO trainer's policy-optimisation objectives (``qwenrl.objectives``), as the Training tab lists
#: them: the forward process first (the shipped Shapes configs use it)
OBJECTIVE_CHOICES = {name: OBJECTIVE_TITLES[name] for name in reversed(OBJECTIVES)}


def config_objective(config: str | Path) -> str:
    """The ``objective`` a GRPO config asks for (the trainer's default, ``DEFAULT_OBJECTIVE``, when
    it names none); the default too for a file that does not read as a YAML mapping (the trainer
    reports that one when it runs)."""
    path = Path(config) if Path(config).is_absolute() else REPO_ROOT / config
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return DEFAULT_OBJECTIVE
    value = data.get("objective") if isinstance(data, dict) else None
    return value if isinstance(value, str) and value in OBJECTIVES else DEFAULT_OBJECTIVE


#: the distillation designs, as the Training tab names them (``absorb_guidance`` of the config)
DISTILL_DESIGNS = {"absorb": "Absorbed guidance: a guidance-free student", "conditional": "Conditional velocity: a guided student"}


def config_design(config: str | Path) -> str:
    """The design a distillation config asks for: ``absorb`` (``absorb_guidance: true``: the student
    matches the teachers' guided velocity and samples without guidance) or ``conditional``."""
    path = Path(config) if Path(config).is_absolute() else REPO_ROOT / config
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return "conditional"
    return "absorb" if isinstance(data, dict) and data.get("absorb_guidance") is True else "conditional"


def list_configs(kind: str, config_dir: Path = CONFIG_DIR, objective: str | None = None, design: str | None = None) -> list[str]:
    """Config files for a trainer kind, relative to the repository (``*grpo*.yaml``, ``*distill*.yaml``);
    for ``grpo``, only those of ``objective`` when one is given; for ``distill``, only those of
    ``design``."""
    if kind not in TRAINERS:
        raise JobError(f"unknown job kind {kind!r}; expected one of {sorted(TRAINERS)}")
    if objective is not None and objective not in OBJECTIVES:
        raise JobError(f"unknown objective {objective!r}; expected one of {sorted(OBJECTIVES)}")
    if design is not None and design not in DISTILL_DESIGNS:
        raise JobError(f"unknown distillation design {design!r}; expected one of {sorted(DISTILL_DESIGNS)}")
    # the Shapes configs first: they run on any machine; the others want a GPU
    paths = sorted(config_dir.glob(f"*{kind}*.yaml"), key=lambda p: (not p.name.startswith("shapes"), p.name))
    if kind == "grpo" and objective is not None:
        paths = [p for p in paths if config_objective(p) == objective]
    if kind == "distill" and design is not None:
        paths = [p for p in paths if config_design(p) == design]
    return [str(p.relative_to(REPO_ROOT)) if p.is_relative_to(REPO_ROOT) else str(p) for p in paths]


def shown_path(path: Path) -> str:
    """A server folder as a refusal may name it: relative to the repository, else by its name only
    (a refusal never names an absolute path on the server)."""
    path = Path(path).resolve()
    return str(path.relative_to(REPO_ROOT)) if path.is_relative_to(REPO_ROOT) else f"the studio's {path.name} folder"


def _plain_text(value: str, limit: int) -> bool:
    return 0 < len(value) <= limit and all(ch.isprintable() for ch in value)


def resolve_config(config: str | Path, config_dir: Path = CONFIG_DIR) -> Path:
    """The config file, which must be a YAML file inside ``config_dir`` (never an arbitrary path);
    JobError for anything else, a NUL byte or other control character included."""
    if not isinstance(config, (str, Path)) or not _plain_text(str(config), 512):
        raise JobError(f"config {str(config)[:60]!r} must be a file name of printable characters")
    raw = Path(config)
    path = (raw if raw.is_absolute() else REPO_ROOT / raw).resolve()
    if not path.is_relative_to(config_dir.resolve()):
        path = (config_dir / raw.name).resolve()  # a bare file name
    if not path.is_relative_to(config_dir.resolve()) or path.suffix not in (".yaml", ".yml") or not path.is_file():
        raise JobError(f"config {str(config)[:120]!r} is not one of the YAML files in {shown_path(config_dir)}")
    return path


def check_overrides(overrides: dict[str, Any] | None) -> dict[str, str]:
    """``--set`` overrides as strings; keys are field names, values one line of printable characters each."""
    out: dict[str, str] = {}
    for key, value in (overrides or {}).items():
        if not _KEY.match(str(key)):
            raise JobError(f"override key {str(key)[:80]!r} is not a config field name")
        text = value if isinstance(value, str) else json.dumps(value)
        if len(text) > 1000 or any(not ch.isprintable() for ch in text):
            raise JobError(f"override {key}: value must be one line of at most 1000 printable characters")
        out[str(key)] = text
    return out


def check_job_id(job_id: Any) -> int:
    """A job id (a positive integer, or its decimal text)."""
    text = str(job_id)
    if isinstance(job_id, bool) or not text.isdigit() or len(text) > 12:
        raise JobError(f"{job_id!r} is not a job id")
    return int(text)


def _job_alive(pid: int | None, run_dir: str) -> bool:
    """True while ``pid`` runs this job's command (a reused pid runs something else)."""
    if not pid or not _pid_alive(int(pid)):
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] in ("Z", "X"):  # finished, not yet reaped
            return False
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return True  # no /proc: trust the pid
    return run_dir.encode() in cmdline


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass
class _Running:
    job_id: int
    popen: subprocess.Popen | None  # None for a job adopted from an earlier studio
    pid: int
    run_dir: str
    cancel_at: float | None = None  # when SIGKILL follows the SIGTERM


class JobManager:
    """Queue and run training jobs; a thread starts queued jobs and reaps finished ones."""

    def __init__(
        self,
        store: JobQueue,
        runs_dir: str | Path,
        *,
        max_concurrent: int | None = None,
        trainers: dict[str, str] | None = None,
        python: str = sys.executable,
        config_dir: Path = CONFIG_DIR,
        env: dict[str, str] | None = None,
        poll_s: float = 0.5,
        kill_grace_s: float = 10.0,
        path_roots: list[Path] | None = None,
    ) -> None:
        self.store = store
        self.runs_dir = Path(runs_dir)
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        self.max_concurrent = max_concurrent or default_max_concurrent()
        if self.max_concurrent < 1:
            raise JobError("max_concurrent must be at least 1")
        self.trainers = dict(trainers or TRAINERS)
        self.python = python
        self.config_dir = config_dir
        self.env = env
        self.poll_s = poll_s
        self.kill_grace_s = kill_grace_s
        #: the folders a job's path fields (model, reward, teachers…) may name
        self.path_roots = list(dict.fromkeys([*(Path(p) for p in path_roots or []), MODELS_DIR, CONFIG_DIR, self.config_dir, self.runs_dir]))
        self._running: dict[int, _Running] = {}
        self._lock = threading.RLock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- lifecycle ------------------------------------------------------------------------
    def recover(self) -> list[int]:
        """Mark running jobs whose process is gone as ``lost``; adopt the ones still alive.

        Returns the ids marked lost. Call once at start-up, before ``start``.
        """
        lost = []
        for job in self.store.list_jobs(status="running"):
            if _job_alive(job.get("pid"), job.get("run_dir") or ""):
                with self._lock:
                    self._running[job["id"]] = _Running(job["id"], None, int(job["pid"]), job["run_dir"])
            else:
                self.store.update_job(job["id"], status="lost", finished=time.time(),
                                      error="the process was gone when the studio started")
                lost.append(job["id"])
        return lost

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="job-scheduler", daemon=True)
            self._thread.start()

    def shutdown(self, cancel_running: bool = True, timeout: float = 15.0) -> None:
        """Stop the scheduler; with ``cancel_running`` also stop the jobs this studio runs."""
        if cancel_running:
            with self._lock:
                ids = list(self._running)
            for job_id in ids:
                self.cancel(job_id, note="the studio stopped")
            deadline = time.time() + timeout
            while time.time() < deadline:
                self.tick()
                with self._lock:
                    if not self._running:
                        break
                time.sleep(0.1)
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    # -- requests -------------------------------------------------------------------------
    def submit(self, kind: str, config: str | Path, overrides: dict[str, Any] | None = None,
               *, submitted_by: str = "admin") -> int:
        """Queue a job; returns its id. Raises JobError for an unknown kind, config or field."""
        if kind not in self.trainers:
            raise JobError(f"unknown job kind {kind!r}; expected one of {sorted(self.trainers)}")
        config_path = resolve_config(config, self.config_dir)
        sets = check_overrides(overrides)
        self.check_config(kind, config_path, sets)
        spec = {"config": str(config_path), "overrides": sets, "submitted_by": submitted_by}
        job_id = self.store.create_job(kind, spec)
        # the run folder is named by the store's id: no user text ever becomes a path
        self.store.update_job(job_id, run_dir=str(self.runs_dir / f"{kind}-{job_id:04d}"))
        self._wake.set()
        return job_id

    def check_config(self, kind: str, config_path: Path, sets: dict[str, str], timeout_s: float = 60.0) -> None:
        """Check a job's config and overrides as its trainer will, before it is queued: the
        trainer's own config class (``python -m training.configs check``, a subprocess that
        imports no torch, so this process never imports ``training``), with every path field
        inside ``path_roots``. JobError with the trainer's message (no absolute server path).
        A kind run by another module than the repository's trainer (tests) is not checked."""
        if TRAINERS.get(kind) != self.trainers.get(kind):
            return
        cmd = [self.python, "-m", "training.configs", "check", "--kind", kind, "--config", str(config_path)]
        for key, value in sets.items():
            cmd += ["--set", f"{key}={value}"]
        for root in self.path_roots:
            cmd += ["--inside", str(root)]
        try:
            out = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout_s,
                                 stdin=subprocess.DEVNULL)
            answer = json.loads(out.stdout.strip().splitlines()[-1])
        except (OSError, subprocess.SubprocessError, ValueError, IndexError):
            raise JobError("could not check the config (the checker did not answer); see the server log") from None
        if "error" in answer:
            raise JobError(self.scrub(str(answer["error"])))

    def scrub(self, text: str) -> str:
        """``text`` with the server's absolute folders written as the admin knows them."""
        for folder, shown in ((self.runs_dir, "runs"), (self.config_dir, shown_path(self.config_dir)),
                              (REPO_ROOT, "")):
            for name in dict.fromkeys((str(Path(folder).resolve()), str(folder))):
                text = text.replace(name + "/", f"{shown}/" if shown else "").replace(name, shown or "the repository")
        return text

    def cancel(self, job_id: int | str, note: str = "cancelled by the admin") -> dict[str, Any]:
        """Cancel a queued job, or SIGTERM a running one's process group (SIGKILL after a grace)."""
        job_id = check_job_id(job_id)
        with self._lock:
            job = self.store.get_job(job_id)
            if job is None:
                raise JobError(f"no job {job_id!r}")
            if job["status"] == "queued":
                self.store.update_job(job_id, status="cancelled", finished=time.time(), error=note)
            elif job_id in self._running:
                run = self._running[job_id]
                if run.cancel_at is None:
                    self.store.update_job(job_id, error=note)
                    _signal_group(run.pid, signal.SIGTERM)
                    run.cancel_at = time.time() + self.kill_grace_s
            elif job["status"] == "running":  # running in a process we do not know
                self.store.update_job(job_id, status="lost", finished=time.time(), error="no process to cancel")
            self._wake.set()
            return self.store.get_job(job_id) or job

    # -- the scheduler --------------------------------------------------------------------
    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception as exc:  # keep scheduling; the error is visible in the server log
                print(f"job scheduler: {type(exc).__name__}: {exc}", file=sys.stderr)
            self._wake.wait(self.poll_s)
            self._wake.clear()

    def tick(self) -> None:
        """Reap finished jobs, escalate overdue cancels, start queued jobs while there is room."""
        with self._lock:
            for job_id, run in list(self._running.items()):
                code = self._poll(run)
                if code is _ALIVE:
                    if run.cancel_at is not None and time.time() >= run.cancel_at:
                        _signal_group(run.pid, signal.SIGKILL)
                    continue
                del self._running[job_id]
                job = self.store.get_job(job_id) or {}
                changes: dict[str, Any] = {"finished": time.time()}
                if run.cancel_at is not None:
                    changes["status"] = "cancelled"
                elif code is None:
                    changes.update(status="lost", error="the process ended while no studio watched it")
                elif code == 0:
                    changes["status"] = "done"
                else:
                    changes.update(status="failed", error=f"exit code {code}; see {LOG_NAME}")
                self.store.update_job(job_id, **changes)
            queued = sorted(self.store.list_jobs(status="queued"), key=lambda j: (j["created"], j["id"]))
            for job in queued:
                if len(self._running) >= self.max_concurrent:
                    break
                self._launch(job)

    def _poll(self, run: _Running):
        if run.popen is not None:
            code = run.popen.poll()
            return _ALIVE if code is None else code
        # adopted from an earlier studio: not our child, so no exit code
        return _ALIVE if _job_alive(run.pid, run.run_dir) else None

    def _launch(self, job: dict[str, Any]) -> None:
        run_dir = Path(job["run_dir"])
        run_dir.mkdir(parents=True, exist_ok=True)
        cmd = self.command(job)
        env = dict(os.environ if self.env is None else self.env)
        env.setdefault("PYTHONUNBUFFERED", "1")
        with open(run_dir / LOG_NAME, "ab") as log:
            log.write(f"$ {' '.join(cmd)}\n".encode())
            log.flush()
            try:
                popen = subprocess.Popen(
                    cmd, cwd=REPO_ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log,
                    stderr=subprocess.STDOUT, start_new_session=True,
                )
            except OSError as exc:
                self.store.update_job(job["id"], status="failed", finished=time.time(), error=f"could not start: {exc}")
                return
        self._running[job["id"]] = _Running(job["id"], popen, popen.pid, job["run_dir"])
        self.store.update_job(job["id"], status="running", pid=popen.pid, started=time.time())

    def command(self, job: dict[str, Any]) -> list[str]:
        spec = job["config"]
        cmd = [self.python, "-m", self.trainers[job["kind"]], "--config", spec["config"], "--run", job["run_dir"]]
        for key, value in (spec.get("overrides") or {}).items():
            cmd += ["--set", f"{key}={value}"]
        return cmd

    # -- reading a job's folder -----------------------------------------------------------
    def job(self, job_id: int | str) -> dict[str, Any]:
        job = self.store.get_job(check_job_id(job_id))
        if job is None:
            raise JobError(f"no job {job_id!r}")
        return job

    def log_tail(self, job_id: int | str, lines: int = 40, max_bytes: int = 64_000) -> str:
        path = Path(self.job(job_id)["run_dir"]) / LOG_NAME
        try:
            with open(path, "rb") as fh:
                fh.seek(0, os.SEEK_END)
                size = fh.tell()
                fh.seek(max(0, size - max_bytes))
                text = fh.read().decode("utf-8", "replace")
        except OSError:
            return ""
        # progress bars redraw with carriage returns: keep what a terminal would show
        shown = [line.rsplit("\r", 1)[-1] for line in text.splitlines()]
        return "\n".join(deque(shown, maxlen=lines))

    def metrics(self, job_id: int | str) -> list[dict[str, Any]]:
        return read_metrics(Path(self.job(job_id)["run_dir"]) / METRICS_NAME)

    def progress(self, job_id: int | str) -> dict[str, Any]:
        """Status, last step, total steps (from the overrides or the config) and last metrics."""
        job = self.job(job_id)
        job_id = job["id"]
        rows = read_metrics(Path(job["run_dir"]) / METRICS_NAME)
        last = rows[-1] if rows else {}
        total = _total_steps(job)
        step = last.get("step")
        return {
            "id": job_id,
            "status": job["status"],
            "step": step,
            "total_steps": total,
            "fraction": (min(1.0, step / total) if isinstance(step, (int, float)) and total else None),
            "last": last,
        }


_ALIVE = object()


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(os.getpgid(pid), sig)
    except (ProcessLookupError, PermissionError):
        pass


def labelled(items: list[str], what: str) -> dict[str, str]:
    """``LABEL=VALUE`` command-line items as a dict; SystemExit naming the bad one."""
    out = {}
    for item in items:
        label, sep, value = item.partition("=")
        if not sep or not label or not value:
            raise SystemExit(f"{what} must look like LABEL=VALUE, got {item!r}")
        out[label] = value
    return out


def run_metrics(run: str | Path) -> list[dict[str, Any]]:
    """The metric rows of a run folder (``qwenrl.metrics.read_metrics`` of its ``metrics.jsonl``:
    an old run's names come out under the current scheme); SystemExit when it has none, for the
    command-line scripts that read finished runs."""
    path = Path(run) / "metrics.jsonl"
    if not path.is_file():
        raise SystemExit(f"{run}: no metrics.jsonl (not a run folder?)")
    return read_metrics(path)


def _total_steps(job: dict[str, Any]) -> int | None:
    overrides = job["config"].get("overrides") or {}
    for key in ("steps", "total_steps", "max_steps"):
        if key in overrides:
            try:
                return int(float(overrides[key]))
            except ValueError:
                return None
    try:
        import yaml

        cfg = yaml.safe_load(Path(job["config"]["config"]).read_text()) or {}
    except (OSError, ValueError):
        return None
    for key in ("steps", "total_steps", "max_steps"):
        if isinstance(cfg.get(key), int):
            return cfg[key]
    return None
