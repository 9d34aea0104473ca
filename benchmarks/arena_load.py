"""Load on the arena's vote path: concurrent voters against a running studio on loopback.

Each client is its own voter (its own cookie jar) and loops battle → vote for a bounded time.
Afterwards the acknowledged votes (HTTP 200) are compared with the votes in the store: none
may be missing, none counted twice. Three runs:

1. REST: ``--clients`` asyncio clients (httpx) for ``--duration`` seconds;
2. REST with a crash: the same, with the server killed (SIGKILL to its process group) in the
   middle and restarted on the same workspace; then ``PRAGMA integrity_check``;
3. Gradio: ``--gradio-clients`` threads, one ``gradio_client.Client`` each, calling the
   arena's Gradio events (new battle, vote) — the path a browser uses.

Targets (2 cores): at least 200 votes/s through REST with 32 clients, p95 under 250 ms, zero
lost or duplicated votes, also across the crash.

    python benchmarks/arena_load.py                       # spawns a studio on tiny checkpoints
    python benchmarks/arena_load.py --clients 32 --duration 20 --out benchmarks/results/arena_load.json

With ``--url`` it loads a studio that is already running instead (runs 1 and 3 only, and the
store check only if ``--workspace`` names its folder).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

OUTCOMES = ("model_a", "model_b", "tie", "tie (bothbad)")


# ---------------------------------------------------------------------------------------------
# A studio to load
# ---------------------------------------------------------------------------------------------


class Server:
    """``qwenrl studio`` in its own process group on a workspace of tiny checkpoints."""

    def __init__(self, workspace: Path, models_dir: Path, port: int, rate: float, burst: float,
                 pool_size: int = 48, extra: tuple[str, ...] = ()):
        self.workspace, self.models_dir, self.port = workspace, models_dir, port
        self.url = f"http://127.0.0.1:{port}"
        self.rate, self.burst = rate, burst
        self.pool_size, self.extra = pool_size, tuple(extra)
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 300.0) -> float:
        """Start and wait until both arenas have models; returns the seconds it took."""
        t0 = time.perf_counter()
        cmd = [sys.executable, "-m", "qwenrl", "studio", "--workspace", str(self.workspace), "--port", str(self.port),
               "--models-dir", str(self.models_dir), "--pool-size", str(self.pool_size), "--gallery-steps", "4",
               "--rate-limit", str(self.rate), "--rate-burst", str(self.burst), *self.extra]
        log = open(self.workspace.parent / "server.log", "ab")
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        self.proc = subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env=env,
                                     start_new_session=True)
        log.close()
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"studio exited ({self.proc.returncode}); see {self.workspace.parent / 'server.log'}")
            try:
                health = httpx.get(f"{self.url}/api/v1/health", timeout=2).json()
                if all(n >= 2 for n in health["models"].values()):
                    return time.perf_counter() - t0
            except (httpx.HTTPError, ValueError):
                pass
            time.sleep(0.25)
        raise TimeoutError("studio did not become ready")

    def cpu_seconds(self) -> float:
        """CPU time (user + system) of the studio process so far."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def kill(self) -> None:
        """SIGKILL the whole process group: no shutdown handler runs."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()


def tiny_models(root: Path) -> Path:
    import torch

    from qwenrl.models.shapes import ShapesPolicy

    tiny = {"vae": {"block_out_channels": [16, 16, 16]},
            "text": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1},
            "transformer": {"num_layers": 1, "attention_head_dim": 8, "num_attention_heads": 2}}
    for i, name in enumerate(["model-a", "model-b", "model-c", "model-d"]):
        torch.manual_seed(i)
        ShapesPolicy(tiny).save(root / name, name=name, parent=None, lineage=[name], tasks=["t2i", "edit"])
    return root


# ---------------------------------------------------------------------------------------------
# REST clients
# ---------------------------------------------------------------------------------------------


@dataclass
class Tally:
    battle_ms: list[float] = field(default_factory=list)
    vote_ms: list[float] = field(default_factory=list)
    cycle_ms: list[float] = field(default_factory=list)
    acked: list[str] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)  # vote sent, connection lost before the answer
    refused: dict[int, int] = field(default_factory=dict)
    transport_errors: int = 0
    rate_limited: int = 0


async def rest_client(url: str, stop_at: float, tally: Tally, seed: int) -> None:
    rng = random.Random(seed)
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    async with httpx.AsyncClient(base_url=url, timeout=10.0, limits=limits) as client:
        while time.monotonic() < stop_at:
            task = "t2i" if rng.random() < 0.5 else "edit"
            t0 = time.perf_counter()
            try:
                r = await client.get("/api/v1/battle", params={"task": task})
            except httpx.TransportError:
                tally.transport_errors += 1
                await asyncio.sleep(0.2)
                continue
            t1 = time.perf_counter()
            if r.status_code == 429:
                tally.rate_limited += 1
                await asyncio.sleep(float(r.headers.get("retry-after", "1")))
                continue
            if r.status_code != 200:
                tally.refused[r.status_code] = tally.refused.get(r.status_code, 0) + 1
                continue
            tally.battle_ms.append(1000 * (t1 - t0))
            battle_id = r.json()["battle_id"]
            try:
                v = await client.post("/api/v1/vote", json={"battle_id": battle_id, "winner": rng.choice(OUTCOMES)})
            except httpx.TransportError:
                tally.transport_errors += 1
                tally.unknown.append(battle_id)
                await asyncio.sleep(0.2)
                continue
            t2 = time.perf_counter()
            if v.status_code == 200:
                tally.vote_ms.append(1000 * (t2 - t1))
                tally.cycle_ms.append(1000 * (t2 - t0))
                tally.acked.append(battle_id)
            elif v.status_code == 429:
                tally.rate_limited += 1
                await asyncio.sleep(float(v.headers.get("retry-after", "1")))
            else:
                tally.refused[v.status_code] = tally.refused.get(v.status_code, 0) + 1


async def rest_load(url: str, clients: int, duration: float, kill_at: float | None = None,
                    server: Server | None = None) -> tuple[Tally, dict]:
    tally = Tally()
    stop_at = time.monotonic() + duration
    crash: dict = {}

    async def crash_and_restart() -> None:
        await asyncio.sleep(kill_at)
        crash["killed_after_s"] = kill_at
        crash["acked_before_kill"] = len(tally.acked)
        server.kill()  # type: ignore[union-attr]
        crash["restart_s"] = await asyncio.to_thread(server.start)  # type: ignore[union-attr]

    jobs = [rest_client(url, stop_at, tally, seed) for seed in range(clients)]
    if kill_at is not None:
        jobs.append(crash_and_restart())
    t0 = time.perf_counter()
    await asyncio.gather(*jobs)
    crash["wall_s"] = time.perf_counter() - t0
    return tally, crash


def pct(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 2) if values else None


def summarize(tally: Tally, seconds: float) -> dict:
    return {
        "seconds": round(seconds, 2),
        "votes_acknowledged": len(tally.acked),
        "votes_per_s": round(len(tally.acked) / seconds, 1),
        "latency_ms": {
            "battle": {"p50": pct(tally.battle_ms, 50), "p95": pct(tally.battle_ms, 95), "p99": pct(tally.battle_ms, 99)},
            "vote": {"p50": pct(tally.vote_ms, 50), "p95": pct(tally.vote_ms, 95), "p99": pct(tally.vote_ms, 99)},
            "battle_and_vote": {"p50": pct(tally.cycle_ms, 50), "p95": pct(tally.cycle_ms, 95),
                                "p99": pct(tally.cycle_ms, 99)},
        },
        "requests_p95_ms": pct(tally.battle_ms + tally.vote_ms, 95),
        "rate_limited": tally.rate_limited,
        "refused": {str(k): v for k, v in tally.refused.items()},
        "transport_errors": tally.transport_errors,
        "votes_in_flight_at_errors": len(tally.unknown),
    }


def check_store(db: Path, tally: Tally, human_before: set[str]) -> dict:
    """Acknowledged votes against the store; duplicates; integrity."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT battle_id FROM votes WHERE judge = 'human'").fetchall()
        duplicates = conn.execute(
            "SELECT count(*) FROM (SELECT battle_id FROM votes GROUP BY battle_id HAVING count(*) > 1)").fetchone()[0]
        integrity = conn.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        conn.close()
    stored = [r[0] for r in rows if r[0] not in human_before]
    stored_set = set(stored)
    acked = set(tally.acked)
    return {
        "stored_votes": len(stored),
        "lost": len(acked - stored_set),
        "duplicated": int(duplicates) + (len(stored) - len(stored_set)) + (len(tally.acked) - len(acked)),
        "stored_not_acknowledged": len(stored_set - acked),
        "stored_not_acknowledged_of_in_flight": len((stored_set - acked) & set(tally.unknown)),
        "integrity_check": integrity,
    }


