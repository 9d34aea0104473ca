"""DiffusersPolicy on tiny random SD3, FLUX(-Kontext) and Qwen-Image(-Edit) pipelines, built offline."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from qwenrl.checkpoints import CheckpointError, read_manifest, write_checkpoint
from qwenrl.models import load_policy
from qwenrl.models.diffusers_policy import DiffusersPolicy
from qwenrl.sampling import guided_velocity, rollout, sample_images, step_log_prob
from tests.tiny_diffusers import IMAGE_SIZE, build_tiny_pipeline

PROMPTS = ["a red circle", "two blue squares left of a green triangle"]
EDITS = ["make the circle red", "remove the square"]
T2I = ["sd3", "flux", "qwen-image"]
EDIT = ["qwen-image-edit", "flux-kontext"]


def make_policy(family: str, **kwargs) -> DiffusersPolicy:
    kwargs = {"height": IMAGE_SIZE, "width": IMAGE_SIZE, "max_sequence_length": 16, **kwargs}
    return DiffusersPolicy(build_tiny_pipeline(family), **kwargs)


def random_images(n: int, size: tuple[int, int] = (IMAGE_SIZE, IMAGE_SIZE), seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, *size, 3), dtype=np.uint8)


def velocity_at(policy: DiffusersPolicy, cond, seed: int = 0) -> torch.Tensor:
    x = torch.randn(len(cond), *policy.latent_shape(), generator=torch.Generator().manual_seed(seed))
    return policy.velocity(x, torch.full((len(cond),), 0.6), cond)


@pytest.mark.parametrize("family", T2I)
def test_text_to_image_shapes(family):
    policy = make_policy(family)
    cond = policy.encode_prompts(PROMPTS)
    assert len(cond) == 2
    v = velocity_at(policy, cond)
    assert v.shape == (2, *policy.latent_shape()) and v.dtype == torch.float32
    images = sample_images(policy, PROMPTS, num_steps=2, guidance_scale=3.0, seed=0)
    assert images.shape == (2, IMAGE_SIZE, IMAGE_SIZE, 3) and images.dtype == np.uint8
    latents = policy.encode_images(images)
    assert latents.shape == (2, *policy.latent_shape())
    assert policy.decode(latents).shape == images.shape


def test_latent_layouts_and_shifts():
    sd3, flux, qwen = make_policy("sd3"), make_policy("flux"), make_policy("qwen-image")
    assert sd3.latent_shape() == (4, 8, 8)  # unpacked (C, H/2, W/2)
    assert flux.latent_shape() == qwen.latent_shape() == (16, 16)  # packed 2×2: (H/4 · W/4, 4C)
    assert sd3.default_shift == 3.0
    assert flux.default_shift > 1.0 and flux.embedded_guidance == 3.5 and qwen.embedded_guidance is None
    with pytest.raises(ValueError, match="multiples of 4"):
        make_policy("flux", height=18)


@pytest.mark.parametrize("family", ["sd3", "flux", "flux-kontext", "qwen-image"])
def test_ode_sampling_matches_the_pipeline(family):
    """Same noise and schedule as the diffusers pipeline ⇒ same latents: checks timesteps, packing, ids."""
    policy = make_policy(family)
    pipe = policy.pipe
    sources = random_images(2) if family == "flux-kontext" else None
    noise = torch.randn(2, *policy.latent_shape(), generator=torch.Generator().manual_seed(0))
    traj = rollout(
        policy, policy.encode_prompts(PROMPTS, sources), num_steps=3, shift=policy.default_shift,
        noise_level=0.0, initial_noise=noise,
    )
    kwargs = dict(prompt=PROMPTS, num_inference_steps=3, height=IMAGE_SIZE, width=IMAGE_SIZE, latents=noise.clone(),
                  output_type="latent", max_sequence_length=16)
    if family == "sd3":
        # SD3's scheduler, left alone, spaces sigmas from 1 to its σ_min, not to 1/N; pass ours
        # (FLUX and Qwen-Image pipelines already use linspace(1, 1/N, N) before shifting).
        kwargs.update(guidance_scale=1.0, sigmas=list(np.linspace(1.0, 1 / 3, 3)))
    elif family.startswith("flux"):
        kwargs["guidance_scale"] = policy.embedded_guidance
    if family == "flux-kontext":
        kwargs.update(image=[Image.fromarray(im) for im in sources], _auto_resize=False, max_area=IMAGE_SIZE**2)
    expected = pipe(**kwargs).images
    torch.testing.assert_close(traj.final, expected, atol=1e-4, rtol=1e-4)


def test_qwen_guidance_pads_texts_of_different_lengths():
    policy = make_policy("qwen-image", max_sequence_length=256)
    cond = policy.encode_prompts(PROMPTS)
    null = policy.null_conditioning(2)
    assert null["prompt_embeds"].shape[1] != cond["prompt_embeds"].shape[1]
    x, sigma = torch.randn(2, *policy.latent_shape()), torch.full((2,), 0.7)
    guided = guided_velocity(policy, x, sigma, cond, 4.0, null)  # one padded 2B batch
    v_c, v_u = policy.velocity(x, sigma, cond), policy.velocity(x, sigma, null)
    torch.testing.assert_close(guided, v_u + 4.0 * (v_c - v_u), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("family", EDIT)
def test_editing_conditions_on_the_source(family):
    policy = make_policy(family)
    sources = random_images(2)
    images = sample_images(policy, EDITS, sources, num_steps=2, guidance_scale=2.0, seed=0)
    assert images.shape == (2, IMAGE_SIZE, IMAGE_SIZE, 3) and images.dtype == np.uint8

    cond = policy.encode_prompts(EDITS, sources)
    assert cond["image_latents"].shape == (2, *policy.latent_shape())
    other = policy.encode_prompts(EDITS, random_images(2, size=(24, 20), seed=1))  # resized to 16×16
    assert not torch.allclose(velocity_at(policy, cond), velocity_at(policy, other))
    null = policy.null_conditioning(2, sources)  # text dropped, source kept
    assert torch.equal(null["image_latents"], cond["image_latents"])
    with pytest.raises(ValueError, match="uint8"):
        policy.encode_prompts(EDITS, sources.astype(np.float32))
    with pytest.raises(ValueError, match="source images"):
        policy.encode_prompts(EDITS, random_images(3))


def test_input_errors():
    with pytest.raises(ValueError, match="pass the source images"):
        make_policy("qwen-image-edit").encode_prompts(EDITS)
    sd3 = make_policy("sd3")
    with pytest.raises(ValueError, match="takes no source images"):
        sd3.encode_prompts(PROMPTS, random_images(2))
    with pytest.raises(ValueError, match="latents must be"):
        sd3.velocity(torch.randn(2, 16, 16), torch.ones(2), sd3.encode_prompts(PROMPTS))
    with pytest.raises(ValueError, match="unsupported pipeline"):
        DiffusersPolicy(object())


@pytest.mark.parametrize("family", ["sd3", "flux", "qwen-image"])
def test_lora_trains_only_lora_and_disables_to_the_base(family):
    policy = make_policy(family)
    cond = policy.encode_prompts(PROMPTS)
    v_base = velocity_at(policy, cond).detach()
    with pytest.raises(ValueError, match="no LoRA adapter"):
        policy.disabled_adapters().__enter__()

    policy.enable_lora(rank=4, alpha=8)
    trainable = {n: p for n, p in policy.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    assert len(policy.trainable_parameters()) == len(trainable)
    assert all(p.dtype == torch.float32 for p in trainable.values())
    torch.testing.assert_close(velocity_at(policy, cond), v_base)  # LoRA starts as the identity

    with torch.no_grad():
        for p in trainable.values():
            p.add_(0.2 * torch.randn_like(p))
    v_lora = velocity_at(policy, cond).detach()
    assert not torch.allclose(v_lora, v_base, atol=1e-4)
    with policy.disabled_adapters():
        torch.testing.assert_close(velocity_at(policy, cond), v_base)
    torch.testing.assert_close(velocity_at(policy, cond), v_lora)

    x = torch.randn(2, *policy.latent_shape())
    log_prob, mean, std = step_log_prob(policy, x, x * 0.9, 0.8, 0.6, cond, 0.7)
    log_prob.sum().backward()
    # (the last block's text-stream output feeds nothing, so not every LoRA matrix gets a gradient)
    assert sum(p.grad is not None for p in trainable.values()) > len(trainable) // 2
    assert all(p.grad is None for n, p in policy.named_parameters() if n not in trainable)


@pytest.fixture
def sd3_folder(tmp_path):
    folder = tmp_path / "tiny-sd3"
    build_tiny_pipeline("sd3").save_pretrained(folder)
    return folder


def test_lora_checkpoint_round_trip(tmp_path, sd3_folder):
    policy = DiffusersPolicy.from_pretrained(sd3_folder, max_sequence_length=16)
    assert (policy.height, policy.width) == (IMAGE_SIZE, IMAGE_SIZE)  # sample_size × VAE factor
    policy.enable_lora(rank=4, alpha=8)
    with torch.no_grad():
        for p in policy.trainable_parameters():
            p.add_(0.2 * torch.randn_like(p))

    ckpt = policy.save(tmp_path / "ckpt", step=3, task="t2i", lineage=["tiny-sd3"])
    assert sorted(f.name for f in ckpt.iterdir()) == ["lora.safetensors", "manifest.json"]
    manifest = read_manifest(ckpt)
    assert manifest["policy"] == "diffusers" and manifest["family"] == "sd3"
    assert manifest["base"] == str(sd3_folder.resolve()) and manifest["step"] == 3
    assert manifest["lora"] == {"rank": 4, "alpha": 8.0, "target_modules": policy.lora["target_modules"]}

    loaded = load_policy(ckpt)
    assert isinstance(loaded, DiffusersPolicy) and loaded.lora == policy.lora
    torch.testing.assert_close(velocity_at(loaded, loaded.encode_prompts(PROMPTS)), velocity_at(policy, policy.encode_prompts(PROMPTS)))
    assert loaded.manifest["lineage"] == ["tiny-sd3"]


def test_full_transformer_checkpoint_round_trip(tmp_path):
    folder = tmp_path / "tiny-qwen"
    build_tiny_pipeline("qwen-image").save_pretrained(folder)
    policy = DiffusersPolicy.from_pretrained(folder, height=IMAGE_SIZE, width=IMAGE_SIZE, max_sequence_length=16)
    base_v = velocity_at(policy, policy.encode_prompts(PROMPTS)).detach()
    with torch.no_grad():
        policy.transformer.proj_out.weight.add_(0.5)
    ckpt = policy.save(tmp_path / "ckpt")
    assert read_manifest(ckpt)["trainable"] == "transformer"
    assert (ckpt / "transformer.safetensors").is_file()

    loaded = DiffusersPolicy.load(ckpt)
    v = velocity_at(loaded, loaded.encode_prompts(PROMPTS))
    torch.testing.assert_close(v, velocity_at(policy, policy.encode_prompts(PROMPTS)))
    assert not torch.allclose(v, base_v)


def test_load_policy_reads_a_pipeline_folder(sd3_folder):
    policy = load_policy(sd3_folder)
    assert isinstance(policy, DiffusersPolicy) and policy.family == "sd3" and policy.base == str(sd3_folder.resolve())


def test_load_policy_errors(tmp_path):
    with pytest.raises(CheckpointError, match="no such model folder"):
        load_policy(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="missing manifest.json"):
        load_policy(tmp_path / "empty")
    write_checkpoint(tmp_path / "odd", {}, {"policy": "mystery"})
    with pytest.raises(CheckpointError, match="unknown policy kind 'mystery'"):
        load_policy(tmp_path / "odd")
    write_checkpoint(tmp_path / "orphan", {}, {"policy": "diffusers", "base": str(tmp_path / "gone"), "trainable": "lora"})
    with pytest.raises(CheckpointError, match="no such pipeline folder"):
        load_policy(tmp_path / "orphan")
    with pytest.raises(ValueError, match="no base pipeline path"):
        make_policy("sd3").save(tmp_path / "unsaved")
    manifest = json.loads((tmp_path / "odd" / "manifest.json").read_text())
    assert manifest["format"] == "qwenrl-checkpoint"


def test_bfloat16_pipeline_samples_and_scores_in_fp32():
    pipe = build_tiny_pipeline("sd3").to(torch.bfloat16)
    policy = DiffusersPolicy(pipe, height=IMAGE_SIZE, width=IMAGE_SIZE, max_sequence_length=16)
    policy.enable_lora(rank=4)
    cond = policy.encode_prompts(PROMPTS)
    traj = rollout(policy, cond, num_steps=3, shift=policy.default_shift, generator=0)
    assert traj.latents.dtype == traj.log_probs.dtype == torch.float32
    assert torch.isfinite(traj.log_probs).all()
    log_prob, _, _ = step_log_prob(policy, traj.latents[:, 0], traj.latents[:, 1], traj.sigmas[0], traj.sigmas[1], cond, 0.7)
    torch.testing.assert_close(log_prob, traj.log_probs[:, 0])
    log_prob.sum().backward()
    assert any(p.grad is not None and p.grad.dtype == torch.float32 for p in policy.trainable_parameters())
    assert policy.decode(traj.final).shape == (2, IMAGE_SIZE, IMAGE_SIZE, 3)
