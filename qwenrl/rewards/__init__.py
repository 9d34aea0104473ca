"""Rewards with rationales: one judge signature, composite rewards from YAML, a cache.

    from qwenrl.rewards import Sample, load_reward
    reward = load_reward("training/configs/rewards/shapes_t2i.yaml")
    [j] = reward([Sample.from_spec(image, prompt)])
    j.score, j.parts, j.rationale

Every judge: ``judge(samples: list[Sample]) -> list[Judgement]``. Judge kinds (YAML
``judge:``): ``shapes_alignment``, ``shapes_aesthetics``, ``shapes_fidelity``,
``shapes_instruction``, ``shapes_identity``, ``shapes_oracle``, ``shapes_clarity``, ``vlm_local``,
``vlm_served``, ``shapes_reader`` (a learned judge's reading, judged by the world's rules),
``pairwise_winrate`` (a group's win rates, judged pairwise by the learned judge),
``clip_preference``, ``face_identity``. See docs/rewards.md.
"""

from .agreement import judge_human_agreement
from .base import (
    JUDGE_KINDS,
    Judge,
    Judgement,
    RewardConfigError,
    Sample,
    build_judge,
    image_hash,
    judge_class,
    sample_key,
)
from .cache import RewardCache, judge_cached
from .composite import Component, CompositeReward, load_reward, reward_stats

__all__ = [
    "JUDGE_KINDS",
    "Component",
    "CompositeReward",
    "Judge",
    "Judgement",
    "RewardCache",
    "RewardConfigError",
    "Sample",
    "build_judge",
    "image_hash",
    "judge_cached",
    "judge_class",
    "judge_human_agreement",
    "load_reward",
    "reward_stats",
    "sample_key",
]
