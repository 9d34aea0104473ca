"""The Arena tab: a pairwise arena per task, the K-image and named arenas, the models table.

Each task's arena is an :class:`ArenaView` (its components, and the updates of a battle shown,
refused or voted on); its handlers are thin adapters over ``ArenaService.new_battle``,
``live_battle`` and ``vote``. When the page loads, each arena shows the battle the visitor had
open (a reload does not pile up battles), else a new one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import gradio as gr
import pandas as pd

from ..errors import ArenaError
from ..live import MAX_PROMPT_CHARS
from . import kway, named
from .common import (
    BUTTONS,
    NEXT_KEY,
    PRIVATE,
    TASK_LABELS,
    Loader,
    PairPanel,
    Studio,
    Tab,
    battle_images,
    battle_state,
    client_address,
    open_buttons,
    show_image,
    voter_id,
    vote_buttons,
)

CURRENT_SOURCE = "current"
MODEL_HEADERS = ["model", "lineage", "gallery", "images", "note"]


@dataclass
class ArenaView(PairPanel):
    """One task's pairwise arena on screen, and the updates of each thing that happens to it."""

    task: str
    next_button: gr.Button
    own_prompt: gr.Textbox | None = None  #: with live prompts: the visitor's own prompt or instruction
    own_go: gr.Button | None = None
    own_source: gr.Dropdown | None = None  #: editing with live prompts: the source chooser
    own_preview: gr.Image | None = None

    def updates(self, battle) -> dict:
        """A new battle on screen: its prompt and images, names hidden, the vote buttons on."""
        return {
            self.state: battle_state(battle),
            self.prompt: battle.prompt,
            self.source: show_image(battle.source),
            self.image_a: gr.Image(value=show_image(battle.image_a), label="A"),
            self.image_b: gr.Image(value=show_image(battle.image_b), label="B"),
            self.reveal: "",
            **open_buttons(self.buttons),
        }

    def refused(self, message: str) -> dict:
        """No battle to show: the reason, and nothing to vote on."""
        return {self.state: None, self.prompt: "", self.reveal: message, self.image_a: None, self.image_b: None,
                **open_buttons(self.buttons, interactive=False)}

    def show(self, make: Callable[[], object], keep_on_refusal: bool = False) -> dict:
        """The battle ``make()`` serves, or its refusal; ``keep_on_refusal``: a refused prompt of the
        visitor's leaves the open battle (and its source) as it was and only says why."""
        try:
            return self.updates(make())
        except ArenaError as exc:
            return {self.reveal: str(exc)} if keep_on_refusal else self.refused(str(exc))


def source_choices(studio: Studio) -> list[tuple[str, str]]:
    """The editing source chooser: this battle's source first, then every gallery source."""
    return [("this battle's source image", CURRENT_SOURCE)] + [
        (f"{src['description']}  [{src['source_id']}]", src["source_id"]) for src in studio.service.edit_sources()]


def models_frame(studio: Studio) -> pd.DataFrame:
    rows = [[r["model"], r["lineage"], r["status"], f"{r['done']}/{r['total']}", r["note"]]
            for r in studio.gallery_status()]
    return pd.DataFrame(rows, columns=MODEL_HEADERS)


def pair_layout(studio: Studio, task: str) -> ArenaView:
    """The components of one task's pairwise arena (with the own-prompt row when live prompts are on)."""
    state = gr.State(None)
    prompt = gr.Textbox(label="Instruction" if task == "edit" else "Prompt", interactive=False, elem_id=f"{task}-prompt")
    source, image_a, image_b = battle_images(task)
    buttons = vote_buttons(task)
    reveal = gr.Textbox(label="Result", interactive=False, elem_id=f"{task}-reveal", lines=2)
    next_button = gr.Button(f"Next battle ({NEXT_KEY})", variant="primary", elem_id=f"{task}-next",
                            elem_classes="next-battle")
    view = ArenaView(state=state, prompt=prompt, source=source, image_a=image_a, image_b=image_b, buttons=buttons,
                     reveal=reveal, task=task, next_button=next_button)
    if studio.service.live is None:
        return view
    if task == "t2i":
        with gr.Row():
            view.own_prompt = gr.Textbox(label="Or battle on your own prompt (Shapes words, e.g. “a red square above a blue circle”)",
                                         max_length=MAX_PROMPT_CHARS, elem_id="t2i-own-prompt", scale=4)
            view.own_go = gr.Button("Battle on my prompt", elem_id="t2i-own-go", scale=1)
    if task == "edit":
        with gr.Row():
            with gr.Column(scale=4):
                view.own_prompt = gr.Textbox(
                    label="Or battle on your own instruction (Shapes words, e.g. “make the background black”, "
                          "“add a small red circle”)", max_length=MAX_PROMPT_CHARS, elem_id="edit-own-prompt")
                view.own_source = gr.Dropdown(source_choices(studio), value=CURRENT_SOURCE, label="over the source image",
                                              elem_id="edit-own-source")
                view.own_go = gr.Button("Battle on my instruction", elem_id="edit-own-go")
            view.own_preview = gr.Image(label="Source to edit", interactive=False, type="pil", format="png", scale=1,
                                        elem_id="edit-own-preview", elem_classes="pixelated", height=200, visible=False)
    return view


