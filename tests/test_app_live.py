"""Live prompts: a visitor's own text-to-image prompt, sampled now by two arena models."""

from __future__ import annotations

import base64
import io
import json

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from app.api import create_api
from app.inspector import agreement
from app.live import (
    MAX_PROMPT_CHARS,
    LiveError,
    LiveGenerator,
    clean_instruction,
    clean_prompt,
    image_path_for,
    worker,
)
from app.auth import AdminAuth
from app.service import ArenaError, ArenaService
from tests.studio_support import filled_workspace, tiny_models  # noqa: F401


@pytest.fixture(scope="module")
def live_service(filled_workspace):
    live = LiveGenerator(filled_workspace.root, timeout_s=120)
    yield ArenaService(filled_workspace, rate=1000, burst=1000, seed=0, live=live)
    live.close()


def test_prompts_are_checked_before_anything_runs():
    assert clean_prompt("  A red   circle\tleft of a blue square ") == "a red circle left of a blue square"
    for bad, message in [("", "type a prompt"), ("   ", "type a prompt"), (None, "type a prompt"),
                         ("a red " * 60, f"at most {MAX_PROMPT_CHARS}"),
                         ("a <script>alert(1)</script> circle", r"not known: 1, alert, script\."),
                         ("a purple elephant", "not known: elephant")]:
        with pytest.raises(LiveError, match=message):
            clean_prompt(bad)
    assert clean_prompt("a photo of a cat", shapes=False) == "a photo of a cat"  # real models take any words


def test_image_paths_are_derived_never_user_supplied():
    a = image_path_for("tiny-a", "a red circle", 7)
    assert a.startswith("live/tiny-a-") and a.endswith(".png")
    assert a == image_path_for("tiny-a", "a red circle", 7) != image_path_for("tiny-a", "a red circle", 8)
    assert "/../" not in image_path_for("../../etc", "a red circle", 1)


def test_worker_samples_and_survives_bad_requests(filled_workspace, tiny_models):
    root = filled_workspace.root
    source = str(tiny_models / "tiny-a")
    out = image_path_for("tiny-a", "a red circle", 3)
    requests = [
        json.dumps({"source": source, "text": "a red circle", "seed": 3, "out": out}),
        json.dumps({"source": source, "text": "a red circle", "seed": 3, "out": "../escape.png"}),
        json.dumps({"source": str(root), "text": "a red circle", "seed": 3, "out": out}),
        "not json",
        json.dumps({"source": source, "text": "a red circle", "seed": 3, "out": out}),
    ]
    answers = io.StringIO()
    worker(root, requests, answers)
    first, escape, not_a_model, garbage, again = [json.loads(line) for line in answers.getvalue().splitlines()]
    assert Image.open(root / out).size == (32, 32)
    assert "outside the workspace" in escape["error"] and not (root.parent / "escape.png").exists()
    assert "not a model the live worker samples" in not_a_model["error"]
    assert "error" in garbage
    assert again["content_hash"] == first["content_hash"]  # same seed, same image


def test_live_battle_vote_and_reveal(live_service):
    service = live_service
    battle = service.live_battle("t2i", "A red square, above a blue circle.", "voter-1")
    assert battle.prompt == "a red square above a blue circle" and battle.family == "user" and battle.source is None
    assert Image.open(battle.image_a).size == (32, 32) and Image.open(battle.image_b).size == (32, 32)
    result = service.vote(battle.battle_id, "model_b", "voter-1")
    assert {result.model_a, result.model_b} <= {"tiny-a", "tiny-b", "tiny-c"} and result.model_a != result.model_b
    stored = service.ws.store.get_battle(battle.battle_id)
    assert stored["vote"]["outcome"] == "model_b" and stored["vote"]["judge"] == "human"
    exported = [r for r in service.ws.store.vote_records(task="t2i") if r["battle_id"] == battle.battle_id]
    assert [r["prompt"] for r in exported] == [battle.prompt]  # the export (and so `qwenrl elo`) sees the prompt
    assert battle.prompt not in {s["prompt"] for s in service.ws.arena_samples("t2i")}  # not mixed into the gallery pool
    overall = agreement(service.ws, "t2i")["overall"]  # the live worker judged both images, as the gallery's are
    assert overall["votes"] >= 1 and overall["missing"] == 0
    judged = {j["sample_id"] for j in service.ws.store.judgements(judge="shapes_t2i")}
    assert {stored["sample_a"], stored["sample_b"]} <= judged
    with pytest.raises(ArenaError, match="another"):
        service.vote(battle.battle_id, "model_a", "voter-2")


