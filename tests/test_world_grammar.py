"""The grammar of prompts and edits, its splits, and the committed prompt sets."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest

from qwenrl.world.grammar import (
    COMPOSITIONAL_PAIRS,
    COMPOSITIONAL_RELATIONS,
    EDIT_FAMILIES,
    T2I_FAMILIES,
    VOCAB,
    EditTask,
    GrammarError,
    T2IPrompt,
    check_words,
    sample_edit,
    sample_t2i_prompt,
    sample_t2i_prompt_in_split,
    scene_for_prompt,
)
from qwenrl.world.prompt_sets import (
    SET_SIZES,
    SPLITS,
    TASKS,
    balanced_counts,
    build_edit_set,
    load_prompt_set,
    prompt_set_path,
)
from qwenrl.world.scene import boxes_clear, fits


def relation_triple(p: T2IPrompt) -> tuple[str, str, str] | None:
    rel = p.spec.get("relation")
    if not rel:
        return None
    objs = p.spec["objects"]
    return (objs[rel["a"]]["shape"], rel["rel"], objs[rel["b"]]["shape"])


@pytest.fixture(scope="module")
def sets() -> dict[tuple[str, str], list]:
    return {(t, s): load_prompt_set(t, s) for t in TASKS for s in SPLITS}


# ---------------------------------------------------------------------------------------
# Words
# ---------------------------------------------------------------------------------------


def test_unknown_words_are_named():
    with pytest.raises(GrammarError, match=r"unknown word\(s\) \['dog', 'pink'\]"):
        check_words("a pink dog and a red circle")
    assert issubclass(GrammarError, ValueError)
    assert check_words("A Red Circle") == ["a", "red", "circle"]


def test_every_generated_text_is_in_the_vocabulary():
    rng = np.random.default_rng(0)
    for _ in range(300):
        check_words(sample_t2i_prompt(rng).text)
        check_words(sample_edit(rng).instruction)
    assert len(VOCAB) == len(set(VOCAB))


def test_unknown_families_are_rejected():
    rng = np.random.default_rng(0)
    with pytest.raises(GrammarError, match="unknown text-to-image family"):
        sample_t2i_prompt(rng, "landscape")
    with pytest.raises(GrammarError, match="unknown edit family"):
        sample_edit(rng, family="blur")


# ---------------------------------------------------------------------------------------
# Prompts, scenes and edits
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("family", T2I_FAMILIES)
def test_prompts_lay_out_valid_scenes(family):
    rng = np.random.default_rng(1)
    for _ in range(40):
        p = sample_t2i_prompt(rng, family)
        assert p.family == family and T2IPrompt.from_dict(json.loads(json.dumps(p.to_dict()))) == p
        scene = scene_for_prompt(p, rng)
        assert len(scene.objects) == sum(o["count"] for o in p.spec["objects"])
        objs = scene.objects
        assert all(fits(o, objs[:i] + objs[i + 1 :]) for i, o in enumerate(objs))


@pytest.mark.parametrize("family", EDIT_FAMILIES)
def test_edits_change_only_what_they_say(family):
    rng = np.random.default_rng(2)
    for _ in range(30):
        task = sample_edit(rng, family=family)
        assert EditTask.from_dict(json.loads(json.dumps(task.to_dict()))) == task
        src, tgt = task.source, task.target
        for si, ti in task.preserved:
            assert src.objects[si] == tgt.objects[ti]
        # Objects are told apart by colour and shape alone, so an instruction names one.
        assert len({(o.color, o.shape) for o in src.objects}) == len(src.objects)
        assert len({(o.color, o.shape) for o in tgt.objects}) == len(tgt.objects)
        assert all(boxes_clear(a, b) for i, a in enumerate(tgt.objects) for b in tgt.objects[i + 1 :])
        changed = len(src.objects) - len(task.preserved)
        assert changed == {"background": 0, "add": 0}.get(family, 1)
        assert (src.background != tgt.background) == (family == "background")


def test_splits_of_generated_prompts():
    rng = np.random.default_rng(3)
    for split in SPLITS:
        for _ in range(30):
            p = sample_t2i_prompt_in_split(rng, split)
            assert p.split == split
            held_out = bool(p.pairs & COMPOSITIONAL_PAIRS) or relation_triple(p) in COMPOSITIONAL_RELATIONS
            assert held_out == (split == "compositional")


# ---------------------------------------------------------------------------------------
# Prompt sets
# ---------------------------------------------------------------------------------------


def test_prompt_sets_have_their_sizes_and_balanced_families(sets):
    for (task, split), items in sets.items():
        assert len(items) == SET_SIZES[split], (task, split)
        assert all(item.split == split for item in items), (task, split)
        families = Counter(item.family for item in items)
        assert set(families) == set(T2I_FAMILIES if task == "t2i" else EDIT_FAMILIES)
        if task == "edit" or split == "train":
            assert max(families.values()) - min(families.values()) <= 1, (task, split, families)


def test_test_and_compositional_prompts_are_distinct(sets):
    for split in ("test", "compositional"):
        texts = [p.text for p in sets["t2i", split]]
        assert len(set(texts)) == len(texts)
        keys = [(t.instruction, json.dumps(t.source.to_dict())) for t in sets["edit", split]]
        assert len(set(keys)) == len(keys)


def test_train_and_test_share_no_text(sets):
    for task in TASKS:
        texts = {s: {item.text for item in sets[task, s]} for s in SPLITS}
        assert not texts["train"] & texts["test"]
    t2i = {s: {p.text for p in sets["t2i", s]} for s in SPLITS}
    assert not t2i["compositional"] & (t2i["train"] | t2i["test"])
    # A compositional edit is one whose scenes hold a held-out pair; its instruction may
    # well be a training instruction ("add a small red circle" beside a cyan square).


def test_compositional_pairs_and_relations_never_in_train(sets):
    for task in TASKS:
        for split in ("train", "test"):
            for item in sets[task, split]:
                assert not item.pairs & COMPOSITIONAL_PAIRS, item.text
                if task == "t2i":
                    assert relation_triple(item) not in COMPOSITIONAL_RELATIONS, item.text
    for item in sets["t2i", "compositional"]:
        assert item.pairs & COMPOSITIONAL_PAIRS or relation_triple(item) in COMPOSITIONAL_RELATIONS
    for item in sets["edit", "compositional"]:
        assert item.pairs & COMPOSITIONAL_PAIRS


def test_prompt_set_files_match_the_generator():
    path = prompt_set_path("edit", "compositional")
    rng = np.random.default_rng([0, TASKS.index("edit"), SPLITS.index("compositional")])
    rebuilt = build_edit_set("compositional", SET_SIZES["compositional"], rng)
    on_disk = [json.loads(line) for line in path.read_text().splitlines()]
    assert [{k: v for k, v in d.items() if k != "id"} for d in on_disk] == [t.to_dict() for t in rebuilt]


def test_load_prompt_set_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown task 'video'"):
        load_prompt_set("video", "test")
    with pytest.raises(ValueError, match="unknown split 'dev'"):
        load_prompt_set("t2i", "dev")
    with pytest.raises(FileNotFoundError, match="python -m qwenrl.world.prompt_sets"):
        load_prompt_set("t2i", "test", root=tmp_path)


def test_balanced_counts():
    assert balanced_counts(10, ("a", "b", "c")) == {"a": 4, "b": 3, "c": 3}
    assert balanced_counts(10, ("a", "b", "c"), {"a": 1, "b": 100, "c": 100}) == {"a": 1, "b": 5, "c": 4}
    with pytest.raises(ValueError, match="distinct prompts"):
        balanced_counts(10, ("a", "b"), {"a": 2, "b": 3})


def test_limited_prompt_sets_keep_every_family():
    from qwenrl.world.prompt_sets import load_prompt_set

    full = load_prompt_set("t2i", "test")
    subset = load_prompt_set("t2i", "test", limit=25)
    assert len(subset) == 25 and all(p in full for p in subset)
    assert {p.family for p in subset} == {p.family for p in full}
    assert load_prompt_set("t2i", "test", limit=10_000) == full
    with pytest.raises(ValueError, match="limit"):
        load_prompt_set("edit", "test", limit=0)
