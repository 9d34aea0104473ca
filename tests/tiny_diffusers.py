"""Tiny randomly initialised diffusers pipelines, built offline (no hub download).

Shaped after the ``get_dummy_components`` of diffusers' own pipeline tests, with two changes:
tokenizers are built here from an in-memory vocabulary instead of being downloaded, and every
VAE downsamples by 2 so that 16×16 images give 8×8 latents (SD3: 64 tokens; FLUX and Qwen-Image
pack 2×2 patches: 16 tokens). Used by the adapter tests and by trainer tests that need a real
diffusers model: ``DiffusersPolicy(build_tiny_pipeline("sd3"), max_sequence_length=16)``.
"""

from __future__ import annotations

import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import (
    CLIPTextConfig,
    CLIPTextModel,
    CLIPTextModelWithProjection,
    PreTrainedTokenizerFast,
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2Tokenizer,
    Qwen2VLImageProcessorPil,
    Qwen2VLProcessor,
    T5Config,
    T5EncoderModel,
)
from transformers.convert_slow_tokenizer import bytes_to_unicode

FAMILIES = ("sd3", "flux", "flux-kontext", "qwen-image", "qwen-image-edit")
IMAGE_SIZE = 16

_WORDS = (
    "a an the of and with on in to is red green blue yellow purple orange white black circle square "
    "triangle small large left right above below make change add remove move it background"
).split()


def word_tokenizer(max_length: int, *, bos: bool = False) -> PreTrainedTokenizerFast:
    """A word-level tokenizer over a small vocabulary (unknown words map to <unk>)."""
    specials = ["<pad>", "<unk>", "</s>", "<s>"]
    vocab = {tok: i for i, tok in enumerate(specials + _WORDS + list(".,!?"))}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token="<pad>",
        unk_token="<unk>",
        eos_token="</s>",
        bos_token="<s>" if bos else None,
        model_max_length=max_length,
    )


def qwen_tokenizer() -> Qwen2Tokenizer:
    """A byte-level Qwen2 tokenizer with no merges (one token per byte) and Qwen's chat tokens."""
    byte_chars = list(bytes_to_unicode().values())
    special = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]
    vocab = {ch: i for i, ch in enumerate(byte_chars + special)}
    return Qwen2Tokenizer(vocab=vocab, merges=[], additional_special_tokens=special[1:])


class ImageOnlyQwen2VLProcessor(Qwen2VLProcessor):
    """Qwen2VLProcessor without its video processor.

    transformers 5.x cannot build a Qwen2VLProcessor without torchvision (its video processor
    needs it, even when None is passed); editing only sends images, so tests drop that part.
    """

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        super().__init__(image_processor, tokenizer, None, chat_template=chat_template, **kwargs)


def _clip_encoder(cls, vocab_size: int):
    config = CLIPTextConfig(
        bos_token_id=3,
        eos_token_id=2,
        pad_token_id=0,
        hidden_size=32,
        intermediate_size=37,
        num_attention_heads=4,
        num_hidden_layers=2,
        vocab_size=vocab_size,
        projection_dim=32,
        max_position_embeddings=16,
    )
    return cls(config)


def _t5_encoder(vocab_size: int, d_model: int = 32):
    config = T5Config(vocab_size=vocab_size, d_model=d_model, d_kv=8, d_ff=37, num_layers=2, num_heads=4, pad_token_id=0, eos_token_id=2)
    return T5EncoderModel(config)


def _sd3():
    from diffusers import FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, StableDiffusion3Pipeline

    torch.manual_seed(0)
    tok = word_tokenizer(16)
    transformer = SD3Transformer2DModel(
        sample_size=8, patch_size=1, in_channels=4, num_layers=1, attention_head_dim=8, num_attention_heads=4,
        caption_projection_dim=32, joint_attention_dim=32, pooled_projection_dim=64, out_channels=4, pos_embed_max_size=16,
    )
    return StableDiffusion3Pipeline(
        transformer=transformer,
        scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
        vae=_kl_vae(latent_channels=4),
        text_encoder=_clip_encoder(CLIPTextModelWithProjection, len(tok)),
        tokenizer=tok,
        text_encoder_2=_clip_encoder(CLIPTextModelWithProjection, len(tok)),
        tokenizer_2=word_tokenizer(16),
        text_encoder_3=_t5_encoder(len(tok)),
        tokenizer_3=word_tokenizer(16),
    )


