"""Metric names, one scheme for every fine-tuning run's ``metrics.jsonl`` (as cleanrl and trl name theirs).

Each row has ``step`` and names under four prefixes:

* ``rewards/…`` — what the judges said of the step's samples: ``rewards/total/{mean,std,frac_none}``,
  each judge's ``rewards/{judge}/mean``, and ``rewards/frac_zero_std`` (groups whose samples
  all scored the same);
* ``losses/…`` — what the update minimised and its diagnostics: ``losses/total``, ``losses/kl``,
  Flow-GRPO's ``losses/{policy,approx_kl,clipfrac,ratio_deviation}``, the forward process's
  ``losses/nft_{pos,neg,optimality,old_gap}``, the distillation term's ``losses/distill`` and
  ``losses/distill/{task}``;
* ``charts/…`` — how the run went: ``charts/lr``, ``charts/grad_norm``, ``charts/updates``,
  ``charts/samples_per_s``, ``charts/{step,rollout,reward,update}_seconds``, the shares of the
  batch kept (``charts/frac_groups_filtered``, ``charts/frac_samples_trained``,
  ``charts/guided_fraction``) and ``charts/nft_old_decay``;
* ``eval/…`` — held-out evaluations: ``eval/accuracy``, ``eval/families/{family}``, the reward's
  ``eval/rewards/…`` and a watched second reward's ``eval/monitor/rewards/…`` (distillation:
  the same under ``eval/{task}/…``).

Runs written before the scheme used other names (``reward/mean``, ``loss``, ``nft/loss_pos``,
``step_seconds``…); :func:`read_metrics` gives their rows under the current names, so old run
folders still plot. Nothing here imports torch: the studio reads runs with it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

#: the names runs used before the scheme → the names they have now
RENAMED: dict[str, str] = {
    "frac_reward_zero_std": "rewards/frac_zero_std",
    "loss": "losses/total",
    "kl": "losses/kl",
    "policy_loss": "losses/policy",
    "approx_kl": "losses/approx_kl",
    "clipfrac": "losses/clipfrac",
    "ratio_deviation": "losses/ratio_deviation",
    "nft/loss_pos": "losses/nft_pos",
    "nft/loss_neg": "losses/nft_neg",
    "nft/optimality_mean": "losses/nft_optimality",
    "nft/velocity_gap": "losses/nft_old_gap",
    "nft/old_decay": "charts/nft_old_decay",
    "distill/velocity_gap": "losses/distill",
    "grad_norm": "charts/grad_norm",
    "updates": "charts/updates",
    "guided_fraction": "charts/guided_fraction",
    "lr": "charts/lr",
    "samples_per_s": "charts/samples_per_s",
    "step_seconds": "charts/step_seconds",
    "rollout_seconds": "charts/rollout_seconds",
    "reward_seconds": "charts/reward_seconds",
    "update_seconds": "charts/update_seconds",
    "frac_groups_filtered": "charts/frac_groups_filtered",
    "frac_samples_trained": "charts/frac_samples_trained",
}
# ``reward/mean`` (also under eval/, eval/monitor/, eval/{task}/) was the total's: now rewards/total/…
_OLD_TOTAL = re.compile(r"(^|/)reward/(mean|std|frac_none)$")
_OLD_DISTILL_TASK = re.compile(r"^distill/velocity_gap/(.+)$")


def current_name(key: str) -> str:
    """``key`` under the current scheme (a current name is returned as it is)."""
    if key in RENAMED:
        return RENAMED[key]
    if _OLD_TOTAL.search(key):
        return _OLD_TOTAL.sub(r"\1rewards/total/\2", key)
    task = _OLD_DISTILL_TASK.match(key)
    return f"losses/distill/{task.group(1)}" if task else key


def current_row(row: dict[str, Any]) -> dict[str, Any]:
    """A metrics row with every name under the current scheme."""
    return {current_name(k): v for k, v in row.items()}


def read_metrics(path: str | Path, limit: int = 100_000) -> list[dict[str, Any]]:
    """The rows of a ``metrics.jsonl`` under the current names; a half-written last line (a run
    still writing, or stopped) is skipped, and a missing file has no rows."""
    rows: list[dict[str, Any]] = []
    try:
        with open(path) as fh:
            for line in fh:
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if isinstance(row, dict):
                    rows.append(current_row(row))
                    if len(rows) >= limit:
                        break
    except OSError:
        pass
    return rows
