"""Per-family calibration of the GRPO prompt mix: the maths by hand, the config rewrite, the CLI."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from training.calibrate import calibrated_family_weights, family_signal, write_family_weights
from training.common import draw_items


def test_signal_is_the_mean_absolute_advantage_of_a_binary_reward():
    assert family_signal(0.5) == 0.5
    assert family_signal(0.0) == 0.0 and family_signal(1.0) == 0.0
    assert family_signal(0.9) == pytest.approx(0.18)
    rng = np.random.default_rng(0)  # the mean |r − p| of 0/1 rewards passing with probability p
    r = rng.random(200_000) < 0.25
    assert np.abs(r - r.mean()).mean() == pytest.approx(family_signal(0.25), abs=2e-3)
    with pytest.raises(ValueError):
        family_signal(1.5)


def test_calibrated_weights_by_hand():
    # signals: move 2·.25·.75 = .375, remove 2·.95·.05 = .095, background 0 → total .47
    # share = 0.7 · signal / .47 + 0.3 / 3
    w = calibrated_family_weights({"move": 0.25, "remove": 0.95, "background": 1.0}, floor=0.3)
    assert w == {"move": round(0.7 * 0.375 / 0.47 + 0.1, 3), "remove": round(0.7 * 0.095 / 0.47 + 0.1, 3), "background": 0.1}
    assert w["move"] == 0.659 and w["remove"] == 0.241
    assert sum(w.values()) == pytest.approx(1.0, abs=2e-3)
    # floor 0: proportional to the signal alone; floor 1: uniform
    assert calibrated_family_weights({"a": 0.5, "b": 0.9}, floor=0.0) == {"a": round(0.5 / 0.68, 3), "b": round(0.18 / 0.68, 3)}
    assert calibrated_family_weights({"a": 0.5, "b": 0.9}, floor=1.0) == {"a": 0.5, "b": 0.5}
    # every family solved (or hopeless): nothing to prefer
    assert calibrated_family_weights({"a": 1.0, "b": 0.0}) == {"a": 0.5, "b": 0.5}
    with pytest.raises(ValueError, match="floor"):
        calibrated_family_weights({"a": 0.5}, floor=2.0)
    with pytest.raises(ValueError, match="no families"):
        calibrated_family_weights({})


def test_writing_the_weights_keeps_the_rest_of_the_config(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("# head comment\ntask: edit\nfamily_weights: {move: 1}   # old\nsteps: 3  # keep me\n")
    write_family_weights(path, {"move": 0.6, "add": 0.4}, {"move": 0.25, "add": 0.8}, "by hand")
    text = path.read_text()
    assert "# head comment" in text and "steps: 3  # keep me" in text and "# old" not in text
    assert "# calibrated by hand\n# train-split pass rates: move 25.0%, add 80.0%\nfamily_weights: {move: 0.6, add: 0.4}" in text
    assert yaml.safe_load(text)["family_weights"] == {"move": 0.6, "add": 0.4}
    write_family_weights(path, {"move": 1.0}, {"move": 0.3}, "again")  # rewriting replaces the old comment too
    assert text.count("# calibrated") == 1 and path.read_text().count("# calibrated") == 1
    assert yaml.safe_load(path.read_text())["family_weights"] == {"move": 1.0}
    bare = tmp_path / "bare.yaml"
    bare.write_text("task: edit")
    write_family_weights(bare, {"move": 1.0}, {"move": 0.3}, "appended")
    assert yaml.safe_load(bare.read_text()) == {"task": "edit", "family_weights": {"move": 1.0}}


def test_no_weights_means_uniform_over_families():
    """The grammar redraws a family when its scene does not fit, which under-draws moves; the
    trainers' draws pick the family first."""
    items = [it for step in range(20) for it in draw_items("edit", 70, seed=0, step=step)]
    counts = {f: sum(it.family == f for it in items) / len(items) for f in {it.family for it in items}}
    assert len(counts) == 7 and all(abs(share - 1 / 7) < 0.03 for share in counts.values()), counts
    only = draw_items("edit", 30, seed=0, step=0, family_weights={"move": 1.0})
    assert {it.family for it in only} == {"move"} and all(it.split == "train" for it in only)