def _kl_vae(latent_channels: int):
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        sample_size=IMAGE_SIZE, in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(4, 8), layers_per_block=1,
        latent_channels=latent_channels, norm_num_groups=1, use_quant_conv=False, use_post_quant_conv=False,
        shift_factor=0.0609, scaling_factor=1.5035,
    )


def _flux(kontext: bool):
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxKontextPipeline, FluxPipeline, FluxTransformer2DModel

    torch.manual_seed(0)
    tok = word_tokenizer(16)
    transformer = FluxTransformer2DModel(
        patch_size=1, in_channels=16, num_layers=1, num_single_layers=1, attention_head_dim=16, num_attention_heads=2,
        joint_attention_dim=32, pooled_projection_dim=32, axes_dims_rope=[4, 4, 8], guidance_embeds=True,
    )
    cls = FluxKontextPipeline if kontext else FluxPipeline
    return cls(
        transformer=transformer,
        scheduler=FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True, base_image_seq_len=4, max_image_seq_len=64),
        vae=_kl_vae(latent_channels=4),
        text_encoder=_clip_encoder(CLIPTextModel, len(tok)),
        tokenizer=tok,
        text_encoder_2=_t5_encoder(len(tok)),
        tokenizer_2=word_tokenizer(16),
        image_encoder=None,
        feature_extractor=None,
    )


def _qwen(edit: bool):
    from diffusers import AutoencoderKLQwenImage, FlowMatchEulerDiscreteScheduler, QwenImageEditPipeline, QwenImagePipeline, QwenImageTransformer2DModel

    torch.manual_seed(0)
    tok = qwen_tokenizer()
    transformer = QwenImageTransformer2DModel(
        patch_size=2, in_channels=16, out_channels=4, num_layers=1, attention_head_dim=16, num_attention_heads=2,
        joint_attention_dim=16, guidance_embeds=False, axes_dims_rope=(8, 4, 4),
    )
    z_dim = 4
    vae = AutoencoderKLQwenImage(
        base_dim=8, z_dim=z_dim, dim_mult=[1, 2], num_res_blocks=1, temperal_downsample=[False],
        latents_mean=[0.1] * z_dim, latents_std=[0.9] * z_dim,
    )
    ids = {t: tok.convert_tokens_to_ids(t) for t in ("<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>")}
    config = Qwen2_5_VLConfig(
        text_config={
            "hidden_size": 16, "intermediate_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2,
            "num_key_value_heads": 2, "vocab_size": len(tok),
            "rope_scaling": {"mrope_section": [1, 1, 2], "rope_type": "default", "type": "default"},
            "rope_theta": 1000000.0,
            "bos_token_id": None,
            "eos_token_id": tok.convert_tokens_to_ids("<|endoftext|>"),
        },
        vision_config={"depth": 1, "hidden_size": 16, "intermediate_size": 16, "num_heads": 2, "out_hidden_size": 16},
        hidden_size=16,
        vocab_size=len(tok),
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
    )
    components = dict(
        transformer=transformer,
        scheduler=FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True, base_image_seq_len=4, max_image_seq_len=64),
        vae=vae,
        text_encoder=Qwen2_5_VLForConditionalGeneration(config).eval(),
        tokenizer=tok,
    )
    if edit:
        processor = ImageOnlyQwen2VLProcessor(image_processor=Qwen2VLImageProcessorPil(min_pixels=28 * 28, max_pixels=56 * 56), tokenizer=tok)
        return QwenImageEditPipeline(processor=processor, **components)
    return QwenImagePipeline(**components)


def build_tiny_pipeline(family: str):
    """A tiny random pipeline of ``family`` (one of FAMILIES), in fp32 on the CPU."""
    builders = {
        "sd3": _sd3,
        "flux": lambda: _flux(kontext=False),
        "flux-kontext": lambda: _flux(kontext=True),
        "qwen-image": lambda: _qwen(edit=False),
        "qwen-image-edit": lambda: _qwen(edit=True),
    }
    if family not in builders:
        raise ValueError(f"unknown family {family!r}; expected one of {FAMILIES}")
    pipe = builders[family]()
    pipe.set_progress_bar_config(disable=True)
    return pipe