def test_live_battle_refusals(live_service, filled_workspace):
    with pytest.raises(ArenaError, match="not known: elephant") as exc:
        live_service.live_battle("t2i", "a purple elephant", "v")
    assert exc.value.status == 422
    with pytest.raises(ArenaError, match="unknown task") as exc:
        live_service.live_battle("video", "a red circle", "v")
    assert exc.value.status == 400
    off = ArenaService(filled_workspace, seed=0)
    with pytest.raises(ArenaError, match="live prompts are off") as exc:
        off.live_battle("t2i", "a red circle", "v")
    assert exc.value.status == 503


def test_live_battle_through_the_rest_api(live_service):
    c = TestClient(create_api(live_service, None, AdminAuth(None)))
    r = c.post("/api/v1/battle/live", json={"prompt": "a green triangle left of a yellow circle"})
    assert r.status_code == 200, r.text
    b = r.json()
    assert b["prompt"] == "a green triangle left of a yellow circle" and b["family"] == "user" and b["source_png"] is None
    v = c.post("/api/v1/vote", json={"battle_id": b["battle_id"], "winner": "tie"})
    assert v.status_code == 200 and v.json()["model_a"] != v.json()["model_b"]
    bad = c.post("/api/v1/battle/live", json={"prompt": "a cat"})
    assert bad.status_code == 422 and "not known: cat" in bad.text


def test_a_dead_worker_is_replaced(live_service):
    live_service.live._ensure().kill()
    live_service.live._proc.wait()
    battle = live_service.live_battle("t2i", "a blue square", "voter-3")  # restarted on demand
    assert Image.open(battle.image_a).size == (32, 32)


# ---------------------------------------------------------------------------------------------
# Live editing: the visitor's instruction over a gallery source image
# ---------------------------------------------------------------------------------------------


def test_edit_instructions_are_checked_like_prompts():
    import numpy as np

    from qwenrl.world.grammar import sample_edit

    assert clean_instruction("  Make the   background BLACK. ") == "make the background black"
    for bad, message in [("", "type a prompt"), ("make " * 50, f"at most {MAX_PROMPT_CHARS}"),
                         ("make the circle sparkle", "not known: sparkle"),
                         ("a red circle", "starts with one of: add, change, make, move, remove, replace, turn")]:
        with pytest.raises(LiveError, match=message):
            clean_instruction(bad)
    rng = np.random.default_rng(0)
    for _ in range(300):  # every instruction the grammar writes is one a visitor may type
        task = sample_edit(rng)
        assert clean_instruction(task.instruction) == task.instruction


def test_worker_edits_the_source_it_is_given(filled_workspace, tiny_models):
    ws = filled_workspace
    first, second = ws.edit_sources()[:2]
    source = str(tiny_models / "tiny-a")
    text = "make the background blue"
    requests = [json.dumps({"source": source, "text": text, "seed": 5, "out": image_path_for("tiny-a", text, 5, src["source_id"]),
                            "edit_source": ws.edit_source(src["source_id"])["scene"]}) for src in (first, second, first)]
    requests.append(json.dumps({"source": source, "text": text, "seed": 5, "out": image_path_for("tiny-a", text, 5, "x"),
                                "edit_source": {"background": "white", "objects": [{"shape": "blob"}]}}))
    answers = io.StringIO()
    worker(ws.root, requests, answers)
    a, b, a_again, bad = [json.loads(line) for line in answers.getvalue().splitlines()]
    assert a["content_hash"] == a_again["content_hash"] != b["content_hash"]  # the source conditions the edit
    assert "error" in bad