def pair_events(studio: Studio, view: ArenaView) -> None:
    """The arena's clicks: next battle, a battle on the visitor's own text, the four votes."""
    task, service = view.task, studio.service

    def new_battle(request: gr.Request) -> dict:
        return view.show(lambda: service.new_battle(task, voter_id(request), address=client_address(request)))

    def own_battle(text: str, request: gr.Request, source_id: str | None = None) -> dict:
        voter = voter_id(request)

        def make():
            service.throttle(voter)
            return service.live_battle(task, text, voter, source_id=source_id, address=client_address(request))

        return view.show(make, keep_on_refusal=True)

    def own_edit(text: str, chosen: str | None, current: dict | None, request: gr.Request) -> dict:
        source_id = (current or {}).get("source_id") if chosen in (None, CURRENT_SOURCE) else chosen
        if not source_id:
            return {view.reveal: "No source image yet: wait for a battle, or choose a source from the gallery."}
        return own_battle(text, request, source_id)

    def preview(chosen: str | None) -> dict:
        found = studio.ws.edit_source(chosen) if chosen not in (None, CURRENT_SOURCE) else None
        return {view.own_preview: gr.Image(value=show_image(found["path"]) if found else None, visible=found is not None)}

    def make_vote(outcome: str):
        def vote(current: dict | None, request: gr.Request) -> dict:
            if not current or current.get("voted"):
                return {view.reveal: "No open battle: press “Next battle”."}
            voter = voter_id(request)
            try:
                service.throttle(voter)
                result = service.vote(current["battle_id"], outcome, voter)
            except ArenaError as exc:
                return {view.reveal: f"Vote refused: {exc}"}
            return view.voted(studio, current, result, outcome)

        return vote

    view.next_button.click(new_battle, None, view.outputs, api_name=f"new_battle_{task}")
    if view.own_go is not None and task == "t2i":
        view.own_go.click(own_battle, [view.own_prompt], view.outputs, api_name="live_battle_t2i")
        view.own_prompt.submit(own_battle, [view.own_prompt], view.outputs, api_name=False)
    if view.own_go is not None and task == "edit":
        view.own_go.click(own_edit, [view.own_prompt, view.own_source, view.state], view.outputs, api_name="live_battle_edit")
        view.own_prompt.submit(own_edit, [view.own_prompt, view.own_source, view.state], view.outputs, api_name=False)
        view.own_source.change(preview, [view.own_source], [view.own_preview], **PRIVATE)
    for (outcome, _), button in zip(BUTTONS, view.buttons):
        name = outcome.replace(" (bothbad)", "_bothbad").replace("model_", "")
        button.click(make_vote(outcome), [view.state], view.outputs, api_name=f"vote_{task}_{name}")


def build(studio: Studio) -> Tab:
    """The Arena tab: a sub-tab per task, the K-image and named arenas, the models table."""
    with gr.Tabs():
        views = []
        for task, label in TASK_LABELS.items():
            with gr.Tab(label, id=f"arena-{task}"):
                views.append(pair_layout(studio, task))
                pair_events(studio, views[-1])
        loaders = []
        if studio.service.kway > 2:
            with gr.Tab(f"{studio.service.kway} at once", id="arena-kway"):
                loaders += kway.build(studio).on_page_load
        with gr.Tab("Side by side (named)", id="arena-named") as named_tab:
            for loader in named.build(studio).on_open:
                named_tab.select(loader.fn, loader.inputs, loader.outputs, **PRIVATE)
    with gr.Accordion("Models in the arena", open=False):
        models = gr.Dataframe(headers=MODEL_HEADERS, interactive=False, elem_id="models-table")
    choosers = [v.own_source for v in views if v.own_source is not None]

    def first_battles(request: gr.Request) -> dict:
        out: dict = {models: models_frame(studio)}
        for chooser in choosers:  # the gallery may have filled since the page was built
            out[chooser] = gr.Dropdown(choices=source_choices(studio), value=CURRENT_SOURCE)
        for view in views:  # a reloaded page shows the battle it had rather than opening another
            out.update(view.show(lambda task=view.task: studio.service.open_or_new_battle(
                task, voter_id(request), address=client_address(request))))
        return out

    first = Loader(first_battles, [], [models] + [c for v in views for c in v.outputs] + choosers)
    return Tab(on_page_load=[first, *loaders], on_tick=[Loader(lambda: models_frame(studio), [], [models])])
