"""A checkpoint's manifest says how it is sampled (a student that absorbed guidance: without it),
and `qwenrl generate`, `qwenrl bench`, the training evaluation and the arena's gallery all follow it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from qwenrl.evaluation import override_sampling, policy_sampling_defaults
from qwenrl.models import load_policy
from qwenrl.models.shapes import TINY_CONFIG, ShapesPolicy

CONFIG_SAMPLING = {"num_steps": 5, "guidance_scale": 3.0}  # what the model config recommends
MANIFEST_SAMPLING = {"num_steps": 2, "guidance_scale": 1.0}  # what the trainer that wrote it says instead


@pytest.fixture(scope="module")
def student(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("student") / "student"
    ShapesPolicy({**TINY_CONFIG, "sampling": CONFIG_SAMPLING}).save(
        path, name="student", parent=None, lineage=["student"], sampling=MANIFEST_SAMPLING, absorbed_guidance=3.0)
    return path


@pytest.fixture()
def calls(monkeypatch):
    """Every sampling call's (num_steps, guidance_scale), wherever it comes from."""
    seen: list[tuple[int, float]] = []
    import qwenrl.evaluation
    import qwenrl.sampling

    real = qwenrl.sampling.sample_images

    def spy(policy, texts, sources=None, *, num_steps, guidance_scale, **kw):
        seen.append((num_steps, guidance_scale))
        return real(policy, texts, sources, num_steps=num_steps, guidance_scale=guidance_scale, **kw)

    monkeypatch.setattr(qwenrl.sampling, "sample_images", spy)
    monkeypatch.setattr(qwenrl.evaluation, "sample_images", spy)
    return seen


def test_the_manifest_wins_over_the_model_config(student):
    assert policy_sampling_defaults(load_policy(student)) == MANIFEST_SAMPLING
    plain = ShapesPolicy({**TINY_CONFIG, "sampling": CONFIG_SAMPLING})
    assert policy_sampling_defaults(plain) == CONFIG_SAMPLING
    override_sampling(plain, guidance_scale=1.0)
    assert policy_sampling_defaults(plain) == {"num_steps": 5, "guidance_scale": 1.0}
    with pytest.raises(ValueError, match="unknown sampling setting"):
        override_sampling(plain, eta=0.5)


def test_generate_and_bench_follow_the_manifest(student, calls, tmp_path):
    from qwenrl.cli import main

    res = CliRunner().invoke(main, ["generate", "--model", str(student), "--prompt", "a red circle", "--n", "2", "--out", str(tmp_path / "o")])
    assert res.exit_code == 0, res.output
    assert calls == [(2, 1.0)]
    res = CliRunner().invoke(main, ["bench", "--model", str(student), "--task", "edit", "--limit", "3", "--json"])
    assert res.exit_code == 0, res.output
    assert calls[1:] and set(calls[1:]) == {(2, 1.0)}
    # an explicit flag still wins
    res = CliRunner().invoke(main, ["generate", "--model", str(student), "--prompt", "a red circle", "--n", "1", "--guidance", "2",
                                    "--out", str(tmp_path / "p")])
    assert res.exit_code == 0 and calls[-1] == (2, 2.0)


def test_the_training_evaluation_follows_the_manifest(student, calls):
    from qwenrl.rewards import load_reward
    from training.common import REPO_ROOT, evaluate_policy

    reward = load_reward(REPO_ROOT / "training/configs/rewards/shapes_t2i.yaml")
    evaluate_policy(load_policy(student), "t2i", reward, limit=2, num_steps=None, guidance_scale=None, seed=0)
    assert calls and set(calls) == {(2, 1.0)}


def test_the_arena_gallery_follows_the_manifest(student, monkeypatch, tmp_path):
    import shutil

    import app.gallery
    from app.gallery import fill_model
    from app.workspace import Workspace

    models = tmp_path / "models"
    shutil.copytree(student, models / "student")
    seen = []
    real = app.gallery.generate

    def spy(policy, items, seeds, *, num_steps, guidance_scale, **kw):
        seen.append((num_steps, guidance_scale))
        return real(policy, items, seeds, num_steps=num_steps, guidance_scale=guidance_scale, **kw)

    monkeypatch.setattr(app.gallery, "generate", spy)
    ws = Workspace.open(tmp_path / "ws", models_dir=models, pool_size=2)
    try:
        fill_model(ws, "student", log=lambda m: None)
        assert ws.lineage("student") == "student (guidance-free, absorbed 3)"  # the leaderboard's lineage column
    finally:
        ws.close()
    assert seen and set(seen) == {(2, 1.0)}
    assert np.all([s == (2, 1.0) for s in seen])