def test_live_edit_battle_vote_and_storage(live_service):
    service = live_service
    source_id = service.edit_sources()[1]["source_id"]
    battle = service.live_battle("edit", "Add a small red circle", "voter-e", source_id=source_id)
    assert battle.task == "edit" and battle.prompt == "add a small red circle" and battle.family == "user"
    assert battle.source_id == source_id and battle.source == service.ws.source_path(source_id)
    assert Image.open(battle.image_a).size == (32, 32) and Image.open(battle.image_b).size == (32, 32)
    result = service.vote(battle.battle_id, "tie", "voter-e")
    assert result.task == "edit" and result.model_a != result.model_b
    stored = service.ws.store.get_battle(battle.battle_id)
    prompt = service.ws.store._query("SELECT * FROM prompts WHERE id = ?", [stored["prompt_id"]])[0]
    assert (prompt["task"], prompt["text"], prompt["family"]) == ("edit", "add a small red circle", "user")
    spec = json.loads(prompt["spec"])  # the source, and what the checker needs: the target scene
    assert spec["source"] == service.ws.edit_source(source_id)["scene"] and spec["source_id"] == source_id
    assert spec["family"] == "add" and len(spec["target"]["objects"]) == len(spec["source"]["objects"]) + 1
    assert prompt["source_image"] == f"gallery/sources/{source_id}.png"
    exported = [r for r in service.ws.store.vote_records(task="edit") if r["battle_id"] == battle.battle_id]
    assert [(r["prompt"], r["winner"], r["judge"]) for r in exported] == [("add a small red circle", "tie", "human")]
    assert "add a small red circle" not in {s["prompt"] for s in service.ws.arena_samples("edit")}
    # over the source of a gallery battle, as the editing tab does by default
    gallery = service.new_battle("edit", "voter-e")
    assert gallery.source_id is not None
    scene = service.ws.edit_source(gallery.source_id)["scene"]
    again = service.live_battle("edit", f"make the background {other_background(scene)}", "voter-e",
                                source_id=gallery.source_id)
    assert again.source == gallery.source


def test_live_edit_refusals(live_service):
    source_id = live_service.edit_sources()[0]["source_id"]
    cases = [
        ("make the circle sparkle", source_id, 422, "not known: sparkle"),
        ("", source_id, 422, "type a prompt"),
        ("a red circle", source_id, 422, "starts with one of"),
        ("make the background blue", None, 422, "an edit needs a source image"),
        ("make the background blue", "edit-test-9999", 404, "no source image 'edit-test-9999'"),
        ("make the background blue", "../../../etc/passwd", 404, "no source image"),
        ("make the background blue", "t2i-test-0000", 404, "no source image"),
    ]
    for text, source, status, message in cases:
        with pytest.raises(ArenaError, match=message) as exc:
            live_service.live_battle("edit", text, "v", source_id=source)
        assert exc.value.status == status, (text, source)


def test_live_edit_through_the_rest_api(live_service):
    c = TestClient(create_api(live_service, None, AdminAuth(None)))
    sources = c.get("/api/v1/sources").json()
    assert sources and all(set(s) == {"source_id", "description", "source_png"} for s in sources)
    assert Image.open(io.BytesIO(base64.b64decode(sources[0]["source_png"]))).size == (32, 32)
    gallery = c.get("/api/v1/battle", params={"task": "edit"}).json()
    assert gallery["source_id"] in {s["source_id"] for s in sources}
    first = live_service.ws.edit_source(gallery["source_id"])["scene"]["objects"][0]
    text = f"remove the {first['size']} {first['color']} {first['shape']}"
    r = c.post("/api/v1/battle/live", json={"task": "edit", "prompt": text.title() + ".",
                                            "source_id": gallery["source_id"]})
    assert r.status_code == 200, r.text
    b = r.json()
    assert (b["task"], b["prompt"], b["family"], b["source_id"]) == (
        "edit", text, "user", gallery["source_id"])
    assert b["source_png"] == gallery["source_png"]
    v = c.post("/api/v1/vote", json={"battle_id": b["battle_id"], "winner": "model_a"})
    assert v.status_code == 200 and v.json()["task"] == "edit"
    bad = c.post("/api/v1/battle/live", json={"task": "edit", "prompt": "paint it", "source_id": gallery["source_id"]})
    assert bad.status_code == 422 and "not known: it, paint" in bad.text
    missing = c.post("/api/v1/battle/live", json={"task": "edit", "prompt": "make the background blue"})
    assert missing.status_code == 422 and "source" in missing.json()["detail"]
    unknown = c.post("/api/v1/battle/live", json={"task": "edit", "prompt": "make the background blue",
                                                  "source_id": "nope"})
    assert unknown.status_code == 404
    assert c.post("/api/v1/battle/live", json={"task": "video", "prompt": "a red circle"}).status_code == 422


