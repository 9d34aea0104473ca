"""Pretraining of the Shapes model: the losses fall, and a resumed run continues exactly."""

import json

import pytest
import torch
from safetensors.torch import load_file

from training.pretrain import PretrainConfig, main

TINY_MODEL = json.dumps(
    {"vae": {"block_out_channels": [16, 16, 16]}, "text": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1},
     "transformer": {"num_layers": 1, "attention_head_dim": 8, "num_attention_heads": 2}}
)
COMMON = [f"model={TINY_MODEL}", "pool_size=128", "batch_size=16", "ae_batch_size=16", "log_every=5",
          "warmup_steps=2", "min_lr_ratio=1.0", "lr=0.003", "ae_lr=0.003", "threads=1"]


def metrics(run, stage):
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [r for r in rows if r["stage"] == stage]


def test_a_few_steps_lower_both_losses(tmp_path):
    run = tmp_path / "run"
    main(["--run", str(run), *sum((["--set", s] for s in COMMON + ["ae_steps=30", "steps=30", "export_every=30"]), [])])
    ae, dit = metrics(run, "ae"), metrics(run, "dit")
    assert ae[-1]["ce"] < ae[0]["ce"]
    assert dit[-1]["loss"] < dit[0]["loss"]
    ckpt = run / "checkpoints" / "step-000030"
    manifest = json.loads((ckpt / "manifest.json").read_text())
    assert manifest["name"] == "shapes-base@step30" and manifest["step"] == 30 and manifest["policy"] == "shapes"


def test_resume_continues_exactly(tmp_path):
    straight, resumed = tmp_path / "a", tmp_path / "b"
    sets = lambda extra: sum((["--set", s] for s in COMMON + ["ae_steps=6", "save_every=4", "export_every=100"] + extra), [])
    main(["--run", str(straight), *sets(["steps=8"])])
    main(["--run", str(resumed), *sets(["steps=4"])])
    main(["--run", str(resumed), *sets(["steps=8"])])
    a = load_file(str(straight / "checkpoints" / "step-000008" / "transformer.safetensors"))
    b = load_file(str(resumed / "checkpoints" / "step-000008" / "transformer.safetensors"))
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_bad_configs_fail_clearly(tmp_path):
    with pytest.raises(ValueError, match="unknown PretrainConfig key"):
        PretrainConfig.from_yaml(None, ["batchsize=3"])
    with pytest.raises(ValueError, match="edit_fraction"):
        PretrainConfig.from_yaml(None, ["edit_fraction=2"])
    assert PretrainConfig.from_yaml(None, ["lr=1e-4"]).lr == 1e-4  # YAML reads 1e-4 as a string
    with pytest.raises(ValueError, match="batch sizes"):
        PretrainConfig(batch_size=1)
    with pytest.raises(ValueError, match="edit_families must be 'grammar' .* or 'even'"):
        PretrainConfig(edit_families="uniform")


def test_even_edit_families_draw_moves_as_often_as_the_rest():
    """The grammar's own mix redraws a family whose edit does not fit, so moves are under-drawn;
    ``even`` draws the family first. The grammar mix's draws are those the bundled base saw."""
    import numpy as np

    from training.pretrain import example_batch

    def move_share(mix: str) -> float:
        texts, _, sources = example_batch(np.random.default_rng(0), 700, 1.0, mix)
        assert all(s is not None for s in sources)
        return float(np.mean([t.startswith("move ") for t in texts]))

    assert move_share("grammar") < 0.10 < 0.12 < move_share("even") < 0.17  # 1/7 ≈ 0.143
    a, b = example_batch(np.random.default_rng(1), 20, 0.5), example_batch(np.random.default_rng(1), 20, 0.5, "grammar")
    assert a[0] == b[0]  # the default is the grammar's mix, draw for draw


def test_init_goes_on_from_a_checkpoint_with_its_autoencoder(tmp_path):
    """Continued pretraining: the autoencoder stage is skipped and its weights and latent scaling
    kept; the denoiser starts from the checkpoint's weights; the export names its parent."""
    first, second = tmp_path / "first", tmp_path / "second"
    main(["--run", str(first), *sum((["--set", s] for s in COMMON + ["ae_steps=6", "steps=4", "export_every=4"]), [])])
    parent = first / "checkpoints" / "step-000004"
    no_model = [s for s in COMMON if not s.startswith("model=")]  # the architecture comes from the checkpoint
    published = tmp_path / "models" / "shapes-base"
    main(["--run", str(second), "--publish", str(published),
          *sum((["--set", s] for s in no_model + [f"init={parent}", "ae_steps=6", "steps=3", "export_every=3", "edit_families=even"]), [])])
    assert metrics(second, "ae") == [] and len(metrics(second, "dit")) == 1
    child = second / "checkpoints" / "step-000003"
    a, b = load_file(str(parent / "vae.safetensors")), load_file(str(child / "vae.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    ta, tb = load_file(str(parent / "transformer.safetensors")), load_file(str(child / "transformer.safetensors"))
    assert not all(torch.equal(ta[k], tb[k]) for k in ta)  # the denoiser trained on
    pm, cm = (json.loads((p / "manifest.json").read_text()) for p in (parent, child))
    assert cm["config"]["latent_scale"] == pm["config"]["latent_scale"]
    assert cm["parent"] == "shapes-base@step4" and cm["name"] == "shapes-base@step4+3"
    assert cm["lineage"] == ["shapes-base@step4", "shapes-base@step4+3"] and cm["step"] == 7
    assert cm["pretrain_init"] == str(parent) and cm["edit_families"] == "even"
    # --publish: the bundled base's form, named after its folder, with the whole history
    bm = json.loads((published / "manifest.json").read_text())
    assert bm["name"] == "shapes-base" and bm["lineage"] == ["shapes-base"] and bm["parent"] is None and bm["step"] == 7
    assert bm["pretrain_history"] == "shapes-base@step4 (4 steps); then 3 more denoiser steps from defaults (even edit mix, lr 0.003)"
    tb2 = load_file(str(published / "transformer.safetensors"))
    assert all(torch.equal(tb[k], tb2[k]) for k in tb)


def test_init_errors_name_the_fix(tmp_path):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "keep.txt").write_text("mine")
    with pytest.raises(SystemExit, match="not a checkpoint folder"):
        main(["--run", str(tmp_path / "run"), "--publish", str(tmp_path / "notes"), "--set", "steps=0", "--set", "ae_steps=0"])
    assert (tmp_path / "notes" / "keep.txt").read_text() == "mine" and not (tmp_path / "run").exists()
    with pytest.raises(ValueError, match="not a checkpoint folder"):
        PretrainConfig(init=str(tmp_path))
    with pytest.raises(ValueError, match="leave model empty"):
        PretrainConfig(init="data/models/shapes-base", model={"transformer": {"num_layers": 1}})
