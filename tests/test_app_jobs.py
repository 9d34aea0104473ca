"""Background training jobs: subprocess per job, own process group, queue, cancel, lost jobs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from app.jobs import JobError, JobManager, JobQueue, check_overrides, resolve_config
from arena.store import ArenaStore, StoreError

FAKE = {"grpo": "tests.fake_trainer", "distill": "tests.fake_trainer"}


@pytest.fixture
def setup(tmp_path):
    configs = tmp_path / "configs"
    configs.mkdir()
    (configs / "fake_grpo.yaml").write_text("steps: 3\nsleep: 0.05\n")
    (configs / "fake_distill.yaml").write_text("steps: 2\n")
    arena_store = ArenaStore(tmp_path / "arena.db")
    yield JobQueue(arena_store), configs, tmp_path / "runs"
    arena_store.close()


def test_job_queue(tmp_path):
    """The job table, moved from arena/store.py: same records, same refusals."""
    store = JobQueue(ArenaStore(tmp_path / "arena.db"))
    job = store.create_job("grpo", {"config": "t2i.yaml", "steps": 10}, run_dir="runs/grpo-1")
    assert store.get_job(job)["status"] == "queued" and store.get_job(job)["config"]["steps"] == 10
    store.update_job(job, status="running", pid=4242, started=1.0)
    assert [j["id"] for j in store.list_jobs(status="running")] == [job]
    assert store.update_job(job, status="done", finished=2.0)["finished"] == 2.0
    with pytest.raises(StoreError, match="status must be one of"):
        store.update_job(job, status="exploded")
    with pytest.raises(StoreError, match="no field colour"):
        store.update_job(job, colour="red")
    with pytest.raises(StoreError, match="unknown job"):
        store.update_job(999, status="done")


def wait_for(predicate, timeout=30.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def manager(store, configs, runs, **kw) -> JobManager:
    return JobManager(store, runs, trainers=FAKE, config_dir=configs, poll_s=0.05, **kw)


def test_job_runs_to_done_with_log_and_metrics(setup):
    store, configs, runs = setup
    jobs = manager(store, configs, runs, max_concurrent=1)
    job_id = jobs.submit("grpo", "fake_grpo.yaml", {"steps": 4})
    assert store.get_job(job_id)["status"] == "queued"
    jobs.start()
    try:
        wait_for(lambda: store.get_job(job_id)["status"] == "done")
    finally:
        jobs.shutdown()
    job = store.get_job(job_id)
    assert Path(job["run_dir"]) == runs / f"grpo-{job_id:04d}"
    assert json.loads((Path(job["run_dir"]) / "seen_config.json").read_text())["steps"] == 4
    assert "step 4" in jobs.log_tail(job_id)
    assert [r["step"] for r in jobs.metrics(job_id)] == [1, 2, 3, 4]
    progress = jobs.progress(job_id)
    assert progress["step"] == 4 and progress["total_steps"] == 4 and progress["fraction"] == 1.0


def test_failed_exit_code(setup):
    store, configs, runs = setup
    jobs = manager(store, configs, runs)
    job_id = jobs.submit("distill", "fake_distill.yaml", {"exit_code": 3})
    jobs.start()
    try:
        wait_for(lambda: store.get_job(job_id)["status"] == "failed")
    finally:
        jobs.shutdown()
    assert "exit code 3" in store.get_job(job_id)["error"]


def test_queue_runs_at_most_max_concurrent(setup):
    store, configs, runs = setup
    jobs = manager(store, configs, runs, max_concurrent=1)
    first = jobs.submit("grpo", "fake_grpo.yaml", {"steps": 20, "sleep": 0.1})
    second = jobs.submit("grpo", "fake_grpo.yaml", {"steps": 1})
    jobs.start()
    try:
        wait_for(lambda: store.get_job(first)["status"] == "running")
        time.sleep(0.5)
        assert store.get_job(second)["status"] == "queued"
        jobs.cancel(first)
        wait_for(lambda: store.get_job(second)["status"] == "done")
    finally:
        jobs.shutdown()
    assert store.get_job(first)["status"] == "cancelled"


def test_cancel_stops_the_whole_process_group(setup):
    store, configs, runs = setup
    jobs = manager(store, configs, runs, kill_grace_s=2.0)
    job_id = jobs.submit("grpo", "fake_grpo.yaml", {"steps": 1000, "sleep": 0.1, "spawn_child": True})
    jobs.start()
    try:
        child_file = Path(store.get_job(job_id)["run_dir"]) / "child.pid"
        wait_for(lambda: child_file.exists() and child_file.read_text())
        child = int(child_file.read_text())
        job = jobs.cancel(job_id)
        assert job["status"] == "running"  # until the process is gone
        wait_for(lambda: store.get_job(job_id)["status"] == "cancelled")
        wait_for(lambda: not _alive(child), timeout=10)
    finally:
        jobs.shutdown()
    # a queued job is cancelled at once; cancelling twice is harmless
    queued = jobs.submit("grpo", "fake_grpo.yaml")
    assert jobs.cancel(queued)["status"] == "cancelled"
    assert jobs.cancel(queued)["status"] == "cancelled"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] == "Z")


def test_recover_marks_vanished_jobs_lost_and_adopts_live_ones(setup):
    store, configs, runs = setup
    gone = store.create_job("grpo", {"config": "x"}, run_dir=str(runs / "grpo-gone"))
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    store.update_job(gone, status="running", pid=proc.pid, started=time.time())
    # a live process whose command line names its run folder is still that job
    run_dir = str(runs / "grpo-live")
    live_proc = subprocess.Popen([sys.executable, "-c", "import time, sys; time.sleep(60)", run_dir],
                                 start_new_session=True)
    live = store.create_job("grpo", {"config": "x"}, run_dir=run_dir)
    store.update_job(live, status="running", pid=live_proc.pid, started=time.time())
    # a live pid that runs something else (a reused pid) is not the job
    reused = store.create_job("grpo", {"config": "x"}, run_dir=str(runs / "grpo-reused"))
    store.update_job(reused, status="running", pid=os.getpid(), started=time.time())
    try:
        jobs = manager(store, configs, runs)
        assert sorted(jobs.recover()) == sorted([gone, reused])
        assert store.get_job(gone)["status"] == "lost" and store.get_job(live)["status"] == "running"
        jobs.cancel(live)
        jobs.tick()
        wait_for(lambda: (jobs.tick(), store.get_job(live)["status"] == "cancelled")[1], timeout=10)
    finally:
        if live_proc.poll() is None:
            live_proc.kill()
        live_proc.wait()
    assert not [j for j in store.list_jobs("running")]


def test_requests_that_would_become_paths_or_flags_are_refused(setup, tmp_path):
    store, configs, runs = setup
    jobs = manager(store, configs, runs)
    outside = tmp_path / "outside_grpo.yaml"
    outside.write_text("steps: 1\n")
    for bad in (str(outside), "../outside_grpo.yaml", "fake_grpo.yml", "/etc/passwd", "missing.yaml"):
        with pytest.raises(JobError):
            jobs.submit("grpo", bad)
    with pytest.raises(JobError):
        jobs.submit("pretrain", "fake_grpo.yaml")
    for overrides in ({"--run": "x"}, {"a b": "1"}, {"lr": "1\n--set x=1"}):
        with pytest.raises(JobError):
            check_overrides(overrides)
    assert resolve_config("fake_grpo.yaml", configs) == configs / "fake_grpo.yaml"
    with pytest.raises(JobError):
        jobs.cancel("1; rm -rf /")
    assert store.list_jobs() == []


def test_configs_are_listed_by_objective(tmp_path):
    from app.jobs import config_objective, list_configs

    (tmp_path / "a_grpo.yaml").write_text("objective: nft\nsteps: 1\n")
    (tmp_path / "b_grpo.yaml").write_text("steps: 1\n")  # no objective: the trainer's default, Flow-GRPO
    (tmp_path / "c_grpo.yaml").write_text("objective: [not, a, name]\n")
    (tmp_path / "d_grpo.yaml").write_text(": not yaml : [\n")
    (tmp_path / "shapes_grpo.yaml").write_text("objective: flow_grpo\n")
    (tmp_path / "x_distill.yaml").write_text("steps: 1\n")
    names = lambda paths: [Path(p).name for p in paths]  # noqa: E731
    assert names(list_configs("grpo", tmp_path)) == ["shapes_grpo.yaml", "a_grpo.yaml", "b_grpo.yaml", "c_grpo.yaml", "d_grpo.yaml"]
    assert names(list_configs("grpo", tmp_path, "nft")) == ["a_grpo.yaml"]
    assert names(list_configs("grpo", tmp_path, "flow_grpo")) == ["shapes_grpo.yaml", "b_grpo.yaml", "c_grpo.yaml", "d_grpo.yaml"]
    assert names(list_configs("distill", tmp_path, "nft")) == ["x_distill.yaml"]  # distillation has no objective
    assert config_objective(tmp_path / "a_grpo.yaml") == "nft" and config_objective(tmp_path / "d_grpo.yaml") == "flow_grpo"
    with pytest.raises(JobError, match="unknown objective 'ppo'"):
        list_configs("grpo", tmp_path, "ppo")
    repo = [Path(p).name for p in list_configs("grpo", objective="nft")]
    assert "shapes_grpo_t2i.yaml" in repo and "sd35_medium_grpo_nft.yaml" in repo and "shapes_grpo_t2i_flow.yaml" not in repo


def test_distillation_configs_are_listed_by_design(tmp_path):
    from app.jobs import config_design, list_configs

    (tmp_path / "shapes_distill.yaml").write_text("absorb_guidance: true\nguidance_scale: 1.0\n")
    (tmp_path / "shapes_distill_guided.yaml").write_text("guidance_scale: 2.0\n")  # no field: the trainer's default
    (tmp_path / "z_distill.yaml").write_text(": not yaml : [\n")
    names = lambda paths: [Path(p).name for p in paths]  # noqa: E731
    assert names(list_configs("distill", tmp_path, design="absorb")) == ["shapes_distill.yaml"]
    assert names(list_configs("distill", tmp_path, design="conditional")) == ["shapes_distill_guided.yaml", "z_distill.yaml"]
    assert names(list_configs("grpo", tmp_path, design="absorb")) == []  # a GRPO listing ignores the design
    assert config_design(tmp_path / "shapes_distill.yaml") == "absorb" and config_design(tmp_path / "z_distill.yaml") == "conditional"
    with pytest.raises(JobError, match="unknown distillation design 'soft'"):
        list_configs("distill", tmp_path, design="soft")
