"""Benchmark the rating code on 1,000,000 votes among 100 models, side by side with FastChat's.

Generates a seeded vote log with known strengths (JSON lines, the export format, in a temporary
folder), then measures:

- side by side, alternating, ``--runs`` times each on the same file: the whole
  ``qwenrl elo FILE --format json`` as a subprocess (wall time, peak memory of its largest
  process), and FastChat's own code for the same table in a subprocess: its leaderboard's
  ``rating_systems.py`` (``compute_elo``, ``compute_bt``, ``compute_bootstrap_bt`` with 1,000
  rounds on 2 processes) after ``pd.read_json`` of the file, as its ``elo_analysis.py`` reads a
  battle file. FastChat's code is read from a FastChat checkout given with ``--fastchat`` (a
  working tree or a bare git directory; it is run, never copied into this repository);
  without one the FastChat side is skipped. Medians and their ratio come from this one run;
- in this process, one at a time: reading the file, online Elo, Bradley–Terry, the 1,000-round
  bootstrap, the sandwich intervals, TrueSkill, and the full leaderboard with 1 and 2 workers;
- the accuracy of Bradley–Terry against the true strengths, and how far FastChat's stopping
  rule (100 L-BFGS iterations, gtol 1e-6) leaves its optimiser from the converged optimum.

Figures go to ``benchmarks/results/ratings.json`` and ``ratings.md``. BLAS runs single-threaded,
as in ``qwenrl elo``: the matrices are small and BLAS threads only contend for the cores.

Run: ``flock /tmp/qwenrl-cpu.lock python benchmarks/ratings.py --fastchat ~/src/FastChat``
(``--votes 100000`` for a quick look). The machine's load (``uptime``) is recorded before and after.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # as qwenrl elo does; must precede numpy

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import platform  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import trueskill  # noqa: E402
from scipy.optimize import minimize  # noqa: E402
from scipy.special import expit  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from arena import io as vote_io  # noqa: E402
from arena import ratings  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
TARGETS = {"table_compute_s": 3.0, "cli_wall_s": 1.9, "peak_memory_mb": 400, "speedup_vs_fastchat": 20.0}

# FastChat's table from a battle file, with FastChat's own functions (rating_systems.py on sys.path).
FASTCHAT_TABLE = """
import sys, time
start = time.perf_counter()
sys.path.insert(0, sys.argv[1])
import pandas as pd
from rating_systems import compute_bootstrap_bt, compute_bt, compute_elo
battles = pd.read_json(sys.argv[2], lines=True).sort_values(ascending=True, by=["tstamp"])
online = compute_elo(battles)
final = compute_bt(battles)
bootstrap = compute_bootstrap_bt(battles, num_round=int(sys.argv[3]), num_cpu=2)
table = pd.DataFrame({"elo": final, "online": pd.Series(online), "q025": bootstrap.quantile(0.025),
                      "q975": bootstrap.quantile(0.975)})