def existing_votes(db: Path) -> set[str]:
    if not db.exists():
        return set()
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return {r[0] for r in conn.execute("SELECT battle_id FROM votes")}
    finally:
        conn.close()


# ---------------------------------------------------------------------------------------------
# Gradio clients
# ---------------------------------------------------------------------------------------------


def gradio_load(url: str, clients: int, duration: float) -> dict:
    from gradio_client import Client

    acked, errors, cycle_ms = [], [0], []
    lock = threading.Lock()
    stop_at = time.monotonic() + duration

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        # download_files=False: the client gets the images' server paths instead of fetching them
        client = Client(url + "/", verbose=False, download_files=False, analytics_enabled=False)
        while time.monotonic() < stop_at:
            t0 = time.perf_counter()
            try:
                client.predict(api_name="/new_battle_t2i")
                out = client.predict(api_name=f"/vote_t2i_{rng.choice(['a', 'b', 'tie', 'tie_bothbad'])}")
            except Exception:  # noqa: BLE001 - count and go on
                with lock:
                    errors[0] += 1
                continue
            ms = 1000 * (time.perf_counter() - t0)
            reveal = out[-1] if isinstance(out, (list, tuple)) else out
            with lock:
                if isinstance(reveal, str) and "A was" in reveal:
                    acked.append(1)
                    cycle_ms.append(ms)
                else:
                    errors[0] += 1

    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - t0
    return {"clients": clients, "seconds": round(seconds, 2), "votes": len(acked),
            "votes_per_s": round(len(acked) / seconds, 1),
            "battle_and_vote_ms": {"p50": pct(cycle_ms, 50), "p95": pct(cycle_ms, 95)}, "errors": errors[0]}


