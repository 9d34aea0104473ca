"""The Training tab (admin): launch a GRPO or distillation job, watch and cancel jobs.

After the admin logs in (``AdminAuth``: wrong passwords count towards a lockout, as over REST),
the launcher lists the shipped configs of the chosen objective (GRPO) or design (distillation)
and their main fields; changed fields go to the job as ``--set`` overrides. ``JobManager.submit``
checks the config as its trainer will before queueing, so a bad field is refused here with the
trainer's message. The jobs panel refreshes on the studio's timer. Every event is private (not in
the Gradio API): only the admin launches jobs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd
import yaml

from .. import charts
from ..errors import ArenaError
from ..jobs import CONFIG_DIR, DISTILL_DESIGNS, OBJECTIVE_CHOICES, JobError, JobManager, config_design, config_objective, list_configs, resolve_config
from .common import PRIVATE, Loader, Studio, Tab, unchanged

JOB_HEADERS = ["id", "kind", "status", "config", "overrides", "created", "note"]


def config_fields(config: str | None, config_dir: Path = CONFIG_DIR) -> pd.DataFrame:
    """Top-level scalar fields of a config (the ones the launcher lets the admin edit)."""
    rows = []
    if config:
        try:
            data = yaml.safe_load(resolve_config(config, config_dir).read_text()) or {}
        except (OSError, yaml.YAMLError, JobError):
            data = {}
        for key, value in data.items() if isinstance(data, dict) else []:
            if isinstance(value, (str, int, float, bool)) or value is None:
                rows.append([str(key), "" if value is None else yaml.safe_dump(value).strip().removesuffix("\n...")])
    return pd.DataFrame(rows, columns=["field", "value"])


def changed_fields(config: str, table: Any, config_dir: Path = CONFIG_DIR) -> dict[str, str]:
    """The fields whose value the admin changed, as ``--set`` overrides."""
    original = {r[0]: r[1] for r in config_fields(config, config_dir).values.tolist()}
    frame = table if isinstance(table, pd.DataFrame) else pd.DataFrame(table, columns=["field", "value"])
    out = {}
    for key, value in frame.values.tolist():
        key, value = str(key).strip(), "" if value is None else str(value).strip()
        if key and original.get(key) != value:
            out[key] = value
    return out


def jobs_frame(jobs: JobManager) -> pd.DataFrame:
    rows = []
    for j in reversed(jobs.store.list_jobs()):
        spec = j["config"]
        rows.append([j["id"], j["kind"], j["status"], Path(spec.get("config", "")).name,
                     " ".join(f"{k}={v}" for k, v in (spec.get("overrides") or {}).items()),
                     time.strftime("%H:%M:%S", time.localtime(j["created"])), j.get("error") or ""])
    return pd.DataFrame(rows, columns=JOB_HEADERS)


@dataclass
class Login:
    """The password box and what it says about access."""

    admin: gr.State  #: True once this page logged in
    password: gr.Textbox
    button: gr.Button
    status: gr.Textbox


@dataclass
class Launcher:
    """Trainer, objective or design, config and its fields, and the launch."""

    panel: gr.Group  #: the admin's panel (launcher and jobs), shown after login
    kind: gr.Radio
    objective: gr.Radio
    design: gr.Radio
    config: gr.Dropdown
    fields: gr.Dataframe
    launch: gr.Button
    message: gr.Textbox

    def configs_for(self, jobs: JobManager, kind: str, objective: str, design: str) -> dict:
        """The objective choice (GRPO) or the design choice (distillation), and the config list and
        fields that go with it."""
        grpo = kind == "grpo"
        configs = list_configs(kind, jobs.config_dir, objective if grpo else None, None if grpo else design)
        return {self.objective: gr.Radio(value=objective, visible=grpo), self.design: gr.Radio(value=design, visible=not grpo),
                self.config: gr.Dropdown(choices=configs, value=configs[0] if configs else None),
                self.fields: config_fields(configs[0] if configs else None, jobs.config_dir)}


@dataclass
class JobsPanel:
    """The jobs table, the chosen job's status, log tail and curves, and the cancel button."""

    table: gr.Dataframe
    pick: gr.Dropdown
    cancel: gr.Button
    status: gr.Textbox
    log: gr.Textbox
    eval: gr.Plot
    curve: gr.Plot

    @property
    def outputs(self) -> list:
        return [self.table, self.pick, self.status, self.log, self.eval, self.curve]

    def updates(self, jobs: JobManager, selected: Any) -> dict:
        """The jobs, newest first; the chosen one (else the newest) with its progress, log and curves
        (the metrics of any run, old names included, read through ``qwenrl.metrics``)."""
        frame = jobs_frame(jobs)
        ids = [str(i) for i in frame["id"].tolist()]
        selected = str(selected) if selected is not None and str(selected) in ids else (ids[0] if ids else None)
        out = {self.table: frame, self.pick: gr.Dropdown(choices=ids, value=selected)}
        if selected is not None:
            p = jobs.progress(selected)
            step = "—" if p["step"] is None else p["step"]
            out[self.status] = f"job {selected}: {p['status']} · step {step}/{p['total_steps'] or '?'}"
            out[self.log] = jobs.log_tail(selected, 40)
            rows = jobs.metrics(selected)
            out[self.eval] = charts.eval_figure(rows)
            out[self.curve] = charts.metrics_figure(rows)
        return out


