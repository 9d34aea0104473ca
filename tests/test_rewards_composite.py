"""Composite rewards: weighting, renormalisation, per-family weights, the cache, bad configs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from qwenrl.rewards import (
    JUDGE_KINDS,
    Component,
    CompositeReward,
    Judge,
    Judgement,
    RewardCache,
    RewardConfigError,
    Sample,
    judge_cached,
    judge_human_agreement,
    load_reward,
    reward_stats,
)
from qwenrl.world.grammar import T2IPrompt, sample_edit
from qwenrl.world.scene import Obj, Scene, render

CONFIGS = Path(__file__).resolve().parents[1] / "training" / "configs" / "rewards"


class Fixed(Judge):
    """Answers a fixed score (None allowed) and counts the samples it judged."""

    kind = "fixed"

    @dataclass
    class Config:
        score: float | None = 0.5

    def __init__(self, name=None, config=None):
        super().__init__(name, config)
        self.calls = 0

    def __call__(self, samples):
        self.calls += len(samples)
        s = self.options.score
        return [Judgement(s, f"{self.name} says {s}", {} if s is None else {"sub": s / 2}, self.name) for _ in samples]


def sample(family="single", x=4, task="t2i"):
    img = render(Scene("white", (Obj("circle", "red", "small", x, 4),)))
    if task == "edit":
        return Sample(img, "make the red circle red", task="edit", source=img, family=family)
    return Sample(img, "a red circle", family=family)


def reward(scores_weights, category_weights=None, cache=None, task="t2i"):
    comps = [Component(name, Fixed(name, {"score": s}), w) for name, (s, w) in scores_weights.items()]
    return CompositeReward(comps, task=task, name="r", category_weights=category_weights, cache=cache)


def test_weighted_mean_parts_and_rationale():
    r = reward({"a": (0.8, 0.6), "b": (0.2, 0.4)})
    [j] = r([sample()])
    assert j.score == pytest.approx(0.6 * 0.8 + 0.4 * 0.2)
    assert j.parts == {"a": 0.8, "a/sub": 0.4, "b": 0.2, "b/sub": 0.1}
    assert j.judge == "r"
    lines = j.rationale.splitlines()
    assert lines[0] == "r = 0.560, weighted mean of 2 of 2 components (default weights)."
    assert lines[1] == "[a] 0.800, weight 0.6 (share 0.60): a says 0.8"
    assert lines[2] == "[b] 0.200, weight 0.4 (share 0.40): b says 0.2"


def test_none_component_is_left_out_and_weights_renormalised():
    r = reward({"a": (0.8, 0.5), "b": (None, 0.3), "c": (0.2, 0.2)})
    [j] = r([sample()])
    assert j.score == pytest.approx((0.5 * 0.8 + 0.2 * 0.2) / 0.7)
    assert "b" not in j.parts
    assert "[b] no score, weight 0.3, left out: b says None" in j.rationale
    assert "Left out: b; weights renormalised over a, c (sum 0.7)." in j.rationale
    assert "2 of 3 components" in j.rationale


def test_all_none_gives_none():
    [j] = reward({"a": (None, 1.0)})([sample()])
    assert j.score is None and "no score" in j.rationale


def test_zero_weight_component_is_shown_but_not_counted():
    [j] = reward({"a": (0.8, 1.0), "strict": (0.0, 0.0)})([sample()])
    assert j.score == pytest.approx(0.8) and j.parts["strict"] == 0.0
    assert "[strict] 0.000, weight 0:" in j.rationale


def test_per_family_weights():
    r = reward({"a": (1.0, 0.5), "b": (0.0, 0.5)}, category_weights={"counting": {"a": 0.9, "b": 0.1}})
    plain, counting = r([sample("single"), sample("counting")])
    assert plain.score == pytest.approx(0.5)
    assert counting.score == pytest.approx(0.9)
    assert "(weights for family 'counting')" in counting.rationale
    assert "(default weights)" in plain.rationale
    with pytest.raises(RewardConfigError, match="unknown component"):
        reward({"a": (1.0, 1.0)}, category_weights={"counting": {"z": 1.0}})


def test_samples_of_the_other_task_get_none():
    r = reward({"a": (1.0, 1.0)})
    t2i, edit = r([sample(), sample(task="edit")])
    assert t2i.score == 1.0
    assert edit.score is None and "a t2i reward, given a edit sample" in edit.rationale


def test_reward_stats_for_logging():
    r = reward({"a": (0.8, 0.5), "b": (None, 0.5)})
    stats = reward_stats(r([sample(), sample()]))
    assert stats["rewards/total/mean"] == pytest.approx(0.8)
    assert stats["rewards/a/mean"] == pytest.approx(0.8) and "rewards/b/mean" not in stats


# ---------------------------------------------------------------------------------------
# Cache
# ---------------------------------------------------------------------------------------


def test_cache_answers_the_same_image_once():
    cache = RewardCache()
    r = reward({"a": (0.7, 1.0)}, cache=cache)
    first = r([sample(x=4), sample(x=10), sample(x=4)])  # the third repeats the first
    judge = r.components[0].judge
    assert judge.calls == 2
    assert cache.stats() == {"hits": 0, "misses": 3, "size": 2}
    second = r([sample(x=4), sample(x=10)])
    assert judge.calls == 2 and cache.stats()["hits"] == 2
    assert [j.score for j in first] == [0.7] * 3 and [j.score for j in second] == [0.7] * 2
    assert r.metrics["cache/hits"] == 2


def test_cache_key_covers_prompt_source_and_judge_config():
    cache = RewardCache()
    a, b = Fixed("a", {"score": 0.1}), Fixed("a", {"score": 0.2})
    s = sample()
    assert judge_cached(a, [s], cache)[0].score == 0.1
    assert judge_cached(b, [s], cache)[0].score == 0.2  # another config: another entry
    other_prompt = Sample(s.image, "a blue circle")
    judge_cached(a, [other_prompt], cache)
    assert a.calls == 2


def test_sqlite_cache_persists_across_instances(tmp_path):
    path = tmp_path / "judgements.sqlite"
    judge = Fixed("a", {"score": 0.3})
    c1 = RewardCache(path)
    judge_cached(judge, [sample()], c1)
    c1.close()
    c2 = RewardCache(path)
    fresh = Fixed("a", {"score": 0.3})
    [j] = judge_cached(fresh, [sample()], c2)
    assert fresh.calls == 0 and j.score == 0.3 and j.parts == {"sub": 0.15}
    assert c2.stats()["hits"] == 1


def test_lru_evicts_the_oldest():
    cache = RewardCache(max_items=2)
    judge = Fixed("a")
    for x in (2, 6, 10):
        judge_cached(judge, [sample(x=x)], cache)
    judge_cached(judge, [sample(x=2)], cache)
    assert judge.calls == 4 and len(cache) == 2


def test_transient_judgements_are_not_cached():
    class Flaky(Fixed):
        def __call__(self, samples):
            self.calls += len(samples)
            return [Judgement(None, "timed out", {}, self.name, transient=True) for _ in samples]

    cache = RewardCache()
    judge = Flaky("f")
    judge_cached(judge, [sample()], cache)
    judge_cached(judge, [sample()], cache)
    assert judge.calls == 2 and len(cache) == 0


# ---------------------------------------------------------------------------------------
# Loading from YAML, and bad configs
# ---------------------------------------------------------------------------------------


def test_bundled_configs_load():
    t2i = load_reward(CONFIGS / "shapes_t2i.yaml")
    assert t2i.task == "t2i" and [c.name for c in t2i.components] == ["alignment", "aesthetics", "fidelity", "strict"]
    assert t2i.weights_for("counting")["aesthetics"] == 0.25
    edit = load_reward(CONFIGS / "shapes_edit.yaml")
    assert edit.task == "edit"
    for name in ("vlm_t2i_served.yaml", "vlm_edit_served.yaml"):
        r = load_reward(CONFIGS / name)
        assert all(c.judge.kind == "vlm_served" for c in r.components)


def test_shapes_composite_end_to_end_on_an_edit():
    task = sample_edit(np.random.default_rng(0), "recolor")
    r = load_reward(CONFIGS / "shapes_edit.yaml")
    done, nothing = r([Sample.from_spec(render(task.target), task), Sample.from_spec(render(task.source), task)])
    assert done.score == 1.0 and done.parts["strict"] == 1.0
    assert nothing.score < 0.6 and nothing.parts["instruction"] == 0.0 and nothing.parts["strict"] == 0.0
    assert "[instruction]" in done.rationale and "[identity]" in done.rationale and "Strict check:" in done.rationale


def test_shapes_t2i_composite_on_a_prompt_with_family_weights():
    prompt = T2IPrompt("two red circles", "counting", {"objects": [{"color": "red", "shape": "circle", "count": 2}], "relation": None, "background": None})
    img = render(Scene("white", (Obj("circle", "red", "small", 2, 2), Obj("circle", "red", "small", 20, 20))))
    [j] = load_reward(CONFIGS / "shapes_t2i.yaml")([Sample.from_spec(img, prompt)])
    assert j.score == 1.0 and "weights for family 'counting'" in j.rationale


BASE = {"task": "t2i", "components": {"alignment": {"judge": "shapes_alignment", "weight": 1.0}}}


@pytest.mark.parametrize(
    "patch, message",
    [
        ({"components": {"x": {"judge": "magic_judge"}}}, "unknown judge kind 'magic_judge'; known kinds: clip_preference"),
        ({"components": {"x": {"judge": "shapes_alignment", "weight": -0.5}}}, "weight -0.5 is negative"),
        ({"components": {"x": {"judge": "shapes_alignment", "weight": "high"}}}, "weight must be a number"),
        ({"components": {}}, "`components` must be a non-empty mapping"),
        ({"components": {"x": {"judge": "shapes_alignment", "weight": 0}}}, "every component has weight 0"),
        ({"components": {"x": {"judge": "shapes_alignment", "wieght": 1}}}, "unknown key(s) ['wieght']"),
        ({"components": {"x": {"weight": 1}}}, "missing `judge`"),
        ({"components": {"x": {"judge": "shapes_alignment", "config": {"colour": 1}}}}, "unknown option(s) ['colour']"),
        ({"components": {"x": {"judge": "shapes_instruction"}}}, "scores edit samples, but this reward is for t2i"),
        ({"components": {"a/b": {"judge": "shapes_alignment"}}}, "without '/'"),
        ({"task": "video"}, "`task` must be one of"),
        ({"weights": {}}, "unknown key(s) ['weights']"),
        ({"category_weights": {"counting": {"nope": 1}}}, "unknown component(s) ['nope']"),
        ({"category_weights": {"counting": {"alignment": -1}}}, "is negative"),
        (
            {"components": {"v": {"judge": "vlm_served", "config": {"model": "m", "rubric": "no_such_rubric"}}}},
            "rubric file",
        ),
    ],
)
def test_bad_configs_fail_clearly(patch, message):
    with pytest.raises(RewardConfigError) as exc:
        load_reward({**BASE, **patch})
    assert message in str(exc.value)


def test_bad_files(tmp_path):
    with pytest.raises(RewardConfigError, match="not found"):
        load_reward(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("task: t2i\ncomponents: [unclosed")
    with pytest.raises(RewardConfigError, match="invalid YAML"):
        load_reward(bad)


def test_rubric_paths_are_relative_to_the_yaml(tmp_path):
    (tmp_path / "rubrics").mkdir()
    (tmp_path / "rubrics" / "strict.txt").write_text("Judge {prompt} strictly.")
    cfg = tmp_path / "r.yaml"
    cfg.write_text(
        "task: t2i\ncomponents:\n  v:\n    judge: vlm_served\n    config: {model: m, rubric: rubrics/strict.txt}\n"
    )
    r = load_reward(cfg)
    assert r.components[0].judge.rubric.path == tmp_path / "rubrics" / "strict.txt"
    missing = tmp_path / "m.yaml"
    missing.write_text("task: t2i\ncomponents:\n  v:\n    judge: vlm_served\n    config: {model: m, rubric: rubrics/none.txt}\n")
    with pytest.raises(RewardConfigError, match="none.txt not found"):
        load_reward(missing)


def test_every_registered_kind_imports():
    from qwenrl.rewards.base import judge_class

    for kind in JUDGE_KINDS:
        assert judge_class(kind).kind == kind


def test_optional_judges_need_local_weights(tmp_path):
    for kind in ("clip_preference", "face_identity"):
        with pytest.raises(RewardConfigError, match="does not exist"):
            load_reward({"task": "edit" if kind == "face_identity" else "t2i",
                         "components": {"x": {"judge": kind, "config": {"model_path": str(tmp_path / "none")}}}})


def test_face_identity_policy_without_faces(tmp_path):
    from qwenrl.rewards.optional import FaceIdentity

    judge = FaceIdentity(config={"model_path": str(tmp_path)})
    face = np.ones(4, np.float32) / 2
    s = sample(task="edit")
    judge.embed = lambda image: None
    assert judge([s])[0].score is None  # no face in the source: does not apply
    calls = iter([face, None])
    judge.embed = lambda image: next(calls)
    assert judge([s])[0].score == 0.0  # the face was lost
    judge.embed = lambda image: face
    assert judge([s])[0].score == pytest.approx(1.0)


# ---------------------------------------------------------------------------------------
# Agreement with people
# ---------------------------------------------------------------------------------------


def test_judge_human_agreement_counts_and_pairs():
    votes = [
        {"model_a": "base", "model_b": "grpo", "winner": "model_b", "sample_a": "s1", "sample_b": "s2"},  # agree
        {"model_a": "grpo", "model_b": "base", "winner": "model_a", "sample_a": "s3", "sample_b": "s4"},  # disagree
        {"model_a": "base", "model_b": "grpo", "winner": "tie", "sample_a": "s1", "sample_b": "s2"},  # human tie
        {"model_a": "base", "model_b": "grpo", "winner": "model_a", "sample_a": "s5", "sample_b": "s6"},  # judge tie
        {"model_a": "base", "model_b": "distill", "winner": "model_a", "sample_a": "s1", "sample_b": "s9"},  # missing
        {"model_a": "distill", "model_b": "base", "winner": "model_a", "sample_a": "s7", "sample_b": "s1"},  # agree
    ]
    scores = {"s1": 0.2, "s2": 0.9, "s3": 0.1, "s4": 0.5, "s5": 0.5, "s6": 0.5,
              "s7": Judgement(0.8, "", {}, "j"), "s9": None}
    out = judge_human_agreement(votes, scores)
    o = out["overall"]
    assert (o["votes"], o["compared"], o["agree"], o["human_ties"], o["judge_ties"], o["missing"]) == (6, 3, 2, 1, 1, 1)
    assert o["agreement"] == pytest.approx(2 / 3)
    assert out["per_pair"]["base vs grpo"]["agreement"] == pytest.approx(0.5)
    assert out["per_pair"]["base vs distill"]["compared"] == 1 and out["per_pair"]["base vs distill"]["agreement"] == 1.0
    with pytest.raises(ValueError, match="unknown winner"):
        judge_human_agreement([{**votes[0], "winner": "left"}], scores)


def test_every_judge_kind_and_vlm_option_is_documented():
    import dataclasses

    from qwenrl.rewards.vlm import VLMLocalJudge, VLMServedJudge

    doc = (Path(__file__).resolve().parents[1] / "docs" / "rewards.md").read_text()
    for kind in JUDGE_KINDS:
        assert f"`{kind}`" in doc, kind
    for cls in (VLMLocalJudge, VLMServedJudge):
        for f in dataclasses.fields(cls.Config):
            if f.name != "rubric_dir":
                assert f"{f.name}:" in doc, f"{cls.kind}.{f.name}"


@pytest.mark.parametrize("name", ["shapes_edit", "shapes_edit_rank", "shapes_edit_looks"])
def test_editing_rewards_rank_a_clean_edit_above_a_notched_one_above_a_wrong_one(name):
    """A notched square that the strict checker still passes scores below the clean render (the
    editing composite's fidelity part sees it) and above an edit that was not made."""
    from qwenrl.world.check import check_image
    from qwenrl.world.grammar import EditTask

    source = Scene("white", (Obj("square", "red", "large", 4, 4), Obj("circle", "green", "small", 22, 20)))
    target = Scene("white", (Obj("square", "blue", "large", 4, 4), Obj("circle", "green", "small", 22, 20)))
    task = EditTask("make the red square blue", "recolor", source, target, 0, ((1, 1),))
    clean = render(target)
    notched = clean.copy()
    notched[4:8, 4:8] = clean[0, 0]  # a 4-pixel bite out of the square's corner
    assert check_image(task, clean).passed and check_image(task, notched).passed
    reward = load_reward(CONFIGS / f"{name}.yaml", cache=None)
    good, bitten, unchanged = reward([Sample.from_spec(im, task, source=render(source)) for im in (clean, notched, render(source))])
    assert good.score == 1.0 > bitten.score > unchanged.score
    assert bitten.parts["fidelity"] < 1.0 and bitten.parts["strict"] == 1.0


REWARD_CONFIGS = sorted((Path(__file__).resolve().parents[1] / "training" / "configs" / "rewards").glob("*.yaml"))


@pytest.mark.parametrize("path", REWARD_CONFIGS, ids=[p.name for p in REWARD_CONFIGS])
def test_every_bundled_reward_config_loads_with_its_files_in_place(path):
    """Every reward YAML the repo ships validates, and the judge folders it names exist."""
    from qwenrl.rewards import load_reward

    reward = load_reward(path)
    assert reward.config["components"], path.name
    for name, part in reward.config["components"].items():
        folder = part["judge"].get("model_path")
        if folder:  # load_reward resolves it against the YAML's folder
            assert Path(folder).is_dir(), (path.name, name, folder)
