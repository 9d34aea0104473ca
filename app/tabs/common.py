"""What every tab shares: the ``Studio`` its handlers call, the ``Tab`` shape its builder returns,
who the visitor is, and the pieces of a battle on screen (images, vote buttons, the reveal)."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gradio as gr
from PIL import Image

from ..auth import VOTER_COOKIE, AdminAuth, is_voter_id
from ..jobs import JobManager
from ..service import ArenaService
from ..workspace import Workspace

TASK_LABELS = {"t2i": "Text to image", "edit": "Editing"}
BUTTONS = (("model_a", "A is better"), ("model_b", "B is better"), ("tie", "Tie"),
           ("tie (bothbad)", "Both are bad"))
#: the keyboard shortcut of each vote button (the page's script clicks ``.vote-key-N`` of the open arena)
VOTE_KEYS = ("a", "b", "t", "x")
NEXT_KEY = "n"
OUTCOME_TEXT = dict(BUTTONS)
DISPLAY_SCALE = 1  # images go out at their own size; CSS enlarges them with crisp pixels
PRIVATE = {"api_visibility": "private"}  #: events the Gradio API does not list


@dataclass
class Studio:
    """What the handlers call: the arena service, the job manager and the admin check."""

    service: ArenaService
    jobs: JobManager | None
    auth: AdminAuth

    status_ttl_s: float = 2.0
    _status: tuple[float, list] = (0.0, [])

    @property
    def ws(self) -> Workspace:
        return self.service.ws

    def gallery_status(self) -> list[dict[str, Any]]:
        """The workspace's model rows, shared by every open page for ``status_ttl_s``."""
        now = time.monotonic()
        if now - self._status[0] >= self.status_ttl_s:
            self._status = (now, self.ws.gallery_status())
        return self._status[1]


@dataclass
class Loader:
    """A handler the page runs by itself, not on a click: ``fn(*inputs)`` → updates of ``outputs``."""

    fn: Callable[..., Any]
    inputs: list = field(default_factory=list)
    outputs: list = field(default_factory=list)


@dataclass
class Tab:
    """What every tab's ``build`` returns: its loaders, run when the page loads, when the tab is
    opened, and on the studio's refresh timer (``app.studio.build_studio`` wires them)."""

    on_page_load: list[Loader] = field(default_factory=list)
    on_open: list[Loader] = field(default_factory=list)
    on_tick: list[Loader] = field(default_factory=list)


def voter_id(request: gr.Request | None) -> str:
    """The browser's voter cookie, else the Gradio session (one voter per browser session)."""
    if request is None:
        return "anonymous"
    cookies = getattr(request, "cookies", None) or {}
    cookie = cookies.get(VOTER_COOKIE) if hasattr(cookies, "get") else None
    if is_voter_id(cookie):
        return cookie
    return f"gradio-{request.session_hash}"


def client_address(request: gr.Request | None) -> str | None:
    """The browser's address (the key of the per-address limits on new voters and open battles)."""
    client = getattr(request, "client", None)
    return getattr(client, "host", None)


def unchanged(components: list) -> dict:
    """An update that leaves every component as it is (Gradio needs one entry at least)."""
    return {c: gr.skip() for c in components}


def show_image(path: Path | None, scale: int = DISPLAY_SCALE) -> Image.Image | None:
    """A gallery PNG enlarged with nearest-neighbour (crisp pixels); served without its path,
    so a file name never gives a model away."""
    if path is None:
        return None
    with Image.open(path) as im:
        im = im.convert("RGB")
        return im.resize((im.width * scale, im.height * scale), Image.NEAREST)


def task_radio(elem_id: str) -> gr.Radio:
    """The task chooser of a tab (text to image first)."""
    return gr.Radio([(v, k) for k, v in TASK_LABELS.items()], value="t2i", label="Task", elem_id=elem_id)


# -- a battle on screen ----------------------------------------------------------------------------


def battle_images(prefix: str, source_visible: bool | None = None) -> tuple[gr.Image, gr.Image, gr.Image]:
    """The source (editing) and the two images of a battle, side by side even on a phone."""
    with gr.Row(elem_classes="battle-images", elem_id=f"{prefix}-images"):
        source = gr.Image(label="Source", interactive=False, visible=(prefix == "edit") if source_visible is None
                          else source_visible, type="pil", format="png", elem_id=f"{prefix}-source",
                          elem_classes="pixelated", height=280, min_width=80)
        image_a = gr.Image(label="A", interactive=False, type="pil", format="png", elem_id=f"{prefix}-image-a",
                           elem_classes="pixelated", height=280, min_width=80)
        image_b = gr.Image(label="B", interactive=False, type="pil", format="png", elem_id=f"{prefix}-image-b",
                           elem_classes="pixelated", height=280, min_width=80)
    return source, image_a, image_b