def access_text(studio: Studio) -> str:
    """Said at once when nobody can log in, rather than after a password is tried."""
    if studio.jobs is None:
        return "This studio runs no training jobs."
    if not studio.auth.enabled:
        return "Admin is disabled: start the studio with --admin-password (or QWENRL_ADMIN_PASSWORD) to launch jobs."
    return "Training is for the admin: log in to launch or cancel jobs."


def layout(studio: Studio) -> tuple[Login, Launcher, JobsPanel]:
    can_log_in = studio.jobs is not None and studio.auth.enabled
    with gr.Row():
        password = gr.Textbox(label="Admin password", type="password", elem_id="admin-password", scale=3,
                              interactive=can_log_in)
        button = gr.Button("Log in", elem_id="admin-login", scale=1, interactive=can_log_in)
    login = Login(gr.State(False), password, button,
                  gr.Textbox(label="Access", interactive=False, elem_id="admin-status", value=access_text(studio)))
    with gr.Group(visible=False) as panel:
        with gr.Row():
            kind = gr.Radio(["grpo", "distill"], value="grpo", label="Trainer", elem_id="job-kind")
            objective = gr.Radio([(label, name) for name, label in OBJECTIVE_CHOICES.items()], value="nft", label="Objective (GRPO)",
                                 elem_id="job-objective")
            design = gr.Radio([(label, name) for name, label in DISTILL_DESIGNS.items()], value="absorb",
                              label="Design (distillation)", elem_id="job-design", visible=False)
            config = gr.Dropdown([], label="Config", elem_id="job-config")
        fields = gr.Dataframe(headers=["field", "value"], interactive=True, elem_id="job-fields",
                              label="Main fields (edit values; changed ones are passed as --set)")
        launch = gr.Button("Launch", variant="primary", elem_id="job-launch")
        message = gr.Textbox(label="Launch", interactive=False, elem_id="job-launch-msg")
        table = gr.Dataframe(headers=JOB_HEADERS, interactive=False, elem_id="jobs-table", label="Jobs")
        with gr.Row():
            pick = gr.Dropdown([], label="Job", elem_id="job-pick")
            cancel = gr.Button("Cancel job", variant="stop", elem_id="job-cancel")
        status = gr.Textbox(label="Status and progress", interactive=False, elem_id="job-status")
        log = gr.Textbox(label="Log (tail)", interactive=False, lines=12, elem_id="job-log", autoscroll=True)
        with gr.Row():
            eval_plot = gr.Plot(label="Held-out accuracy", elem_id="job-eval")
            curve = gr.Plot(label="Reward curves")
    launcher = Launcher(panel, kind, objective, design, config, fields, launch, message)
    return login, launcher, JobsPanel(table, pick, cancel, status, log, eval_plot, curve)


