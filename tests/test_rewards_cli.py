"""``qwenrl reward``: images from a folder, or samples from a (tiny, random) checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from qwenrl.cli import main
from qwenrl.imageio import save_png
from qwenrl.world.grammar import sample_edit
from qwenrl.world.scene import Obj, Scene, render

CONFIGS = Path(__file__).resolve().parents[1] / "training" / "configs" / "rewards"
T2I = str(CONFIGS / "shapes_t2i.yaml")
EDIT = str(CONFIGS / "shapes_edit.yaml")

RED_CIRCLE = {"task": "t2i", "text": "a red circle", "family": "single",
              "spec": {"objects": [{"color": "red", "shape": "circle", "count": 1}], "relation": None, "background": None}}


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


@pytest.fixture
def t2i_files(tmp_path):
    images = tmp_path / "images"
    save_png(render(Scene("white", (Obj("circle", "red", "small", 4, 4),))), images / "0000.png")
    save_png(render(Scene("white", (Obj("square", "red", "small", 4, 4),))), images / "0001.png")
    save_png(render(Scene("white", (Obj("circle", "red", "large", 4, 4),))), images / "mine.png")
    prompts = write_jsonl(tmp_path / "prompts.jsonl", [RED_CIRCLE, RED_CIRCLE, {**RED_CIRCLE, "image": "mine.png"}])
    return str(images), prompts


def run(*args):
    return CliRunner().invoke(main, ["reward", *args], catch_exceptions=False)


def test_reward_json_lines(t2i_files):
    images, prompts = t2i_files
    res = run("--config", T2I, "--images", images, "--prompts", prompts, "--json")
    assert res.exit_code == 0, res.output
    rows = [json.loads(line) for line in res.stdout.splitlines()]
    assert len(rows) == 3
    assert rows[0]["score"] == 1.0 and rows[0]["parts"]["strict"] == 1.0
    assert rows[1]["score"] < 1.0 and rows[1]["parts"]["alignment"] == pytest.approx(0.75)
    assert rows[2]["image"].endswith("mine.png") and rows[2]["score"] == 1.0
    assert "Requirements: (1) a red circle" in rows[1]["rationale"]
    assert set(rows[0]) >= {"score", "parts", "rationale"}


def test_reward_text_output(t2i_files):
    images, prompts = t2i_files
    res = run("--config", T2I, "--images", images, "--prompts", prompts, "--limit", "2")
    assert res.exit_code == 0, res.output
    assert "#0 'a red circle' (t2i, single)" in res.stdout
    assert "total 1.000" in res.stdout and "alignment=1.000" in res.stdout
    assert "[alignment]" in res.stdout and "2 samples, mean total" in res.stderr


def test_reward_edits_with_source_scenes(tmp_path):
    rng = np.random.default_rng(0)
    tasks = [sample_edit(rng, fam) for fam in ("recolor", "move")]
    images = tmp_path / "images"
    save_png(render(tasks[0].target), images / "0000.png")
    save_png(render(tasks[1].source), images / "0001.png")  # the move did not happen
    prompts = write_jsonl(tmp_path / "edits.jsonl", [t.to_dict() for t in tasks])
    res = run("--config", EDIT, "--images", str(images), "--prompts", prompts, "--json")
    assert res.exit_code == 0, res.output
    done, undone = (json.loads(line) for line in res.stdout.splitlines())
    assert done["score"] == 1.0 and undone["parts"]["instruction"] == 0.0


def test_reward_with_a_cache_file(t2i_files, tmp_path):
    images, prompts = t2i_files
    cache = str(tmp_path / "cache.sqlite")
    first = run("--config", T2I, "--images", images, "--prompts", prompts, "--json", "--cache", cache)
    second = run("--config", T2I, "--images", images, "--prompts", prompts, "--json", "--cache", cache)
    assert first.stdout == second.stdout
    assert "cache/hits=12" in second.stderr  # 3 samples × 4 components


def test_reward_errors(t2i_files, tmp_path):
    images, prompts = t2i_files
    bad = tmp_path / "bad.yaml"
    bad.write_text("task: t2i\ncomponents:\n  x: {judge: magic}\n")
    res = CliRunner().invoke(main, ["reward", "--config", str(bad), "--images", images, "--prompts", prompts])
    assert res.exit_code != 0 and "unknown judge kind 'magic'" in res.output
    res = CliRunner().invoke(main, ["reward", "--config", T2I, "--prompts", prompts])
    assert res.exit_code == 2 and "either --images DIR or --model PATH" in res.output
    res = CliRunner().invoke(main, ["reward", "--config", EDIT, "--images", images, "--prompts", prompts])
    assert res.exit_code != 0 and "edit reward" in res.output
    (tmp_path / "empty").mkdir()
    res = CliRunner().invoke(main, ["reward", "--config", T2I, "--images", str(tmp_path / "empty"), "--prompts", prompts])
    assert res.exit_code != 0 and "0000.png not found" in res.output


def test_reward_samples_a_checkpoint(tmp_path):
    torch = pytest.importorskip("torch")
    shapes = pytest.importorskip("qwenrl.models.shapes")
    torch.manual_seed(0)
    tiny = {"vae": {"block_out_channels": [16, 16], "norm_num_groups": 8},
            "text": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1},
            "transformer": {"num_layers": 1, "attention_head_dim": 8, "num_attention_heads": 2}}
    model = shapes.ShapesPolicy(tiny).save(tmp_path / "tiny-model")
    prompts = write_jsonl(tmp_path / "p.jsonl", [RED_CIRCLE, sample_edit(np.random.default_rng(1), "recolor").to_dict()])
    out = tmp_path / "out"
    res = run("--config", T2I, "--model", str(model), "--prompts", prompts, "--n", "2", "--steps", "2",
              "--save", str(out), "--json")
    assert res.exit_code == 0, res.output
    rows = [json.loads(line) for line in res.stdout.splitlines()]
    assert len(rows) == 4  # 2 prompts × 2 samples; the edit rows get no score from a t2i reward
    assert all(isinstance(r["score"], float) for r in rows[:2]) and rows[2]["score"] is None
    assert (out / "0000.png").is_file() and rows[0]["image"].endswith("0000.png")
