"""Shared pieces of the studio tests: tiny random checkpoints, a filled workspace, a studio process.

Imported by the ``test_app_*`` modules (fixtures are imported by name). Nothing here depends
on ``data/models``: every model is a tiny random ``ShapesPolicy`` written to a tmp folder.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[1]
TINY = {
    "vae": {"block_out_channels": [16, 16, 16]},
    "text": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1},
    "transformer": {"num_layers": 1, "attention_head_dim": 8, "num_attention_heads": 2},
}
POOL_SIZE = 4  # arena prompts per task in test workspaces
GALLERY_STEPS = 3


def make_tiny_models(root: Path, names: list[str]) -> Path:
    """Tiny random Shapes checkpoints (t2i and edit) named ``names`` under ``root``."""
    import torch

    from qwenrl.models.shapes import ShapesPolicy

    root.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        torch.manual_seed(i)
        ShapesPolicy(TINY).save(root / name, name=name, parent=None, lineage=[name], tasks=["t2i", "edit"])
    return root


def save_run_checkpoint(run_dir: Path, step: int, parent: str = "tiny-a", name: str = "grpo-t2i") -> Path:
    """A checkpoint as a GRPO run writes it: ``RUN/checkpoints/step-00000N`` named ``name@stepN``."""
    import torch

    from qwenrl.models.shapes import ShapesPolicy

    torch.manual_seed(100 + step)
    full = f"{name}@step{step}"
    return ShapesPolicy(TINY).save(run_dir / "checkpoints" / f"step-{step:06d}", name=full, parent=parent,
                                   lineage=[parent, full], task="t2i", step=step, trainer="grpo")


def open_filled_workspace(root: Path, models_dir: Path):
    """A workspace whose gallery is filled in this process (no subprocess)."""
    from app.gallery import fill_model
    from app.workspace import Workspace

    ws = Workspace.open(root, models_dir=models_dir, pool_size=POOL_SIZE, num_steps=GALLERY_STEPS)
    for name in ws.pending_gallery_models():
        fill_model(ws, name, log=lambda msg: None)
    return ws


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class StudioProcess:
    """``qwenrl studio`` in a subprocess (own process group) on a free loopback port."""

    def __init__(self, workspace: Path, models_dir: Path, *, password: str = "admin-secret",
                 configs_dir: Path | None = None, extra: list[str] | None = None, log: Path | None = None,
                 pool_size: int = POOL_SIZE, gallery_steps: int = GALLERY_STEPS):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.password = password
        self.workspace = workspace
        cmd = [sys.executable, "-m", "qwenrl", "studio", "--workspace", str(workspace), "--port", str(self.port),
               "--models-dir", str(models_dir), "--pool-size", str(pool_size), "--gallery-steps", str(gallery_steps)]
        if configs_dir is not None:
            cmd += ["--configs-dir", str(configs_dir)]
        # a browser test votes at machine speed: no vote is flagged fast unless a test asks for it
        extra = list(extra or [])
        if "--min-vote-seconds" not in extra:
            extra += ["--min-vote-seconds", "0"]
        cmd += extra
        env = {**os.environ, "QWENRL_ADMIN_PASSWORD": password, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
        self.log_path = log or workspace.parent / f"studio-{self.port}.log"
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=self._log, stderr=subprocess.STDOUT,
                                     start_new_session=True)

    def wait_ready(self, timeout: float = 180.0, min_models: int = 2) -> dict:
        """Wait until both arenas have ``min_models`` models with gallery images."""
        deadline = time.time() + timeout
        last = None
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"studio exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                last = httpx.get(f"{self.url}/api/v1/health", timeout=5).json()
                if all(n >= min_models for n in last["models"].values()):
                    return last
            except (httpx.HTTPError, ValueError):
                pass
            time.sleep(0.5)
        raise TimeoutError(f"studio not ready after {timeout}s (last health {last}):\n{self.log_tail()}")

    def log_tail(self, n: int = 4000) -> str:
        if not self._log.closed:
            self._log.flush()
        text = self.log_path.read_text(errors="replace")[-n:]
        gallery = self.workspace / "logs" / "gallery.log"
        if gallery.exists():
            text += "\n--- gallery.log ---\n" + gallery.read_text(errors="replace")[-n:]
        return text

    def signal(self, signum: int, timeout: float = 60.0) -> int:
        """Send ``signum`` to the studio process alone (as a service manager or Ctrl-C would
        reach it, not its whole group) and wait for it to exit; returns the exit code."""
        os.kill(self.proc.pid, signum)
        code = self.proc.wait(timeout)
        self._log.close()
        return code

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        if not self._log.closed:
            self._log.close()


def worker_processes(workspace: Path) -> list[tuple[int, str]]:
    """(pid, command line) of every worker of a studio on ``workspace`` (``python -m app.gallery``,
    ``app.live``, ``training.…`` jobs), found in /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        if str(workspace) in cmdline and (" -m app." in cmdline or " -m training." in cmdline):
            found.append((int(entry.name), cmdline))
    return found


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory) -> Path:
    return make_tiny_models(tmp_path_factory.mktemp("models"), ["tiny-a", "tiny-b", "tiny-c"])


@pytest.fixture(scope="module")
def filled_workspace(tmp_path_factory, tiny_models):
    ws = open_filled_workspace(tmp_path_factory.mktemp("ws") / "workspace", tiny_models)
    yield ws
    ws.close()
