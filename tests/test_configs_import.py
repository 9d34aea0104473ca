"""The trainers' configs import and check themselves without torch (training/configs.py)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]

CHILD = textwrap.dedent("""
    import sys
    sys.modules["torch"] = None  # any `import torch` now raises ImportError
    from training.configs import ConfigError, DistillConfig, GRPOConfig, PretrainConfig
    grpo = GRPOConfig.from_yaml("training/configs/shapes_grpo_t2i.yaml", ["steps=3"])
    assert (grpo.steps, grpo.task) == (3, "t2i"), grpo
    assert DistillConfig.from_yaml("training/configs/shapes_distill.yaml").tasks() == ["t2i", "edit"]
    assert PretrainConfig.from_yaml("training/configs/shapes_pretrain.yaml").steps > 0
    assert PretrainConfig.from_yaml("training/configs/shapes_pretrain_even.yaml").init == "data/models/shapes-base"
    try:
        GRPOConfig.from_yaml("training/configs/shapes_grpo_t2i.yaml", ["steps=-5"])
    except ConfigError as exc:
        print("refused:", exc)
    heavy = sorted(m for m, mod in sys.modules.items() if mod is not None and m.split(".")[0] in ("torch", "diffusers", "transformers", "gradio"))
    print("heavy:", heavy)
""")


def test_configs_import_and_validate_without_torch():
    out = subprocess.run([sys.executable, "-c", CHILD], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "refused: steps must be >= 0" in out.stdout
    assert "heavy: []" in out.stdout


def test_trainers_reexport_the_same_classes():
    from training import configs, distill, grpo, pretrain
    from training.common import ConfigError, load_config

    assert grpo.GRPOConfig is configs.GRPOConfig and distill.DistillConfig is configs.DistillConfig
    assert pretrain.PretrainConfig is configs.PretrainConfig and grpo.OBJECTIVES == configs.OBJECTIVES
    assert ConfigError is configs.ConfigError and load_config is configs.load_config


def test_task_names_are_defined_once():
    from app import gallery
    from qwenrl.models import base as models_base
    from qwenrl.rewards import base as rewards_base
    from qwenrl.tasks import TASKS
    from qwenrl.world import prompt_sets
    from training import common, configs, judge

    assert all(m.TASKS is TASKS for m in (gallery, models_base, rewards_base, prompt_sets, common, configs, judge))


def test_the_studio_check_answers_with_the_trainers_message():
    """``python -m training.configs check`` (what the studio runs before it queues a job, without
    torch) refuses a bad config with the message the trainer's own config class raises."""
    import json

    import pytest

    from training.configs import JOB_CONFIGS, ConfigError

    cases = [("grpo", "training/configs/shapes_grpo_t2i.yaml", ["group_size=1"]),
             ("grpo", "training/configs/shapes_grpo_t2i.yaml", ["objective=ppo"]),
             ("grpo", "training/configs/shapes_grpo_t2i.yaml", ["lr_schedule=step"]),
             ("distill", "training/configs/shapes_distill.yaml", ["routing=vote"]),
             ("distill", "training/configs/shapes_distill.yaml", ["train_batch_size=0"])]
    for kind, config, sets in cases:
        with pytest.raises(ConfigError) as raised:
            JOB_CONFIGS[kind].from_yaml(config, sets)
        out = subprocess.run([sys.executable, "-m", "training.configs", "check", "--kind", kind, "--config", config,
                              *[a for s in sets for a in ("--set", s)]], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
        assert out.returncode == 2, out.stderr
        assert json.loads(out.stdout.strip().splitlines()[-1]) == {"error": str(raised.value)}
