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


# -- pass@k ----------------------------------------------------------------------------------------


def test_pass_at_k_against_hand_computed_values():
    from qwenrl.evaluation import pass_at_k, pass_k_values

    assert pass_at_k(16, 0, 1) == 0.0 and pass_at_k(16, 16, 16) == 1.0
    assert pass_at_k(4, 1, 1) == pytest.approx(0.25)
    assert pass_at_k(4, 1, 2) == pytest.approx(0.5)  # 1 − C(3,2)/C(4,2) = 1 − 3/6
    assert pass_at_k(5, 2, 2) == pytest.approx(0.7)  # 1 − C(3,2)/C(5,2) = 1 − 3/10
    assert pass_at_k(16, 3, 4) == pytest.approx(1 - (13 * 12 * 11 * 10) / (16 * 15 * 14 * 13))
    assert pass_at_k(8, 6, 3) == 1.0  # fewer than 3 failures: any 3 include a pass
    assert pass_k_values(16) == [1, 2, 4, 8, 16] and pass_k_values(6) == [1, 2, 4, 6] and pass_k_values(1) == [1]
    with pytest.raises(ValueError, match="1 <= k <= n"):
        pass_at_k(4, 1, 5)
    with pytest.raises(ValueError, match="0 <= c <= n"):
        pass_at_k(4, 5, 1)


def test_pass_at_k_table_averages_prompts_per_family():
    from qwenrl.evaluation import pass_at_k_table

    table = pass_at_k_table([[True, False, False, False], [False] * 4, [True, True, False, False]], ["a", "a", "b"])
    assert table["n"] == 4
    assert table["families"]["a"]["1"] == pytest.approx((0.25 + 0.0) / 2)
    assert table["families"]["a"]["2"] == pytest.approx((0.5 + 0.0) / 2)
    assert table["families"]["b"]["2"] == pytest.approx(1 - 1 / 6)
    assert table["overall"]["4"] == pytest.approx(2 / 3)
    assert table["overall"]["1"] == pytest.approx((0.25 + 0 + 0.5) / 3)


def test_bench_reports_pass_at_k(tiny_ckpt):
    res = run("bench", "--model", tiny_ckpt, "--task", "t2i", "--limit", 5, "--samples-per-prompt", 4, "--steps", 2, "--json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    pk = out["pass_at_k"]
    assert pk["n"] == 4 and list(pk["overall"]) == ["1", "2", "4"]
    assert pk["overall"]["1"] == pytest.approx(out["overall"])  # pass@1 is the mean pass rate
    assert pk["overall"]["1"] <= pk["overall"]["2"] <= pk["overall"]["4"]
    assert set(pk["families"]) == set(out["families"])
    table = run("bench", "--model", tiny_ckpt, "--task", "t2i", "--limit", 5, "--samples-per-prompt", 4, "--steps", 2)
    assert table.exit_code == 0 and "pass@4" in table.output and "overall" in table.output
    bad = run("bench", "--model", tiny_ckpt, "--task", "t2i", "--samples-per-prompt", 0)
    assert bad.exit_code != 0 and "samples-per-prompt" in bad.output
