"""`qwenrl generate` and `qwenrl bench` on a tiny random checkpoint, and their bad inputs."""

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from qwenrl.cli import main
from qwenrl.imageio import load_png, save_png
from qwenrl.models.shapes import TINY_CONFIG, ShapesPolicy
from qwenrl.world.scene import Obj, Scene, render


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "tiny"
    return ShapesPolicy(TINY_CONFIG).save(path, name="tiny", parent=None, lineage=["tiny"])


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_generate_text_to_image(tiny_ckpt, tmp_path):
    res = run("generate", "--model", tiny_ckpt, "--prompt", "a red circle", "--n", 3, "--steps", 2, "--out", tmp_path / "o")
    assert res.exit_code == 0, res.output
    images = sorted((tmp_path / "o").glob("0*.png"))
    assert len(images) == 3
    assert load_png(images[0]).shape == (32, 32, 3)
    assert (tmp_path / "o" / "grid.png").exists()


def test_generate_edit(tiny_ckpt, tmp_path):
    src = save_png(render(Scene("white", (Obj("circle", "red", "large", 4, 4),))), tmp_path / "src.png")
    res = run("generate", "--model", tiny_ckpt, "--source", src, "--instruction", "make the red circle blue",
              "--n", 2, "--steps", 2, "--out", tmp_path / "o")
    assert res.exit_code == 0, res.output
    assert len(list((tmp_path / "o").glob("0*.png"))) == 2


def test_generate_bad_inputs(tiny_ckpt, tmp_path):
    res = run("generate", "--model", tiny_ckpt, "--prompt", "a red unicorn", "--out", tmp_path / "o")
    assert res.exit_code != 0 and "unknown word" in res.output
    res = run("generate", "--model", tmp_path / "missing", "--prompt", "a red circle", "--out", tmp_path / "o")
    assert res.exit_code != 0 and "no such model folder" in res.output
    small = save_png(np.zeros((16, 16, 3), np.uint8), tmp_path / "small.png")
    res = run("generate", "--model", tiny_ckpt, "--source", small, "--instruction", "make the red circle blue", "--out", tmp_path / "o")
    assert res.exit_code != 0 and "32×32" in res.output
    (tmp_path / "junk.png").write_text("not an image")
    res = run("generate", "--model", tiny_ckpt, "--source", tmp_path / "junk.png", "--instruction", "make the red circle blue", "--out", tmp_path / "o")
    assert res.exit_code != 0 and "not a readable image" in res.output
    res = run("generate", "--model", tiny_ckpt, "--out", tmp_path / "o")
    assert res.exit_code != 0 and "--prompt" in res.output


@pytest.mark.parametrize("task", ["t2i", "edit"])
def test_bench_json(tiny_ckpt, task):
    res = run("bench", "--model", tiny_ckpt, "--task", task, "--limit", 6, "--samples-per-prompt", 2, "--steps", 2, "--json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["task"] == task and out["split"] == "test" and out["n_images"] == 12
    assert 0.0 <= out["overall"] <= 1.0 and out["families"]
    assert all(0.0 <= v <= 1.0 for v in out["families"].values())


def test_bench_unknown_model(tmp_path):
    res = run("bench", "--model", tmp_path / "nope", "--task", "t2i")
    assert res.exit_code != 0 and "no such model folder" in res.output