# ---------------------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", help="load a running studio instead of spawning one")
    ap.add_argument("--workspace", type=Path, help="with --url: its workspace, to check the store")
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--duration", type=float, default=20.0, help="seconds of the REST run")
    ap.add_argument("--crash-duration", type=float, default=40.0, help="seconds of the run with a crash (0: skip)")
    ap.add_argument("--gradio-clients", type=int, default=8)
    ap.add_argument("--gradio-duration", type=float, default=15.0, help="(0: skip)")
    ap.add_argument("--rate-limit", type=float, default=20.0, help="per-voter limit of the spawned studio")
    ap.add_argument("--rate-burst", type=float, default=40.0)
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "arena_load.json")
    args = ap.parse_args()

    results: dict = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
                    "load_average_at_start": os.getloadavg()},
        "settings": {k: v for k, v in vars(args).items() if k not in ("out", "workspace")},
    }
    server = None
    tmp = None
    if args.url:
        url, db = args.url.rstrip("/"), (args.workspace / "arena.db" if args.workspace else None)
    else:
        from tests.studio_support import free_port

        tmp = Path(tempfile.mkdtemp(prefix="arena-load-"))
        print(f"building tiny checkpoints and a workspace in {tmp}", file=sys.stderr)
        models = tiny_models(tmp / "models")
        (tmp / "workspace").mkdir()
        server = Server(tmp / "workspace", models, free_port(), args.rate_limit, args.rate_burst)
        results["startup_s"] = round(server.start(), 1)
        url, db = server.url, tmp / "workspace" / "arena.db"

    try:
        before = existing_votes(db) if db else set()
        print(f"REST: {args.clients} clients for {args.duration}s", file=sys.stderr)
        server_cpu = server.cpu_seconds() if server else None
        client_cpu = time.process_time()
        tally, info = asyncio.run(rest_load(url, args.clients, args.duration))
        results["rest"] = {"clients": args.clients, **summarize(tally, info["wall_s"])}
        # CPU per vote does not depend on what else the machine runs, unlike votes/s
        results["rest"]["client_cpu_ms_per_vote"] = round(1000 * (time.process_time() - client_cpu) / max(1, len(tally.acked)), 2)
        if server is not None:
            results["rest"]["server_cpu_ms_per_vote"] = round(
                1000 * (server.cpu_seconds() - server_cpu) / max(1, len(tally.acked)), 2)
        results["rest"]["load_average_after"] = os.getloadavg()
        if db:
            results["rest"]["store"] = check_store(db, tally, before)
        print(json.dumps(results["rest"], indent=1), file=sys.stderr)

        if server is not None and args.crash_duration > 0:
            before = existing_votes(db)
            kill_at = args.crash_duration / 4
            print(f"REST with SIGKILL at {kill_at}s and restart, {args.crash_duration}s", file=sys.stderr)
            tally, info = asyncio.run(rest_load(url, args.clients, args.crash_duration, kill_at, server))
            up = info["wall_s"] - info.get("restart_s", 0.0)
            results["rest_with_crash"] = {
                "clients": args.clients,
                "killed_after_s": info["killed_after_s"],
                "restart_s": round(info["restart_s"], 1),
                "acknowledged_before_kill": info["acked_before_kill"],
                **summarize(tally, info["wall_s"]),
                "votes_per_s_while_up": round(len(tally.acked) / up, 1),
                "store": check_store(db, tally, before),
            }
            print(json.dumps(results["rest_with_crash"], indent=1), file=sys.stderr)

        if args.gradio_duration > 0 and args.gradio_clients > 0:
            print(f"Gradio: {args.gradio_clients} clients for {args.gradio_duration}s", file=sys.stderr)
            server_cpu = server.cpu_seconds() if server else None
            client_cpu = time.process_time()
            results["gradio"] = gradio_load(url, args.gradio_clients, args.gradio_duration)
            n = max(1, results["gradio"]["votes"])
            results["gradio"]["client_cpu_ms_per_vote"] = round(1000 * (time.process_time() - client_cpu) / n, 1)
            if server is not None:
                results["gradio"]["server_cpu_ms_per_vote"] = round(1000 * (server.cpu_seconds() - server_cpu) / n, 1)
            print(json.dumps(results["gradio"], indent=1), file=sys.stderr)
    finally:
        if server is not None:
            server.stop()

    rest = results["rest"]
    crash = results.get("rest_with_crash", {})
    results["targets"] = {
        "rest_votes_per_s_at_least_200": rest["votes_per_s"] >= 200,
        "rest_p95_under_250ms": (rest["requests_p95_ms"] or 1e9) < 250,
        "no_lost_or_duplicated": all(r.get("store", {}).get("lost", 0) == 0 and r.get("store", {}).get("duplicated", 0) == 0
                                     for r in (rest, crash) if r),
        "integrity_after_crash": crash.get("store", {}).get("integrity_check") == "ok" if crash else None,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results["targets"]), file=sys.stderr)
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
