"""The bundled Shapes policy: encoders, velocity, decoding, LoRA and checkpoints."""

import json

import numpy as np
import pytest
import torch

from qwenrl.checkpoints import CheckpointError
from qwenrl.models import load_policy
from qwenrl.models.shapes import TINY_CONFIG, ShapesPolicy, palette_indices
from qwenrl.sampling import sample_images
from qwenrl.world.grammar import GrammarError
from qwenrl.world.scene import PALETTE, Obj, Scene, render


@pytest.fixture(scope="module")
def policy() -> ShapesPolicy:
    torch.manual_seed(0)
    return ShapesPolicy(TINY_CONFIG)


def test_palette_indices_recover_rendered_colours():
    img = render(Scene("black", (Obj("circle", "red", "large", 3, 3), Obj("square", "cyan", "small", 20, 20))))
    noisy = np.clip(img.astype(int) + np.random.default_rng(0).integers(-20, 21, img.shape), 0, 255).astype(np.uint8)
    idx = palette_indices(noisy[None])[0].numpy()
    assert (PALETTE[idx] == img).all()


def test_shapes_and_decode(policy):
    texts = ["a red circle", "make the red circle blue"]
    src = np.stack([render(Scene("white", (Obj("circle", "red", "large", 3, 3),)))] * 2)
    cond = policy.encode_prompts(texts, src)
    assert cond["source"].shape == (2, *policy.latent_shape())
    x = torch.randn(2, *policy.latent_shape())
    v = policy.velocity(x, torch.tensor([0.5, 0.9]), cond)
    assert v.shape == x.shape and v.dtype == torch.float32
    imgs = policy.decode(x)
    assert imgs.shape == (2, 32, 32, 3) and imgs.dtype == np.uint8
    # decoded pixels are always palette colours (crisp by construction)
    assert set(map(tuple, imgs.reshape(-1, 3))) <= set(map(tuple, PALETTE))


def test_text_to_image_has_no_source_but_edit_does(policy):
    cond = policy.encode_prompts(["a red circle"])
    assert torch.count_nonzero(cond["source"]) == 0
    null = policy.null_conditioning(1)
    assert null["hidden"].shape == cond["hidden"].shape


def test_unknown_words_and_bad_images_fail_clearly(policy):
    with pytest.raises(GrammarError, match="unknown word"):
        policy.encode_prompts(["a red unicorn"])
    with pytest.raises(ValueError, match="32×32"):
        policy.encode_prompts(["make the red circle blue"], np.zeros((1, 16, 16, 3), np.uint8))
    with pytest.raises(ValueError, match="shape"):
        policy.encode_images(np.zeros((2, 32, 32), np.uint8))
    with pytest.raises(ValueError, match="source images"):
        policy.encode_prompts(["make the red circle blue"] * 2, np.zeros((1, 32, 32, 3), np.uint8))


def test_checkpoint_round_trip(policy, tmp_path):
    path = policy.save(tmp_path / "ckpt", name="tiny", parent=None, lineage=["tiny"], step=3)
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["policy"] == "shapes" and manifest["step"] == 3 and manifest["lineage"] == ["tiny"]
    assert sorted(p.name for p in path.iterdir()) == [
        "manifest.json", "text_encoder.safetensors", "tokenizer.json", "transformer.safetensors", "vae.safetensors"]
    loaded = load_policy(path)
    assert isinstance(loaded, ShapesPolicy)
    a = sample_images(policy, ["a red circle", "two blue squares"], num_steps=3, seed=1)
    b = sample_images(loaded, ["a red circle", "two blue squares"], num_steps=3, seed=1)
    assert (a == b).all()
    cond = policy.encode_prompts(["a red circle"])
    x = torch.randn(1, *policy.latent_shape())
    with torch.no_grad():
        assert torch.allclose(policy.velocity(x, torch.tensor([0.3]), cond),
                              loaded.velocity(x, torch.tensor([0.3]), loaded.encode_prompts(["a red circle"])))


def test_missing_or_broken_checkpoints(tmp_path, policy):
    with pytest.raises(CheckpointError, match="no such"):
        load_policy(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="manifest"):
        load_policy(tmp_path / "empty")
    path = policy.save(tmp_path / "ok")
    (path / "vae.safetensors").unlink()
    with pytest.raises(CheckpointError, match="vae"):
        ShapesPolicy.load(path)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "manifest.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="invalid JSON"):
        load_policy(bad)


def test_lora_trains_only_adapters_and_merges_on_save(tmp_path):
    torch.manual_seed(0)
    policy = ShapesPolicy(TINY_CONFIG)
    policy.enable_lora(rank=4)
    trainable = policy.trainable_parameters()
    assert trainable and all("lora" in n for n, p in policy.named_parameters() if p.requires_grad)
    with torch.no_grad():
        for p in trainable:
            p.add_(0.05)
    cond = policy.encode_prompts(["a red circle"])
    x = torch.randn(1, *policy.latent_shape())
    with torch.no_grad():
        v_lora = policy.velocity(x, torch.tensor([0.5]), cond)
        with policy.disabled_adapters():
            v_ref = policy.velocity(x, torch.tensor([0.5]), cond)
    assert not torch.allclose(v_lora, v_ref)
    loaded = load_policy(policy.save(tmp_path / "merged"))
    assert policy.lora and policy.trainable_parameters()  # saving leaves the live adapters alone
    with torch.no_grad():
        v_loaded = loaded.velocity(x, torch.tensor([0.5]), loaded.encode_prompts(["a red circle"]))
    assert torch.allclose(v_lora, v_loaded, atol=1e-5)
