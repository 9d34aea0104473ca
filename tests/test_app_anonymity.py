"""Arena images that cannot be looked up (issue 20): hash the images of 20 REST battles, each with a
fresh cookie, and look them up among every image a public page shows with a model name (the
reward inspector's tables, details and side-by-side, the gallery's sources). None is found.

Before, arena images were byte-identical to the inspector's named gallery images, and the
same lookup named the model of 10 battles out of 10; the control below repeats that lookup
against the arena's own samples to show that the measurement finds what is there to find."""

from __future__ import annotations

import base64
import hashlib
import io
import itertools

import numpy as np
from fastapi.testclient import TestClient
from PIL import Image

from app import inspector
from app.api import create_api
from app.auth import AdminAuth
from app.service import ArenaService
from tests.studio_support import filled_workspace, tiny_models  # noqa: F401


def keys(png: bytes) -> tuple[str, str]:
    """Two lookups of an image: its bytes, and its pixels (a re-encoded copy has the same pixels)."""
    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    return hashlib.sha256(png).hexdigest(), hashlib.sha256(pixels.tobytes()).hexdigest()


def public_named_images(ws) -> dict[str, str]:
    """Every image the public pages can show, by its hashes → the model they name (sources: none)."""
    found: dict[str, str] = {}

    def add(path, model):
        for key in keys(path.read_bytes()):
            found[key] = model

    for task in ("t2i", "edit"):
        models = sorted({s["model"] for s in ws.showcase_samples(task)})
        for model, family, order, verdict in itertools.product(
                [None, *models], [None, *inspector.families(ws, task)], ("lowest first", "highest first"),
                inspector.VERDICT_FILTERS):
            for row in inspector.samples_table(ws, task, model=model, family=family, order=order, verdict=verdict,
                                               limit=10_000):
                add(ws.root / row["image_path"], row["model"])
                detail = inspector.sample_detail(ws, row["sample_id"])
                add(detail["image"], detail["model"])
                if detail["source"] is not None:
                    add(detail["source"], "")
        for a, b in itertools.permutations(models, 2):
            for _, pool_id in inspector.pool_prompts(ws, task):
                for detail in inspector.compare(ws, task, a, b, pool_id):
                    if detail is not None:
                        add(detail["image"], detail["model"])
    for source in ws.edit_sources():
        add(source["path"], "")
    return found


def battle_images(app, n: int = 20) -> list[tuple[str, str, bytes]]:
    """(battle id, side, PNG bytes) of ``n`` REST battles, each from a fresh client (cookie)."""
    out = []
    for k in range(n):
        client = TestClient(app)
        b = client.get("/api/v1/battle", params={"task": ("t2i", "edit")[k % 2]}).json()
        for side in ("image_a", "image_b"):
            out.append((b["battle_id"], side, base64.b64decode(b[side])))
    return out


def test_no_battle_image_can_be_looked_up_on_a_public_page(filled_workspace):
    ws = filled_workspace
    app = create_api(ArenaService(ws, rate=1000, burst=1000, seed=3), None, AdminAuth(None))
    named = public_named_images(ws)
    assert len(named) >= 2 * 2 * 3 * 4  # both keys of every showcase image of 3 models × 4 prompts × 2 tasks
    images = battle_images(app)
    assert len(images) == 40
    identified = [(bid, side) for bid, side, png in images if any(named.get(key) for key in keys(png))]
    assert identified == [], f"{len(identified)} of 40 battle images were found, named, on a public page"
    # the inspector refuses the arena's samples outright, even asked by id
    assert all(inspector.sample_detail(ws, s["id"]) is None for s in ws.arena_samples("t2i"))


def test_the_lookup_finds_what_is_there_to_find(filled_workspace):
    """The control: looked up against the arena's own samples (what the inspector used to show),
    every battle image is found and its model named, as the reveal confirms."""
    ws = filled_workspace
    app = create_api(ArenaService(ws, rate=1000, burst=1000, seed=4), None, AdminAuth(None))
    arena: dict[str, str] = {}
    for task in ("t2i", "edit"):
        for s in ws.arena_samples(task):
            for key in keys((ws.root / s["image_path"]).read_bytes()):
                arena[key] = s["model"]
    images = battle_images(app, 10)
    for battle_id, side, png in images:
        model = next(arena[key] for key in keys(png) if key in arena)
        assert model == ws.store.get_battle(battle_id)["model_a" if side == "image_a" else "model_b"]
