"""Per-family calibration of the GRPO prompt mix from measured pass rates.

A family's share of each step's prompts decides how much of the update it gets. Drawn
uniformly, families the model already solves fill the batch with groups that all pass (and are
dropped: they carry no group-relative signal); weighted by hand toward the hard ones, the rest
are drawn so rarely that nothing holds them and they are forgotten. The calibration sets each
family's share from the model's measured pass rate p on the ``train`` split:

    signal(p) = 2·p·(1 − p)                    the mean |r − p| of a 0/1 reward: how much
                                               group-relative advantage a sample of the family
                                               carries on average
    share_f   = (1 − floor)·signal_f / Σ signal + floor / F

``floor`` (a share spread evenly over the F families) keeps every family in every few steps, so a
solved family is still seen, and still anchored, as the policy moves. A family at p = 0.5 gets
the most weight; one at p = 0.97 gets about a sixth of that, plus the floor.

    qwenrl train calibrate --config training/configs/shapes_grpo_edit.yaml            # measure, print
    qwenrl train calibrate --config training/configs/shapes_grpo_edit.yaml --write    # and write it

``--write`` replaces the config's ``family_weights:`` line (comments elsewhere are kept) and
puts the measured pass rates in a comment above it, so the config says where its mix came from.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from qwenrl.world.grammar import EDIT_FAMILIES, T2I_FAMILIES

DEFAULT_FLOOR = 0.3


def family_signal(pass_rate: float) -> float:
    """2·p·(1 − p): the mean absolute group-relative advantage of a 0/1 reward at pass rate p."""
    if not 0.0 <= pass_rate <= 1.0:
        raise ValueError(f"a pass rate lies in [0, 1], got {pass_rate}")
    return 2.0 * pass_rate * (1.0 - pass_rate)


def calibrated_family_weights(pass_rates: dict[str, float], floor: float = DEFAULT_FLOOR, digits: int = 3) -> dict[str, float]:
    """Prompt shares (summing to 1, rounded to ``digits``) from per-family pass rates (module
    docstring). A family every sample passes or fails gets only the floor; if all do, the mix is
    uniform."""
    if not pass_rates:
        raise ValueError("no families to calibrate")
    if not 0.0 <= floor <= 1.0:
        raise ValueError(f"floor is a share in [0, 1], got {floor}")
    signal = {f: family_signal(p) for f, p in pass_rates.items()}
    total, n = sum(signal.values()), len(signal)
    if total <= 0:
        return {f: round(1.0 / n, digits) for f in signal}
    return {f: round((1 - floor) * s / total + floor / n, digits) for f, s in signal.items()}


def families_of(task: str) -> tuple[str, ...]:
    return T2I_FAMILIES if task == "t2i" else EDIT_FAMILIES


def measure_pass_rates(model: str | Path, task: str, *, samples_per_prompt: int = 4, limit: int | None = 280,
                       num_steps: int | None = None, guidance_scale: float | None = None, seed: int = 0,
                       progress: bool = True) -> dict[str, Any]:
    """The model's strict pass rate per family on ``limit`` prompts of the task's ``train`` split
    (evenly spaced, every family represented), ``samples_per_prompt`` samples each, with the
    model's own sampling settings unless given (a config's rollouts may differ; pass theirs)."""
    from qwenrl.evaluation import evaluate
    from qwenrl.models import load_policy
    from training.common import resolve_path

    policy = load_policy(resolve_path(model))
    res = evaluate(policy, task, "train", samples_per_prompt=samples_per_prompt, num_steps=num_steps,
                   guidance_scale=guidance_scale, seed=seed, limit=limit, progress=progress)
    return {"families": res["families"], "overall": res["overall"], "n_images": res["n_images"],
            "num_steps": res["num_steps"], "guidance_scale": res["guidance_scale"]}


_WEIGHTS_LINE = re.compile(r"^family_weights:.*$", re.MULTILINE)
_CALIBRATION_COMMENT = re.compile(r"^# calibrated .*\n(?:# .*pass rates.*\n)?", re.MULTILINE)


def write_family_weights(config_path: str | Path, weights: dict[str, float], pass_rates: dict[str, float], note: str) -> None:
    """Replace the ``family_weights:`` line of a YAML config (or append one), with a comment
    above it giving the measured pass rates; the rest of the file is left as it is."""
    path = Path(config_path)
    text = path.read_text()
    flow = "{" + ", ".join(f"{f}: {w:g}" for f, w in weights.items()) + "}"
    rates = ", ".join(f"{f} {100 * p:.1f}%" for f, p in pass_rates.items())
    block = f"# calibrated {note}\n# train-split pass rates: {rates}\nfamily_weights: {flow}"
    text = _CALIBRATION_COMMENT.sub("", text)
    text = _WEIGHTS_LINE.sub(lambda _: block, text, count=1) if _WEIGHTS_LINE.search(text) else text.rstrip("\n") + "\n" + block + "\n"
    path.write_text(text)
