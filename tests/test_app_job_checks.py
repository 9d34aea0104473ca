"""Job configs and their overrides checked before they are queued, over REST (issue 20's cases 3 and 4):
the trainer's own config classes and messages, path fields inside the repository's model and config
folders, NUL bytes refused with a 400, and no refusal naming an absolute server path."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from app.api import create_api
from app.jobs import REPO_ROOT, JobManager, JobQueue
from app.auth import AdminAuth
from app.service import ArenaService
from app.workspace import Workspace

PASSWORD = "job-checks"
ADMIN = {"Authorization": f"Bearer {PASSWORD}"}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("jobs-ws")
    (root / "no-models").mkdir()
    ws = Workspace.open(root / "workspace", models_dir=root / "no-models", pool_size=2)
    jobs = JobManager(JobQueue(ws.store), ws.runs_dir, max_concurrent=1)  # the real trainers and configs; never started
    client = TestClient(create_api(ArenaService(ws), jobs, AdminAuth(PASSWORD)))
    yield client, jobs
    ws.close()


def launch(client, config="shapes_grpo_t2i.yaml", kind="grpo", **overrides):
    return client.post("/api/v1/jobs", json={"kind": kind, "config": config, "overrides": overrides}, headers=ADMIN)


@pytest.mark.parametrize("overrides, message", [
    ({"nonexistent_field": 1}, "unknown GRPOConfig key(s) ['nonexistent_field']"),
    ({"steps": "lots"}, "steps must be an integer, got 'lots'"),
    ({"steps": -5}, "steps must be >= 0"),
    ({"model": "/etc"}, "model '/etc' is outside the folders a studio job may read"),
    ({"reward": "../../etc/passwd"}, "reward '../../etc/passwd' is outside the folders a studio job may read"),
    ({"group_size": 1}, "group_size is 1: GRPO compares samples of one prompt"),
    ({"model": "data/models/no-such-model"}, "model 'data/models/no-such-model' not found"),
    ({"distill_teachers.t2i": "/tmp"}, "distill_teachers.t2i '/tmp' is outside"),
])
def test_bad_overrides_are_refused_before_queueing(setup, overrides, message):
    """These were all "queued" (201) and failed later with "exit code 2"; ../../etc/passwd was read."""
    client, jobs = setup
    r = launch(client, **overrides)
    assert r.status_code == 400, r.text
    assert message in r.json()["detail"]
    assert str(REPO_ROOT) not in r.text and "/tmp/" not in r.text.replace("'/tmp'", "")
    assert jobs.store.list_jobs() == []


def test_distillation_overrides_are_checked_by_its_own_config(setup):
    client, jobs = setup
    r = launch(client, "shapes_distill.yaml", kind="distill", batch_size=0)
    assert r.status_code == 400 and "batch_size must be at least 1" in r.json()["detail"]
    r = launch(client, "shapes_distill.yaml", kind="distill", **{"teachers.t2i": "../../../etc"})
    assert r.status_code == 400 and "teachers.t2i" in r.json()["detail"] and "outside" in r.json()["detail"]
    assert jobs.store.list_jobs() == []


def test_a_good_job_is_queued(setup):
    client, jobs = setup
    r = launch(client, steps=3, lr=1e-4)
    assert r.status_code == 201, r.text
    assert r.json()["status"] == "queued" and r.json()["overrides"] == {"steps": "3", "lr": "0.0001"}
    jobs.cancel(r.json()["id"])


def test_nul_bytes_and_path_tricks_get_a_400(setup):
    """{"config": "shapes_grpo_t2i.yaml\\u0000.txt"} used to give a 500 (ValueError: embedded null byte)."""
    client, jobs = setup
    for config in ("shapes_grpo_t2i.yaml\u0000.txt", "shapes_grpo_t2i.yaml\n", "../../etc/passwd", "/etc/passwd",
                   "..\u0000/x.yaml"):
        r = launch(client, config)
        assert r.status_code == 400, (config, r.status_code, r.text)
        assert str(REPO_ROOT) not in r.text
    for value in ("1\u0000", "a\rb"):
        r = launch(client, steps=value)
        assert r.status_code == 400 and "printable" in r.json()["detail"]
    assert jobs.store.list_jobs() == [] or all(j["status"] == "cancelled" for j in jobs.store.list_jobs())


def test_a_config_outside_names_no_server_folder(setup):
    """"A config outside training/configs gets a 400 that names the server's absolute folder"."""
    client, _ = setup
    r = launch(client, "/etc/hosts.yaml")
    assert r.status_code == 400
    assert r.json()["detail"] == "config '/etc/hosts.yaml' is not one of the YAML files in training/configs"
    assert str(REPO_ROOT) not in r.text
