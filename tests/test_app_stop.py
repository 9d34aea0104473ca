"""A clean stop: SIGTERM or Ctrl-C to ``qwenrl studio`` stops its workers (gallery filler, live
sampler), and the next start resumes the gallery where it was."""

from __future__ import annotations

import json
import re
import shutil
import signal
import time

import httpx
import pytest

from arena.store import ArenaStore
from tests.studio_support import StudioProcess, open_filled_workspace, tiny_models, worker_processes  # noqa: F401

pytestmark = pytest.mark.timeout(600)

POOL = 48
SLOW_STEPS = 200  # the third model's gallery takes a while: the stop lands in the middle of it


def samples_of(workspace, model: str) -> dict[tuple, tuple]:
    """The model's gallery images (not the live battle's, which are no part of the gallery build)."""
    with ArenaStore(workspace / "arena.db") as store:
        return {(s["prompt_id"], s["seed"]): (s["id"], s["image_path"], s["content_hash"], s["created"])
                for s in store.list_samples(model=model) if s["image_path"].startswith("gallery/")}


def wait_for(check, timeout: float, what: str, studio: StudioProcess):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = check()
        if value:
            return value
        if studio.proc.poll() is not None:
            raise AssertionError(f"the studio exited while waiting for {what}:\n{studio.log_tail()}")
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}:\n{studio.log_tail()}")


def no_workers_left(workspace, timeout: float = 20.0) -> list:
    deadline = time.time() + timeout
    while (left := worker_processes(workspace)) and time.time() < deadline:
        time.sleep(0.2)
    return left


def test_sigterm_during_a_gallery_build_leaves_no_worker_and_a_restart_resumes(tmp_path, tiny_models):
    models = tmp_path / "models"
    for name in ("tiny-a", "tiny-b"):
        shutil.copytree(tiny_models / name, models / name)
    workspace = tmp_path / "workspace"
    open_filled_workspace(workspace, models).close()  # two models ready: live battles can run at once
    # …the workspace of the tests uses a smaller pool: widen it and fill those two again, quickly
    from app.gallery import fill_model
    from app.workspace import Workspace

    ws = Workspace.open(workspace, pool_size=POOL, num_steps=2)
    for name in ws.pending_gallery_models():
        fill_model(ws, name, log=lambda msg: None)
    ws.close()
    shutil.copytree(tiny_models / "tiny-c", models / "tiny-c")  # the model whose gallery is being built
    settings = workspace / "settings.json"
    settings.write_text(json.dumps({**json.loads(settings.read_text()), "batch_size": 2}))

    studio = StudioProcess(workspace, models, pool_size=POOL, gallery_steps=SLOW_STEPS)
    try:
        studio.wait_ready(min_models=2)
        wait_for(lambda: any("app.gallery" in cmd for _, cmd in worker_processes(workspace)), 60,
                 "the gallery filler", studio)
        wait_for(lambda: samples_of(workspace, "tiny-c"), 120, "the first images of tiny-c", studio)
        live = httpx.post(f"{studio.url}/api/v1/battle/live", json={"prompt": "a red circle"}, timeout=120)
        assert live.status_code == 200, live.text
        running = {cmd.split(" -m ")[1].split()[0] for _, cmd in worker_processes(workspace)}
        assert running == {"app.gallery", "app.live"}, running
        assert studio.signal(signal.SIGTERM) == 128 + signal.SIGTERM
    finally:
        studio.stop()
    assert no_workers_left(workspace) == [], "a worker outlived the studio"
    before = samples_of(workspace, "tiny-c")
    total = 2 * 2 * POOL  # both tasks; an arena image and a showcase image (the inspector's) per prompt
    assert 0 < len(before) < total, "the gallery was not in the middle of its build when the studio stopped"

    # a new studio resumes the build where it stopped: what was stored stays, the rest is added
    remaining = total - len(before)
    gallery_log = workspace / "logs" / "gallery.log"
    resumed = re.compile(rf"gallery tiny-c: \d+/{remaining} images")  # the new filler counts what remained
    again = StudioProcess(workspace, models, pool_size=POOL, gallery_steps=SLOW_STEPS)
    try:
        wait_for(lambda: resumed.search(gallery_log.read_text()), 120, "the gallery to resume", again)
        now = samples_of(workspace, "tiny-c")
        assert len(now) > len(before)
        assert {key: now[key] for key in before} == before  # no image made twice
        assert len(now) < total, "the build finished before Ctrl-C could interrupt it"
        again.signal(signal.SIGINT)  # Ctrl-C stops the workers too
    finally:
        again.stop()
    assert no_workers_left(workspace) == [], "a worker outlived the studio"
    for run in (studio, again):
        assert "stopping the studio's workers" in run.log_path.read_text()
