"""The repository's folders the studio reads, named once (the studio runs from a checkout)."""

from __future__ import annotations

from pathlib import Path

from qwenrl.world.prompt_sets import PROMPT_DIR  # noqa: F401 - the prompt sets' folder, as the library names it

REPO_ROOT = Path(__file__).resolve().parents[1]
MODELS_DIR = REPO_ROOT / "data" / "models"  #: the bundled checkpoints (the studio registers each)
CONFIG_DIR = REPO_ROOT / "training" / "configs"  #: the trainers' configs, the only ones a studio job may use
REWARD_DIR = CONFIG_DIR / "rewards"  #: the shipped reward YAMLs