print(time.perf_counter() - start, len(table))
"""

# Runs the CLI as its child, so the child's peak memory is measured apart from this process.
CLI_WRAPPER = """
import resource, subprocess, sys, time
start = time.perf_counter()
done = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
wall = time.perf_counter() - start
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
print(wall, usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime, done.returncode)
sys.stderr.write(done.stderr)
"""


def generate(path: Path, n_votes: int, n_models: int, seed: int) -> dict[str, float]:
    """Seeded votes among models whose true strengths are returned (Elo scale, mean 1000)."""
    rng = np.random.default_rng(seed)
    strengths = rng.normal(0.0, 150.0, n_models)
    strengths += 1000.0 - strengths.mean()
    names = [f"model-{k:03d}" for k in range(n_models)]
    a = rng.integers(0, n_models, n_votes)
    b = (a + rng.integers(1, n_models, n_votes)) % n_models
    p_a = 1.0 / (1.0 + 10.0 ** ((strengths[b] - strengths[a]) / 400.0))
    u = rng.random(n_votes)
    winner = np.select([u < 0.06, u < 0.10, rng.random(n_votes) < p_a], ["tie", "tie (bothbad)", "model_a"], "model_b")
    ids = rng.integers(0, 2**63, n_votes)
    anony = rng.random(n_votes) < 0.9
    tstamp = 1.75e9 + np.cumsum(rng.exponential(0.5, n_votes))

    def records():
        for k in range(n_votes):
            yield {
                "battle_id": f"{ids[k]:016x}", "task": "t2i", "model_a": names[a[k]], "model_b": names[b[k]],
                "winner": str(winner[k]), "judge": "human", "anony": bool(anony[k]), "tstamp": float(tstamp[k]),
                "prompt": f"a scene with {k % 7 + 1} shapes, prompt {k % 500}", "sample_a": 2 * k, "sample_b": 2 * k + 1,
            }

    vote_io.write_votes(records(), path)
    return dict(zip(names, strengths.tolist()))


def fastchat_code(source: Path, into: Path) -> Path:
    """FastChat's rating_systems.py from a checkout (working tree or bare git directory), copied
    into a temporary folder to run; returns that folder."""
    inside = "fastchat/serve/monitor/rating_systems.py"
    target = into / "rating_systems.py"
    if (source / inside).is_file():
        target.write_text((source / inside).read_text())
    else:
        text = subprocess.run(["git", "--git-dir", str(source), "show", f"HEAD:{inside}"], capture_output=True,
                              text=True, check=True).stdout
        target.write_text(text)
    return into


def run_ours(path: Path, rounds: int, pure_python: bool = False) -> dict:
    """``qwenrl elo`` in a fresh process; ``pure_python`` without the C extensions."""
    command = [sys.executable, "-m", "qwenrl", "elo", str(path), "--format", "json", "--bootstrap", str(rounds)]
    env = {**os.environ, **({"QWENRL_PURE_PYTHON": "1"} if pure_python else {})}
    wrapper = subprocess.run([sys.executable, "-c", CLI_WRAPPER, *command], capture_output=True, text=True,
                             cwd=ROOT, check=True, env=env)
    wall, peak, cpu, code = wrapper.stdout.split()
    if int(code) != 0:
        raise SystemExit(f"qwenrl elo failed:\n{wrapper.stderr}")
    return {"wall_s": float(wall), "peak_rss_mb": float(peak), "cpu_s": float(cpu), "stderr": wrapper.stderr.strip()}


def run_fastchat(code_dir: Path, path: Path, rounds: int) -> dict:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", FASTCHAT_TABLE, str(code_dir), str(path), str(rounds)],
                          capture_output=True, text=True, env={**os.environ, "TQDM_DISABLE": "1"})
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"FastChat's code failed:\n{done.stderr[-3000:]}")
    return {"wall_s": wall, "models": int(done.stdout.split()[-1])}


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    value = fn(*args, **kwargs)
    return value, time.perf_counter() - start


def fastchat_stopping_rule_gap(ev: ratings.EncodedVotes, converged: dict[str, float]) -> float:
    """Largest gap (Elo points) between FastChat's compute_bt stopping rule and the optimum."""
    pc = ratings.pair_counts(ev)
    cells = np.concatenate([pc.wins_i, pc.ties, pc.wins_j])
    i = np.concatenate([pc.i] * 3)
    j = np.concatenate([pc.j] * 3)
    y = np.repeat([1.0, 0.5, 0.0], len(pc.i))
    m, alpha = len(pc.models), math.log(10)

    def loss_and_grad(r):
        p = expit(alpha * (r[i] - r[j]))
        loss = -((np.log(p) * y + np.log(1 - p) * (1 - y)) * cells).sum()
        g = -alpha * (y - p) * cells
        return loss, np.bincount(i, g, m) - np.bincount(j, g, m)

    result = minimize(loss_and_grad, np.zeros(m), jac=True, method="L-BFGS-B", options={"maxiter": 100, "gtol": 1e-6})
    fastchat = 400 * result.x + 1000
    return float(max(abs(fastchat[k] - converged[name]) for k, name in enumerate(pc.models)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--votes", type=int, default=1_000_000)
    parser.add_argument("--models", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--trueskill-package-sample", type=int, default=20_000,
                        help="votes rated with trueskill.rate_1vs1 itself, to compare speeds")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--fastchat", type=Path, help="a FastChat checkout (working tree or bare git directory)")
    parser.add_argument("--runs", type=int, default=3, help="side-by-side runs of each")
    parser.add_argument("--no-steps", action="store_true", help="only the side-by-side runs")
    args = parser.parse_args()

    report: dict = {
        "votes": args.votes, "models": args.models, "bootstrap_rounds": args.rounds,
        "c_extensions": ratings._compiled_passes() is not None and vote_io._scan_library() is not None,
        "machine": {
            "cpus": os.cpu_count(), "python": platform.python_version(), "numpy": np.__version__,
            "platform": platform.platform(), "load_average_at_start": list(os.getloadavg()),
        },
    }
    timings: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "votes.jsonl"
        print(f"generating {args.votes:,} votes among {args.models} models…", file=sys.stderr)
        strengths = generate(path, args.votes, args.models, args.seed)
        report["file_mb"] = round(path.stat().st_size / 2**20, 1)

        # 1. The command a user runs, end to end, in a fresh process; FastChat's code beside it.
        # Our code as an installed package has it: compiled to bytecode (pip compiles what it
        # installs; an editable checkout run with PYTHONDONTWRITEBYTECODE would compile each time).
        subprocess.run([sys.executable, "-m", "compileall", "-q", "qwenrl", "arena"], cwd=ROOT, check=True)
        report["uptime_before"] = uptime()
        ours, theirs = [], []
        code_dir = fastchat_code(args.fastchat, Path(tmp)) if args.fastchat else None
        for k in range(args.runs):
            ours.append(run_ours(path, args.rounds))
            print(f"qwenrl elo: {ours[-1]['wall_s']:.2f} s wall, {ours[-1]['peak_rss_mb']:.0f} MB peak", file=sys.stderr)
            if code_dir is not None:
                theirs.append(run_fastchat(code_dir, path, args.rounds))
                print(f"FastChat: {theirs[-1]['wall_s']:.1f} s wall", file=sys.stderr)
        report["uptime_after_side_by_side"] = uptime()
        pure = run_ours(path, args.rounds, pure_python=True)  # what a machine without a C compiler gets
        print(f"qwenrl elo, pure Python: {pure['wall_s']:.2f} s wall", file=sys.stderr)
        report["cli_pure_python"] = {"wall_s": round(pure["wall_s"], 2), "peak_rss_mb": round(pure["peak_rss_mb"])}
        walls = sorted(r["wall_s"] for r in ours)
        median = walls[len(walls) // 2]
        report["cli"] = {"command": "qwenrl elo votes.jsonl --format json", "runs_wall_s": [round(r["wall_s"], 2) for r in ours],
                         "wall_s": round(median, 2), "cpu_s_all_processes": round(ours[0]["cpu_s"], 2),
                         "peak_rss_mb_largest_process": round(max(r["peak_rss_mb"] for r in ours)),
                         "stderr": ours[0]["stderr"]}
        if theirs:
            fc = sorted(r["wall_s"] for r in theirs)
            report["fastchat"] = {"code": "fastchat/serve/monitor/rating_systems.py (compute_elo, compute_bt, "
                                          "compute_bootstrap_bt num_cpu=2) after pd.read_json(lines=True)",
                                  "runs_wall_s": [round(x, 1) for x in (r["wall_s"] for r in theirs)],
                                  "wall_s": round(fc[len(fc) // 2], 1)}
            report["speedup_vs_fastchat"] = round(report["fastchat"]["wall_s"] / median, 1)
        if args.no_steps:
            args.out.mkdir(parents=True, exist_ok=True)
            (args.out / "ratings_side_by_side.json").write_text(json.dumps(report, indent=2) + "\n")
            print(json.dumps(report, indent=2))
            return

        # 2. The steps, one at a time, in this process.
        frame, timings["read_jsonl"] = timed(vote_io.read_votes, path, fields=vote_io.RATING_FIELDS)
    ev, timings["encode"] = timed(ratings.encode_votes, frame)
    del frame
    elo, timings["online_elo"] = timed(ratings.online_elo, ev)
    bt, timings["bradley_terry"] = timed(ratings.bradley_terry, ev)
    _, timings["bootstrap_ci"] = timed(ratings.confidence_intervals, ev, rounds=args.rounds, seed=0)
    _, timings["sandwich_ci"] = timed(ratings.confidence_intervals, ev, method="sandwich")
    _, timings["trueskill"] = timed(ratings.trueskill_ratings, ev)
    timings["table_elo_bt_bootstrap"] = timings["online_elo"] + timings["bootstrap_ci"]  # bootstrap_ci includes BT
    board1, timings["leaderboard_workers_1"] = timed(ratings.leaderboard, ev, rounds=args.rounds, workers=1)
    board2, timings["leaderboard_workers_2"] = timed(ratings.leaderboard, ev, rounds=args.rounds, workers=2)
    assert board1.rows == board2.rows, "results must not depend on the number of workers"

    # TrueSkill through the package itself, on a sample, for comparison.
    sample = min(args.trueskill_package_sample, len(ev))
    env = trueskill.TrueSkill()
    state = {}
    start = time.perf_counter()
    for a, b, o in zip(ev.a[:sample].tolist(), ev.b[:sample].tolist(), ev.outcome[:sample].tolist()):
        ra, rb = state.get(a, env.create_rating()), state.get(b, env.create_rating())
        if o == ratings.B_WINS:
            rb, ra = env.rate_1vs1(rb, ra)
        else:
            ra, rb = env.rate_1vs1(ra, rb, drawn=o == ratings.TIE)
        state[a], state[b] = ra, rb
    package_per_vote = (time.perf_counter() - start) / sample
    timings = {k: round(v, 3) for k, v in timings.items()}
    report["timings_s"] = timings
    report["trueskill_package"] = {
        "sample_votes": sample, "us_per_vote": round(package_per_vote * 1e6, 1),
        "extrapolated_s_for_all_votes": round(package_per_vote * len(ev), 1),
    }
    truth = np.array([strengths[m] for m in bt])
    ours = np.array(list(bt.values()))
    report["accuracy"] = {
        "bt_rmse_vs_true_strengths": round(float(np.sqrt(np.mean((ours - truth) ** 2))), 2),
        "fastchat_stopping_rule_max_gap_elo": round(fastchat_stopping_rule_gap(ev, bt), 3),
        "online_elo_rmse_vs_true_strengths": round(
            float(np.sqrt(np.mean((np.array([elo[m] for m in bt]) - truth) ** 2))), 2),
    }
    report["machine"]["load_average_at_end"] = list(os.getloadavg())
    report["targets"] = TARGETS
    report["met"] = {
        "table_compute_s": timings["table_elo_bt_bootstrap"] <= TARGETS["table_compute_s"],
        "cli_wall_s": report["cli"]["wall_s"] <= TARGETS["cli_wall_s"],
        "peak_memory_mb": report["cli"]["peak_rss_mb_largest_process"] < TARGETS["peak_memory_mb"],
    }
    if "speedup_vs_fastchat" in report:
        report["met"]["speedup_vs_fastchat"] = report["speedup_vs_fastchat"] >= TARGETS["speedup_vs_fastchat"]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "ratings.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / "ratings.md").write_text(markdown(report))
    print(markdown(report))


def markdown(report: dict) -> str:
    t, cli = report["timings_s"], report["cli"]
    machine = report["machine"]
    lines = [
        f"# Ratings benchmark: {report['votes']:,} votes, {report['models']} models",
        "",
        f"Machine: {machine['cpus']} CPUs, Python {machine['python']}, numpy {machine['numpy']}; load average "
        f"{machine['load_average_at_start'][0]:.1f} at the start and {machine['load_average_at_end'][0]:.1f} at the "
        "end (other jobs share the machine). Vote file: "
        f"{report['file_mb']} MB of JSON lines in the export format.",
        "",
        f"`uptime` before the side-by-side runs: `{report['uptime_before']}`; after: `{report['uptime_after_side_by_side']}`.",
        "",
        "| side by side, same file | runs (s) | median wall (s) |",
        "|:---|:---|---:|",
        f"| `qwenrl elo votes.jsonl --format json` (read + online Elo + BT + 1,000-round bootstrap + TrueSkill) | "
        f"{', '.join(map(str, cli['runs_wall_s']))} | **{cli['wall_s']}** |",
        *([f"| FastChat `rating_systems.py`: read_json + compute_elo + compute_bt + compute_bootstrap_bt (1,000 rounds, "
           f"2 processes) | {', '.join(map(str, report['fastchat']['runs_wall_s']))} | {report['fastchat']['wall_s']} |",
           "", f"Ratio of the medians: **{report['speedup_vs_fastchat']}×** (target ≥ {report['targets']['speedup_vs_fastchat']:.0f}×)."]
          if "fastchat" in report else ["", "FastChat's code was not run (no --fastchat checkout given)."]),
        "",
        "| step | seconds |",
        "|:---|---:|",
        f"| `qwenrl elo votes.jsonl --format json` (median wall, read + everything) | {cli['wall_s']} |",
        f"| read the JSON-lines file | {t['read_jsonl']} |",
        f"| encode votes | {t['encode']} |",
        f"| online Elo | {t['online_elo']} |",
        f"| Bradley–Terry (converged) | {t['bradley_terry']} |",
        f"| {report['bootstrap_rounds']}-round bootstrap intervals (with the BT fit) | {t['bootstrap_ci']} |",
        f"| sandwich intervals (with the BT fit) | {t['sandwich_ci']} |",
        f"| TrueSkill (closed-form update) | {t['trueskill']} |",
        f"| **table: online Elo + BT + bootstrap** | **{t['table_elo_bt_bootstrap']}** |",
        f"| full leaderboard (+ TrueSkill, counts), 1 worker | {t['leaderboard_workers_1']} |",
        f"| full leaderboard, 2 workers | {t['leaderboard_workers_2']} |",
        "",
        f"The C extensions (arena/_scan.c, arena/_loops.c) were {'used' if report['c_extensions'] else 'NOT built'}. "
        f"Without them (`QWENRL_PURE_PYTHON=1`, one run after the side-by-side ones) `qwenrl elo` took "
        f"{report['cli_pure_python']['wall_s']} s, {report['cli_pure_python']['peak_rss_mb']} MB peak.",
        f"`qwenrl elo` used {cli['cpu_s_all_processes']} s of CPU over its processes; peak memory "
        f"{cli['peak_rss_mb_largest_process']} MB (largest process).",
        f"TrueSkill through `trueskill.rate_1vs1`: {report['trueskill_package']['us_per_vote']} µs per vote, "
        f"so about {report['trueskill_package']['extrapolated_s_for_all_votes']} s for all votes "
        f"(measured on {report['trueskill_package']['sample_votes']:,}).",
        f"Bradley–Terry RMSE against the true strengths: {report['accuracy']['bt_rmse_vs_true_strengths']} Elo; "
        f"FastChat's stopping rule (100 L-BFGS iterations, gtol 1e-6) stops up to "
        f"{report['accuracy']['fastchat_stopping_rule_max_gap_elo']} Elo from the optimum.",
        "",
        "Targets: table ≤ {table_compute_s} s, CLI ≤ {cli_wall_s} s wall, memory < {peak_memory_mb} MB, "
        "≥ {speedup_vs_fastchat:.0f}× FastChat's wall time.".format(**report["targets"]),
        "Met: " + ", ".join(f"{k} {'yes' if v else 'NO'}" for k, v in report["met"].items()) + ".",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