def other_background(scene: dict) -> str:
    return next(bg for bg in ("black", "gray", "white") if bg != scene["background"])


def test_live_texts_must_be_sentences_of_the_grammar(live_service):
    """Word salad and edits of objects the source does not have used to be accepted."""
    c = TestClient(create_api(live_service, None, AdminAuth(None)))
    stored = len(live_service.ws.store.list_prompts(family="user"))
    salad = c.post("/api/v1/battle/live", json={"prompt": "circle red a blue blue"})
    assert salad.status_code == 422 and "not a Shapes prompt" in salad.json()["detail"]
    for text in ("two red squares above a blue circle", "a red circles", "a red circle and a red circle"):
        r = c.post("/api/v1/battle/live", json={"prompt": text})
        assert r.status_code == 422 and "not a Shapes prompt" in r.json()["detail"], (text, r.text)
    source_id = live_service.edit_sources()[0]["source_id"]
    scene = live_service.ws.edit_source(source_id)["scene"]
    present = {(o["color"], o["shape"]) for o in scene["objects"]}
    color, shape = next((c_, s) for c_ in ("yellow", "red", "blue", "green", "purple", "cyan")
                        for s in ("circle", "square", "triangle") if (c_, s) not in present)
    r = c.post("/api/v1/battle/live", json={"task": "edit", "prompt": f"remove the {color} {shape}", "source_id": source_id})
    assert r.status_code == 422 and f"the source image has no {color} {shape}" in r.json()["detail"]
    r = c.post("/api/v1/battle/live", json={"task": "edit", "prompt": "make the background blue", "source_id": source_id})
    assert r.status_code == 422 and "background colour (white, black, gray)" in r.json()["detail"]
    assert len(live_service.ws.store.list_prompts(family="user")) == stored  # refused before anything was stored


def test_punctuation_and_case_do_not_break_prompts(live_service):
    """ "a red circle." used to give 422 "not known: circle.", and "a red circle, left of a blue square" failed on "circle,"."""
    c = TestClient(create_api(live_service, None, AdminAuth(None)))
    for text, read in [("a red circle.", "a red circle"),
                       ("A Red Circle, left of a Blue Square!", "a red circle left of a blue square")]:
        r = c.post("/api/v1/battle/live", json={"prompt": text})
        assert r.status_code == 200, r.text
        assert r.json()["prompt"] == read
        [prompt] = [p for p in live_service.ws.store.list_prompts(family="user") if p["text"] == read]
        assert prompt["spec"]["objects"][0] == {"color": "red", "shape": "circle", "count": 1}


def test_one_prompt_limit_with_one_message(live_service):
    """The schema used to say "at most 1000 characters" and the studio "at most 200"."""
    c = TestClient(create_api(live_service, None, AdminAuth(None)))
    for length in (MAX_PROMPT_CHARS + 1, 1000, 1001, 5000):
        r = c.post("/api/v1/battle/live", json={"prompt": "a" * length})
        assert r.status_code == 422, r.text
        assert r.json()["detail"] == f"the prompt has {length:,} characters; at most {MAX_PROMPT_CHARS}"
    schema = c.get("/api/v1/openapi.json").json()["components"]["schemas"]["LiveIn"]["properties"]["prompt"]
    assert "maxLength" not in schema and f"at most {MAX_PROMPT_CHARS} characters" in schema["description"]
    r = c.post("/api/v1/battle/live", json={"prompt": "a " + "q" * 150 + " circle"})  # an unknown word is cut short too
    assert r.status_code == 422 and len(r.content) < 400 and "q" * 100 not in r.text