def build(studio: Studio) -> Tab:
    """The tab and its events; the jobs panel refreshes on the studio's timer."""
    login, launcher, panel = layout(studio)
    L = launcher

    def do_login(secret: str, request: gr.Request) -> dict:
        if studio.jobs is None:
            return {login.status: "This studio runs no training jobs."}
        if not studio.auth.enabled:
            return {login.status: "Admin is disabled: start the studio with --admin-password (or QWENRL_ADMIN_PASSWORD)."}
        refused = {login.admin: False, login.password: "", L.panel: gr.Group(visible=False)}
        try:  # wrong passwords count against this client, as over REST
            ok = studio.auth.verify(secret, request.client.host if request is not None and request.client else None)
        except ArenaError as exc:
            return {**refused, login.status: f"Refused: {exc}"}
        if not ok:
            return {**refused, login.status: "Wrong password."}
        every = list_configs("grpo", studio.jobs.config_dir)
        first = config_objective(every[0]) if every else "nft"  # the objective of the first (default) config
        shipped = list_configs("distill", studio.jobs.config_dir)
        first_design = config_design(shipped[0]) if shipped else "absorb"  # the design of the shipped distillation config
        return {login.admin: True, login.password: "", login.status: "Logged in as admin.", L.panel: gr.Group(visible=True),
                L.kind: "grpo", **L.configs_for(studio.jobs, "grpo", first, first_design)}

    def kind_changed(is_admin: bool, kind: str, objective: str, design: str) -> dict:
        if not is_admin:
            return unchanged([L.objective, L.design, L.config, L.fields])
        return L.configs_for(studio.jobs, kind, objective, design)

    def variant_changed(is_admin: bool, kind: str, objective: str, design: str) -> dict:
        if not is_admin:
            return unchanged([L.config, L.fields])
        update = L.configs_for(studio.jobs, kind, objective, design)
        return {L.config: update[L.config], L.fields: update[L.fields]}

    def config_changed(is_admin: bool, config: str | None) -> dict:
        if not is_admin or studio.jobs is None:
            return unchanged([L.fields])
        return {L.fields: config_fields(config, studio.jobs.config_dir)}

    def do_launch(is_admin: bool, kind: str, config: str | None, table: Any) -> dict:
        if not is_admin or studio.jobs is None:
            return {L.message: "Refused: only the admin can launch jobs."}
        if not config:
            return {L.message: f"No {kind} config for this choice under training/configs/."}
        try:
            job_id = studio.jobs.submit(kind, config, changed_fields(config, table, studio.jobs.config_dir))
        except JobError as exc:
            return {L.message: f"Refused: {exc}"}
        return {L.message: f"Queued job {job_id}.", **refresh_jobs(True, job_id)}

    def refresh_jobs(is_admin: bool, selected: Any) -> dict:
        if not is_admin or studio.jobs is None:
            return unchanged(panel.outputs)
        return panel.updates(studio.jobs, selected)

    def do_cancel(is_admin: bool, selected: Any) -> dict:
        if not is_admin or studio.jobs is None:
            return {L.message: "Refused: only the admin can cancel jobs."}
        if selected is None:
            return {L.message: "No job chosen."}
        try:
            job = studio.jobs.cancel(selected)
        except JobError as exc:
            return {L.message: f"Refused: {exc}"}
        return {L.message: f"Job {job['id']}: {job['status']} (cancel requested)", **refresh_jobs(True, selected)}

    choice = [login.admin, L.kind, L.objective, L.design]
    login_outputs = [login.admin, login.password, login.status, L.panel, L.kind, L.objective, L.design, L.config, L.fields]
    login.button.click(do_login, [login.password], login_outputs, **PRIVATE)
    login.password.submit(do_login, [login.password], login_outputs, **PRIVATE)
    L.kind.change(kind_changed, choice, [L.objective, L.design, L.config, L.fields], **PRIVATE)
    L.objective.change(variant_changed, choice, [L.config, L.fields], **PRIVATE)
    L.design.change(variant_changed, choice, [L.config, L.fields], **PRIVATE)
    L.config.change(config_changed, [login.admin, L.config], [L.fields], **PRIVATE)
    L.launch.click(do_launch, [login.admin, L.kind, L.config, L.fields], [L.message, *panel.outputs], **PRIVATE)
    panel.cancel.click(do_cancel, [login.admin, panel.pick], [L.message, *panel.outputs], **PRIVATE)
    panel.pick.change(refresh_jobs, [login.admin, panel.pick], panel.outputs, **PRIVATE)
    return Tab(on_tick=[Loader(refresh_jobs, [login.admin, panel.pick], panel.outputs)])
