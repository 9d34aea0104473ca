"""The K-image arena tab: K anonymous images of one prompt; mark the best (and the worst), or "all bad".

One battle asks one judgement of K images instead of one bit of two: the vote is expanded
into the comparisons it implies when rated (``arena.ratings``), and resampled whole by the
bootstrap. The K images are shown side by side in one picture, numbered 1 to K from the left
(one image to send and load rather than K, so the next battle comes as fast as a pair's). The
flow: pick the best image (and, if you like, the worst) in the two choosers under it, then
*Vote*; or press *All bad*. The names are revealed with the vote, then *Next battle*. Marking
is done in the page (no round trip): only the vote goes to the server.

Handlers are thin adapters over ``ArenaService.new_battle(k=…)`` and ``vote_kway``; the page
keeps its open battle in ``gr.State`` (id, whether voted).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import gradio as gr
from PIL import Image

from ..errors import ArenaError
from .common import PRIVATE, Loader, Studio, Tab, client_address, show_image, task_radio, voter_id

GAP = 2  # pixels between two images of the strip (white)


NO_WORST = -1


@dataclass
class KwayView:
    """The tab's components; ``outputs`` is what every handler may update."""

    k: int
    state: gr.State
    task: gr.Radio
    prompt: gr.Textbox
    source: gr.Image
    images: gr.Image
    best: gr.Radio
    worst: gr.Radio
    vote: gr.Button
    all_bad: gr.Button
    reveal: gr.Textbox
    next_button: gr.Button

    @property
    def outputs(self) -> list:
        return [self.state, self.prompt, self.source, self.images, self.best, self.worst, self.vote, self.all_bad,
                self.reveal]

    def controls(self, open_: bool) -> dict:
        """The marks and the vote buttons, cleared, and on (a battle to vote on) or off."""
        return {self.best: gr.Radio(value=None, interactive=open_), self.worst: gr.Radio(value=None, interactive=open_),
                self.vote: gr.Button(interactive=open_), self.all_bad: gr.Button(interactive=open_)}

    def updates(self, battle) -> dict:
        """A new battle on screen: the prompt, the K images in one strip, the marks cleared and on."""
        return {
            self.state: {"battle_id": battle.battle_id, "voted": False},
            self.prompt: battle.prompt,
            self.source: gr.Image(value=show_image(battle.source), visible=battle.source is not None),
            self.images: image_strip(battle.images),
            self.reveal: "Pick the best image (and, if you like, the worst), then Vote; or All bad.",
            **self.controls(True),
        }

    def refused(self, message: str) -> dict:
        return {self.state: None, self.prompt: "", self.reveal: message, self.images: None, **self.controls(False)}

    def voted(self, current: dict, result, said: str) -> dict:
        """After the vote: the marks and buttons off, and who made each image."""
        names = "; ".join(f"{i + 1} was {name}" for i, name in enumerate(result.models))
        return {self.state: {**current, "voted": True},
                self.best: gr.Radio(interactive=False), self.worst: gr.Radio(interactive=False),
                self.vote: gr.Button(interactive=False), self.all_bad: gr.Button(interactive=False),
                self.reveal: f"{said}\n{names}."}


def image_strip(paths: list[Path]) -> Image.Image:
    """The battle's images side by side, left to right in display order, on white."""
    tiles = []
    for path in paths:
        with Image.open(path) as im:
            tiles.append(im.convert("RGB"))
    width = sum(t.width for t in tiles) + GAP * (len(tiles) - 1)
    strip = Image.new("RGB", (width, max(t.height for t in tiles)), "white")
    x = 0
    for tile in tiles:
        strip.paste(tile, (x, 0))
        x += tile.width + GAP
    return strip


def layout(studio: Studio) -> KwayView:
    """The tab's components: the task, the prompt, the strip of K images, the marks, the buttons."""
    k = studio.service.kway
    state = gr.State(None)
    task = task_radio("kway-task")
    prompt = gr.Textbox(label="Prompt or instruction", interactive=False, elem_id="kway-prompt")
    source = gr.Image(label="Source", interactive=False, visible=False, type="pil", format="png",
                      elem_id="kway-source", elem_classes="pixelated", height=200)
    images = gr.Image(label=f"Images 1 to {k}, from the left", interactive=False, type="pil", format="png",
                      elem_id="kway-images", elem_classes="pixelated", height=240)
    positions = [(str(i + 1), i) for i in range(k)]
    with gr.Row():
        best = gr.Radio(positions, value=None, label="Best image", elem_id="kway-best", interactive=False)
        worst = gr.Radio(positions + [("none", NO_WORST)], value=None, label="Worst image (optional)",
                         elem_id="kway-worst", interactive=False)
    with gr.Row():
        vote = gr.Button("Vote", variant="primary", elem_id="kway-vote", interactive=False)
        all_bad = gr.Button("All bad", elem_id="kway-all-bad", interactive=False)
    reveal = gr.Textbox(label="Result", interactive=False, elem_id="kway-reveal", lines=2)
    next_button = gr.Button("Next battle", elem_id="kway-next")
    return KwayView(k, state, task, prompt, source, images, best, worst, vote, all_bad, reveal, next_button)


def build(studio: Studio) -> Tab:
    """The tab and its events; the page shows the visitor's open K-image battle (or a new one) when it loads."""
    view = layout(studio)

    def show_battle(task_value: str, request: gr.Request, resume: bool = False) -> dict:
        address = client_address(request)
        try:  # a page that opens (or reloads) shows the battle it had, if it is still open
            battle = (studio.service.open_or_new_battle(task_value, voter_id(request), address, view.k) if resume else
                      studio.service.new_battle(task_value, voter_id(request), view.k, address=address))
        except ArenaError as exc:
            return view.refused(str(exc))
        return view.updates(battle)

    def send(current: dict | None, best_at: int | None, worst_at: int | None, request: gr.Request) -> dict:
        if not current or current.get("voted"):
            return {view.reveal: "No open battle: press “Next battle”."}
        voter = voter_id(request)
        try:
            studio.service.throttle(voter)
            result = studio.service.vote_kway(current["battle_id"], best_at, worst_at, voter)
        except ArenaError as exc:
            return {view.reveal: f"Vote refused: {exc}"}
        if best_at is None and worst_at is None:
            return view.voted(current, result, "You voted: all bad.")
        return view.voted(current, result, f"You voted: best {result.best}" + (f", worst {result.worst}." if result.worst else "."))

    def vote_marked(current: dict | None, best_at: int | None, worst_at: int | None, request: gr.Request) -> dict:
        if best_at is None:
            return {view.reveal: "Pick the best image first (or press All bad)."}
        return send(current, best_at, None if worst_at in (None, NO_WORST) else worst_at, request)

    def vote_all_bad(current: dict | None, request: gr.Request) -> dict:
        return send(current, None, None, request)

    def first_battle(task_value: str, request: gr.Request) -> dict:
        return show_battle(task_value, request, resume=True)

    outputs = view.outputs
    view.next_button.click(show_battle, [view.task], outputs, api_name="new_battle_kway")
    view.task.input(show_battle, [view.task], outputs, **PRIVATE)
    view.vote.click(vote_marked, [view.state, view.best, view.worst], outputs, api_name="vote_kway")
    view.all_bad.click(vote_all_bad, [view.state], outputs, api_name="vote_kway_all_bad")
    return Tab(on_page_load=[Loader(first_battle, [view.task], outputs)])
