"""Assembling the studio: workspace, services, background threads, REST API and Gradio UI.

    runtime = StudioRuntime.open("./workspace", admin_password="...")
    runtime.start()                     # checkpoint watcher, gallery filler, job scheduler
    uvicorn.run(runtime.app, host="127.0.0.1", port=7860)
    runtime.stop()

One process serves everything (the arena's rate limits and caches live in it); the heavy work
(gallery sampling, training) runs in subprocesses, so this process never imports torch.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr
from fastapi import FastAPI

from arena.boards import MIN_VOTES

from .api import create_api
from .jobs import CONFIG_DIR, JobManager, JobQueue
from .limits import BURST_VOTERS, NEW_VOTERS, VoterLimits
from .live import LiveGenerator
from .auth import AdminAuth
from .service import ArenaService
from .studio import CSS, KEYS_JS, Studio, build_studio
from .workspace import SEED_VOTES, CheckpointWatcher, GalleryRunner, Workspace

ADMIN_ENV = "QWENRL_ADMIN_PASSWORD"


@dataclass
class StudioRuntime:
    workspace: Workspace
    service: ArenaService
    jobs: JobManager
    watcher: CheckpointWatcher
    auth: AdminAuth
    app: FastAPI

    @classmethod
    def open(
        cls,
        root: str | Path,
        *,
        admin_password: str | None = None,
        models_dir: str | Path | None = None,
        max_concurrent: int | None = None,
        watch_interval_s: float = 2.0,
        rate: float = 20.0,
        burst: float = 40.0,
        min_votes: int = MIN_VOTES,
        reveal_scores: bool = True,
        new_voters: int = NEW_VOTERS,
        burst_voters: int = BURST_VOTERS,
        ui_refresh_s: float = 2.0,
        workspace_settings: dict[str, Any] | None = None,
        trainers: dict[str, str] | None = None,
        configs_dir: str | Path | None = None,
        live_prompts: bool = True,
        seed_votes: str | Path | None = SEED_VOTES,
        min_vote_s: float = 1.0,
        battle_size: int = 4,
        personal_votes: int = 30,
        category_min_votes: int = 20,
        log=print,
    ) -> "StudioRuntime":
        """``seed_votes``: a file of automatic votes to import (between the models this
        workspace has; again whenever a model joins); None imports none. The bundled file may
        be absent (a trimmed install): then nothing is imported."""
        ws = Workspace.open(root, models_dir=models_dir, **(workspace_settings or {}))
        ws.clear_gallery_failures()  # a restart retries models whose gallery failed
        on_new = None
        if seed_votes is not None and Path(seed_votes).is_file():
            log(ws.import_seed_votes(seed_votes).summary())

            def on_new(names: list[str]) -> None:  # a model the bundled votes name may have joined
                done = ws.import_seed_votes(seed_votes)
                if done.imported:
                    log(done.summary())
        elif seed_votes is not None and Path(seed_votes) != SEED_VOTES:
            raise FileNotFoundError(f"no vote file {seed_votes}")
        live = LiveGenerator(ws.root) if live_prompts else None
        limits = VoterLimits(new_voters=new_voters, burst_voters=burst_voters, known=ws.store.voter_seen)
        service = ArenaService(ws, rate=rate, burst=burst, live=live, min_votes=min_votes, reveal_scores=reveal_scores,
                               limits=limits,
                               min_vote_s=min_vote_s,
                               kway=battle_size, personal_votes=personal_votes, category_min_votes=category_min_votes)
        jobs = JobManager(JobQueue(ws.store), ws.runs_dir, max_concurrent=max_concurrent, trainers=trainers,
                          config_dir=Path(configs_dir).resolve() if configs_dir else CONFIG_DIR,
                          path_roots=[ws.models_dir])
        jobs.recover()
        watcher = CheckpointWatcher(ws, GalleryRunner(ws), interval_s=watch_interval_s, on_new=on_new)
        auth = AdminAuth(admin_password if admin_password is not None else os.environ.get(ADMIN_ENV))
        api = create_api(service, jobs, auth)
        blocks = build_studio(Studio(service, jobs, auth), refresh_s=ui_refresh_s)
        blocks.queue(default_concurrency_limit=16)
        app = gr.mount_gradio_app(api, blocks, path="/", css=CSS, head=KEYS_JS, theme=gr.themes.Soft(),
                                  footer_links=["api"], run_history=False, ssr_mode=False)
        return cls(ws, service, jobs, watcher, auth, app)

    def start(self) -> None:
        self.watcher.tick()  # register and start filling before the first page is served
        self.watcher.start()
        self.jobs.start()
        self.service.start()

    def stop(self) -> None:
        """Stop the workers (live sampler, gallery filler, training jobs), then the store; each
        step runs even if one before it failed."""
        steps = [self.service.stop, self.watcher.stop, lambda: self.jobs.shutdown(cancel_running=True),
                 self.workspace.close]
        if self.service.live is not None:
            steps.insert(1, self.service.live.close)
        errors = []
        for step in steps:
            try:
                step()
            except Exception as exc:  # noqa: BLE001 - the next worker must still be stopped
                errors.append(exc)
        if errors:
            raise errors[0]