def vote_classes(i: int, voted: bool = False) -> list[str]:
    return [f"vote-key-{i}"] + (["voted"] if voted else [])


def vote_buttons(prefix: str) -> list[gr.Button]:
    """The four vote buttons, each with its keyboard shortcut."""
    with gr.Row(elem_classes="vote-buttons"):
        return [gr.Button(f"{text} ({VOTE_KEYS[i]})", elem_id=f"{prefix}-vote-{i}", interactive=False,
                          elem_classes=vote_classes(i), min_width=80)
                for i, (_, text) in enumerate(BUTTONS)]


def open_buttons(buttons: list[gr.Button], interactive: bool = True) -> dict:
    """The vote buttons of a battle just shown (``interactive``) or refused (not)."""
    return {b: gr.Button(interactive=interactive, variant="secondary", elem_classes=vote_classes(i))
            for i, b in enumerate(buttons)}


def verdict_text(side: str, d: dict) -> str:
    """``A — shapes-base: checker passes; reward 0.91`` (and why the checker fails it)."""
    checker = "not judged" if d["checker"] is None else "checker passes" if d["checker"] else "checker fails"
    found = re.search(r"[Tt]he image fails: ([^;]+)", d["reasons"]) if d["checker"] is False else None
    reasons = found.group(1).strip().rstrip(".)") if found else ""  # the first reason is enough here
    reward = "" if d["score"] is None else f"; reward {d['score']:.2f}"
    return f"{side} — {d['model']}: {checker}{f' ({reasons})' if reasons else ''}{reward}"


def revealed_updates(studio: Studio, result: Any, outcome: str, image_a: gr.Image, image_b: gr.Image,
                     buttons: list[gr.Button], reveal: gr.Textbox) -> dict:
    """After a vote: the names on the images, the voter's own choice marked, and (a setting)
    each image's checker verdict and reward beside the reveal."""
    details = studio.service.reveal_details(result.battle_id)
    labels = {"A": result.model_a, "B": result.model_b}
    lines = [f"You voted: {OUTCOME_TEXT[outcome]}.", f"A was {result.model_a}; B was {result.model_b}."]
    if details:
        lines += [verdict_text(side, d) for side, d in zip("AB", details)]
        for side, d in zip("AB", details):
            mark = "" if d["checker"] is None else (" ✓" if d["checker"] else " ✗")
            score = "" if d["score"] is None else f" {d['score']:.2f}"
            labels[side] += f" ·{mark}{score}"
    chosen = [o for o, _ in BUTTONS].index(outcome)
    return {
        image_a: gr.Image(label=f"A: {labels['A']}"),
        image_b: gr.Image(label=f"B: {labels['B']}"),
        reveal: "\n".join(lines),
        **{b: gr.Button(interactive=False, variant="primary" if i == chosen else "secondary",
                        elem_classes=vote_classes(i, voted=i == chosen)) for i, b in enumerate(buttons)},
    }


@dataclass
class PairPanel:
    """A pairwise battle on screen: the page's state of it, its text, source and two images, the
    vote buttons and the reveal (the pairwise arenas' and the named side-by-side's)."""

    state: gr.State
    prompt: gr.Textbox
    source: gr.Image
    image_a: gr.Image
    image_b: gr.Image
    buttons: list[gr.Button]
    reveal: gr.Textbox

    @property
    def outputs(self) -> list:
        return [self.state, self.prompt, self.source, self.image_a, self.image_b, *self.buttons, self.reveal]

    def voted(self, studio: Studio, current: dict, result: Any, outcome: str) -> dict:
        """After the vote: the names revealed, the choice marked."""
        return {self.state: {**current, "voted": True},
                **revealed_updates(studio, result, outcome, self.image_a, self.image_b, self.buttons, self.reveal)}


def battle_state(battle: Any) -> dict:
    """What a page keeps of its open battle (``gr.State``): the id, whether voted, its source."""
    return {"battle_id": battle.battle_id, "voted": False, "source_id": battle.source_id}
