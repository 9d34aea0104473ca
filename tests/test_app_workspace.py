"""The studio workspace: bundled models, the arena gallery, the checkpoint watcher, the automatic arena."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from app.autojudge import AutoJudge, run_auto_arena
from app.gallery import fill_model, initial_noise
from app.pool import arena_pool, model_slug, pool_seeds
from app.workspace import CheckpointWatcher, Workspace
from tests.studio_support import POOL_SIZE, REPO, filled_workspace, save_run_checkpoint, tiny_models  # noqa: F401


def test_bundled_models_registered_with_manifest_names(filled_workspace):
    ws = filled_workspace
    models = {m["name"]: m for m in ws.store.list_models()}
    assert set(models) == {"tiny-a", "tiny-b", "tiny-c"}
    assert all(m["tasks"] == ["edit", "t2i"] and m["kind"] == "base" for m in models.values())
    assert ws.lineage("tiny-a") == "tiny-a"


def test_gallery_same_prompts_and_seeds_for_every_model(filled_workspace):
    ws = filled_workspace
    for task in ("t2i", "edit"):
        keys = {}
        for s in ws.arena_samples(task):
            keys.setdefault(s["model"], set()).add((s["pool_id"], s["seed"]))
            assert (ws.root / s["image_path"]).is_file()
        assert len(keys) == 3
        first = next(iter(keys.values()))
        assert len(first) == POOL_SIZE and all(k == first for k in keys.values())
    # editing prompts have their source image
    assert all(ws.source_path(it.id).is_file() for it in arena_pool("edit", POOL_SIZE))


def test_gallery_images_are_scored_with_rationales(filled_workspace):
    ws = filled_workspace
    sample = ws.arena_samples("t2i")[0]
    [j] = ws.store.judgements(sample_id=sample["id"])
    assert j["judge"] == "shapes_t2i" and 0.0 <= j["score"] <= 1.0
    assert "alignment" in j["parts"] and j["rationale"].startswith("shapes_t2i =")
    status = {r["model"]: r for r in ws.gallery_status()}
    # both tasks, one arena image and one showcase image (the inspector's) per prompt
    assert all(r["status"] == "ready" and r["done"] == r["total"] == 2 * 2 * POOL_SIZE for r in status.values())


def test_gallery_noise_depends_on_the_seed_only():
    a = initial_noise([5, 6, 7], (4, 8, 8))
    b = initial_noise([7], (4, 8, 8))
    assert np.array_equal(a[2].numpy(), b[0].numpy())
    assert pool_seeds(3, 2) == [pool_seeds(3, 2)[0], pool_seeds(3, 2)[0] + 1]
    assert model_slug("a/b c") != model_slug("a_b c") and "/" not in model_slug("../../etc")


def test_watcher_registers_complete_checkpoints_only(tmp_path, tiny_models):
    ws = Workspace.open(tmp_path / "ws", models_dir=tiny_models, pool_size=POOL_SIZE, num_steps=2)
    run = ws.runs_dir / "grpo-0001"
    # half-written: a temporary sibling (as write_checkpoint makes) and a folder without manifest
    save_run_checkpoint(run, 1)
    shutil.copytree(run / "checkpoints" / "step-000001", run / "checkpoints" / ".step-000002.tmp-abcd1234")
    (run / "checkpoints" / ".step-000002.tmp-abcd1234" / "manifest.json").unlink()
    (run / "checkpoints" / "step-000003").mkdir()
    (run / "checkpoints" / "step-000003" / "transformer.safetensors").write_bytes(b"partial")

    started = []

    class FakeRunner:
        def ensure(self):
            started.append(ws.pending_gallery_models())
            return True

        def stop(self):
            pass

    seen = []
    watcher = CheckpointWatcher(ws, FakeRunner(), on_new=seen.append)
    assert watcher.tick() == ["grpo-t2i@step1"]
    assert watcher.tick() == []  # registered once
    assert seen == [["grpo-t2i@step1"]]
    model = ws.store.get_model("grpo-t2i@step1")
    assert model["parent"] == "tiny-a" and model["kind"] == "grpo"
    assert ws.lineage("grpo-t2i@step1") == "tiny-a → grpo-t2i@step1"
    assert "grpo-t2i@step1" in started[-1]
    assert {m["name"] for m in ws.store.list_models()} == {"tiny-a", "tiny-b", "tiny-c", "grpo-t2i@step1"}

    # the half-written folder completes (rename into place): now it is picked up
    save_run_checkpoint(run, 3)
    assert watcher.tick() == ["grpo-t2i@step3"]
    fill_model(ws, "grpo-t2i@step3", log=lambda m: None)
    status = {r["model"]: r["status"] for r in ws.gallery_status()}
    assert status["grpo-t2i@step3"] == "ready" and status["grpo-t2i@step1"] == "pending"
    ws.close()


def test_broken_checkpoint_is_marked_failed(tmp_path, tiny_models):
    from app.gallery import main as gallery_main

    models = tmp_path / "models"
    shutil.copytree(tiny_models / "tiny-a", models / "tiny-a")
    shutil.copytree(tiny_models / "tiny-b", models / "broken")
    manifest = json.loads((models / "broken" / "manifest.json").read_text())
    (models / "broken" / "manifest.json").write_text(json.dumps({**manifest, "name": "broken"}))
    (models / "broken" / "transformer.safetensors").write_bytes(b"not safetensors")
    ws = Workspace.open(tmp_path / "ws", models_dir=models, pool_size=2, num_steps=2)
    assert gallery_main(["--workspace", str(ws.root)]) == 1
    status = {r["model"]: r for r in ws.gallery_status()}
    assert status["tiny-a"]["status"] == "ready"
    assert status["broken"]["status"] == "failed" and status["broken"]["note"]
    assert ws.pending_gallery_models() == []
    ws.clear_gallery_failures()
    assert ws.pending_gallery_models() == ["broken"]
    ws.close()


def test_oracle_outcomes():
    judge = AutoJudge.__new__(AutoJudge)
    judge._reward, judge.name = None, "oracle"
    scores = {1: (True, None), 2: (False, None), 3: (True, None), 4: (False, None)}
    judge.score = lambda s: scores[s["id"]]
    assert judge.outcome({"id": 1}, {"id": 2}) == "model_a"
    assert judge.outcome({"id": 2}, {"id": 1}) == "model_b"
    assert judge.outcome({"id": 1}, {"id": 3}) == "tie"
    assert judge.outcome({"id": 2}, {"id": 4}) == "tie (bothbad)"


@pytest.mark.parametrize(
    "passed_a, passed_b, score_a, score_b, outcome",
    [
        (True, False, 0.70, 0.95, "model_a"),       # exactly one passes: the checker decides, whatever the scores
        (False, True, 0.99, 0.40, "model_b"),
        (True, True, 0.97, 0.90, "model_a"),        # both pass, far apart: the better one
        (True, True, 0.90, 0.97, "model_b"),
        (True, True, 0.950, 0.935, "tie"),          # both pass, within the margin (0.02): a tie
        (False, False, 0.60, 0.80, "model_b"),      # both fail: the less wrong one, if clearly so
        (False, False, 0.600, 0.615, "tie (bothbad)"),
        (True, True, None, 0.90, "tie"),            # no score on one side: nothing to compare
    ],
)
def test_humanlike_outcomes_by_hand(passed_a, passed_b, score_a, score_b, outcome):
    from app.autojudge import humanlike_outcome

    assert humanlike_outcome(passed_a, passed_b, score_a, score_b, margin=0.02) == outcome


def test_humanlike_arena_votes_are_tagged_and_use_checker_and_reward(filled_workspace):
    from app.autojudge import humanlike_outcome

    ws = filled_workspace
    summary = run_auto_arena(ws, task="edit", judge="humanlike", battles=8, seed=3, margin=0.05)
    assert summary["judge"] == "humanlike" and summary["battles"] == 8
    assert set(ws.votes_frame("edit", "auto")["judge"]) >= {"humanlike"}
    judge = AutoJudge(ws, "humanlike", "edit", margin=0.05)
    a, b = ws.arena_samples("edit")[:2]
    (pa, sa), (pb, sb) = judge.score(a), judge.score(b)
    assert isinstance(pa, bool) and 0.0 <= sa <= 1.0
    assert judge.outcome(a, b) == humanlike_outcome(pa, pb, sa, sb, 0.05)
    with pytest.raises(ValueError, match="margin"):
        AutoJudge(ws, "humanlike", "edit", margin=-0.1)


def test_auto_arena_votes_are_tagged_and_apart_from_human_votes(filled_workspace):
    ws = filled_workspace
    before_human = len(ws.votes_frame("t2i", "human"))
    summary = run_auto_arena(ws, task="t2i", judge="oracle", battles=12, seed=1)
    assert summary["judge"] == "oracle" and summary["battles"] == 12
    auto = ws.votes_frame("t2i", "auto")
    assert len(auto) >= 12 and set(auto["judge"]) <= {"oracle", "reward:shapes_t2i"}
    assert len(ws.votes_frame("t2i", "human")) == before_human
    reward = run_auto_arena(ws, task="t2i", judge=str(REPO / "training/configs/rewards/shapes_t2i.yaml"),
                            battles=5, seed=2)
    assert reward["judge"] == "reward:shapes_t2i"
    with pytest.raises(ValueError, match="edit reward"):
        run_auto_arena(ws, task="t2i", judge=str(REPO / "training/configs/rewards/shapes_edit.yaml"), battles=1)


def test_arena_auto_cli(tmp_path, tiny_models):
    from app.cli import arena

    ws_dir = tmp_path / "ws"
    Workspace.open(ws_dir, models_dir=tiny_models, pool_size=2, num_steps=2).close()
    extra = save_run_checkpoint(tmp_path / "elsewhere", 7)
    result = CliRunner().invoke(arena, ["auto", "--workspace", str(ws_dir), "--task", "edit", "--judge", "oracle",
                                        "--battles", "6", "--json", "--checkpoint", str(extra)])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output[result.output.index("{\n"):])
    assert out["judge"] == "oracle" and out["battles"] == 6
    assert "grpo-t2i@step7" in out["models"]
    assert {r["model"] for r in out["rows"]} <= {"tiny-a", "tiny-b", "tiny-c", "grpo-t2i@step7"}
    bad = CliRunner().invoke(arena, ["auto", "--workspace", str(ws_dir), "--task", "t2i", "--judge", "nope.yaml",
                                     "--battles", "1"])
    assert bad.exit_code != 0 and "oracle" in bad.output
    human_like = CliRunner().invoke(arena, ["auto", "--workspace", str(ws_dir), "--task", "t2i", "--judge", "humanlike",
                                            "--margin", "0.05", "--battles", "4", "--json"])
    assert human_like.exit_code == 0, human_like.output
    assert json.loads(human_like.output[human_like.output.index("{\n"):])["judge"] == "humanlike"


def test_smoke_bundled_models_if_present(tmp_path):
    """The real bundled models: registered from data/models with their lineage, gallery filled."""
    bundled = REPO / "data" / "models"
    assert (bundled / "shapes-base" / "manifest.json").is_file(), "the bundled base model is missing from data/models"
    ws = Workspace.open(tmp_path / "ws", pool_size=2, num_steps=4)
    names = [m["name"] for m in ws.store.list_models()]
    assert names and all(r["status"] == "pending" for r in ws.gallery_status())
    fill_model(ws, names[0], log=lambda m: None)
    assert {r["model"]: r["status"] for r in ws.gallery_status()}[names[0]] == "ready"
    ws.close()


def test_gallery_runner_backs_off_after_a_crash(tmp_path, tiny_models):
    from app.workspace import GalleryRunner

    ws = Workspace.open(tmp_path / "ws", models_dir=tiny_models, pool_size=2, num_steps=2)
    # a "python" that fails at once stands in for a filler that cannot even start
    runner = GalleryRunner(ws, python="/bin/false", retry_s=3600)
    assert runner.ensure() is True
    runner._proc.wait()
    assert runner.ensure() is False and runner._proc is None  # not restarted right away
    runner.retry_s = 0
    assert runner.ensure() is True
    runner.stop()
    ws.close()


def test_learned_arena_stores_judge_votes_apart_and_skips_unreadable_answers(filled_workspace, monkeypatch, tmp_path):
    """``--judge learned``: the pairwise judge's verdicts become votes tagged ``learned``; an answer
    it cannot read stores nothing. The judge here writes the checker's own pairwise answer (the
    text it is trained to give), every third one garbled."""
    from qwenrl.rewards.pairwise import PairVerdict, PairwiseLocalJudge, pair_target

    calls, expected = [], []

    def compare(self, pairs):
        calls.append(len(pairs))
        out = []
        for k, (a, b) in enumerate(pairs):
            if k % 3 == 0:
                out.append(PairVerdict(None, "Better: maybe", "learned"))
                continue
            t = pair_target(a, b)
            expected.append({"A": "model_a", "B": "model_b"}.get(t.winner) or ("tie" if all(t.passed) else "tie (bothbad)"))
            out.append(PairVerdict(t.winner, t.text, "learned"))
        return out

    monkeypatch.setattr(PairwiseLocalJudge, "compare", compare)
    folder = REPO / "data" / "models" / "shapes-judge"  # it has the pairwise rubrics (the model is never run here)
    ws = filled_workspace
    before_human = len(ws.votes_frame("edit", "human"))
    before = ws.store.votes_frame(task="edit")
    n_before = int((before["judge"] == "learned").sum()) if len(before) else 0
    summary = run_auto_arena(ws, task="edit", judge=f"learned:{folder}", battles=9, seed=4)
    assert calls == [9] and summary["judge"] == "learned"
    assert summary["outcomes"]["unreadable"] == 3 and summary["battles"] == 6
    frame = ws.store.votes_frame(task="edit")
    learned = frame[frame["judge"] == "learned"]
    assert len(learned) - n_before == 6 and len(ws.votes_frame("edit", "human")) == before_human
    assert list(learned["winner"])[n_before:] == expected  # A/B map to the sides, ties keep pass/fail
    # a judge folder without the pairwise mode is refused with the fix
    old = tmp_path / "old-judge"
    shutil.copytree(REPO / "data" / "models" / "shapes-judge", old)
    for name in ("pair_t2i.txt", "pair_edit.txt", "format_pairwise.txt"):
        (old / "rubrics" / name).unlink(missing_ok=True)
    with pytest.raises(ValueError, match="trained before the pairwise mode"):
        run_auto_arena(ws, task="edit", judge=f"learned:{old}", battles=1)


def test_reader_arena_uses_the_positions_judge_with_rule_verdicts_and_tags_its_votes(filled_workspace, monkeypatch):
    """``--judge reader``: the bundled positions judge, each side's verdicts from the rules on its
    reading; its votes are tagged ``reader``, apart from human and ``learned`` votes. The model is
    replaced by the answers a perfect reader writes (the checker's, with positions), every verdict
    in them turned to "met", so only the rules can tell the images apart."""
    from qwenrl.rewards.pairwise import PairwiseLocalJudge, pair_target
    from qwenrl.rewards.shapes_cot import target_for

    seen = {}

    def generate(self, requests, max_new_tokens):
        assert self.verdicts == "rules" and self._local.options.model_path.endswith("shapes-judge-reader")
        out = []
        for images, _ in requests:
            t = target_for(seen[images[-1].tobytes()], positions=True)
            lines = t.text.splitlines()
            out.append("\n".join(lines[:-2] + [" ".join(f"({i}) met" for i in range(1, len(t.verdicts) + 1)) + ".", "Score: 10/10"]))
        return out

    real_compare = PairwiseLocalJudge.compare

    def compare(self, pairs):
        for a, b in pairs:
            seen[a.image.tobytes()], seen[b.image.tobytes()] = a, b
        got = real_compare(self, pairs)
        expected.extend(pair_target(a, b, True).winner for a, b in pairs)
        return got

    expected: list[str] = []
    monkeypatch.setattr(PairwiseLocalJudge, "_generate", generate)
    monkeypatch.setattr(PairwiseLocalJudge, "compare", compare)
    from qwenrl.rewards.vlm import VLMLocalJudge

    monkeypatch.setattr(VLMLocalJudge, "load", lambda self: None)
    ws = filled_workspace
    before_human = len(ws.votes_frame("t2i", "human"))
    summary = run_auto_arena(ws, task="t2i", judge="reader", battles=8, seed=5)
    assert summary["judge"] == "reader" and summary["battles"] == 8 and "unreadable" not in summary["outcomes"]
    frame = ws.store.votes_frame(task="t2i")
    reader = frame[frame["judge"] == "reader"]
    assert len(reader) == 8 and len(ws.votes_frame("t2i", "human")) == before_human
    sides = [{"A": "model_a", "B": "model_b"}.get(w, "tie") for w in expected]
    assert [w if w.startswith("model") else "tie" for w in reader["winner"]] == sides
    with pytest.raises(ValueError, match="--judge must be"):
        run_auto_arena(ws, task="t2i", judge="readers", battles=1)


def test_reader_probability_arena_picks_the_likelier_pass_and_tags_its_votes(filled_workspace, monkeypatch):
    """``--judge reader-probability``: the bundled reader judge, run for real; each vote follows
    the "Pass probability" line of its stored comparison (the higher side wins, equal ones fall
    back to the greedy readings' verdicts), and the votes are tagged apart from every other judge's.
    The tiny gallery models draw noise the reader cannot read, so each sample is shown to the judge
    as a render of its prompt: correct for even sample ids, with one thing wrong for odd ones."""
    import re

    from app.autojudge import AutoJudge
    from app.inspector import pairwise_battles
    from app.service import VOTE_FILTERS
    from app.workspace import PAIRWISE_VOTE_JUDGES
    from qwenrl.rewards import Sample
    from qwenrl.world.grammar import scene_for_prompt
    from qwenrl.world.scene import render
    from training.judge import perturb

    def rendered(self, s):
        prompt = self.ws.pool_item(s["prompt_id"]).spec()
        rng = np.random.default_rng(int(s["id"]))
        scene = scene_for_prompt(prompt, rng)
        return Sample.from_spec(render(scene if int(s["id"]) % 2 == 0 else perturb(scene, rng)), prompt)

    monkeypatch.setattr(AutoJudge, "sample", rendered)
    assert set(PAIRWISE_VOTE_JUDGES) <= set(VOTE_FILTERS)
    ws = filled_workspace
    before = {j: len(ws.votes_frame("t2i", j)) for j in ("human", "reader", "learned")}
    summary = run_auto_arena(ws, task="t2i", judge="reader-probability", battles=6, seed=11)
    assert summary["judge"] == "reader-probability" and summary["battles"] == 6
    battles = pairwise_battles(ws, "t2i", "reader-probability")
    assert len(battles) == 6 and {j: len(ws.votes_frame("t2i", j)) for j in before} == before
    decided = 0
    for b in battles:
        p_a, p_b = map(float, re.search(r"Pass probability: A ([\d.]+), B ([\d.]+)\.", b["rationale"]).groups())
        if p_a != p_b:
            assert b["winner"] == ("model_a" if p_a > p_b else "model_b")
            decided += 1
        else:
            assert b["winner"] in ("tie", "tie (bothbad)", "model_a", "model_b")
    assert decided >= 1  # the probabilities decided some battles, not only the greedy fallback
    with pytest.raises(ValueError, match="'reader-probability' or a reward"):
        run_auto_arena(ws, task="t2i", judge="reader-probabilities", battles=1)
