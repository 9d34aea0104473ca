"""A stand-in trainer for the job tests: ``python -m tests.fake_trainer --config C --run R --set k=v``.

Reads ``steps``, ``sleep`` (seconds per step), ``exit_code`` and ``spawn_child`` from the
YAML config and the overrides, writes ``metrics.jsonl`` like the real trainers, and with
``spawn_child`` starts a grandchild that writes its pid to ``RUN/child.pid`` (to check that a
cancel stops the whole process group).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import yaml


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", required=True)
    ap.add_argument("--run", required=True)
    ap.add_argument("--set", action="append", default=[])
    args = ap.parse_args()
    cfg = yaml.safe_load(Path(args.config).read_text()) or {}
    for item in args.set:
        key, _, value = item.partition("=")
        cfg[key] = yaml.safe_load(value)
    run = Path(args.run)
    run.mkdir(parents=True, exist_ok=True)
    (run / "seen_config.json").write_text(json.dumps(cfg))
    if cfg.get("spawn_child"):
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
        (run / "child.pid").write_text(str(child.pid))
    for step in range(1, int(cfg.get("steps", 1)) + 1):
        time.sleep(float(cfg.get("sleep", 0.0)))
        with open(run / "metrics.jsonl", "a") as fh:
            fh.write(json.dumps({"step": step, "reward/mean": step / 10}) + "\n")
        print(f"step {step}", flush=True)
    return int(cfg.get("exit_code", 0))


if __name__ == "__main__":
    sys.exit(main())
