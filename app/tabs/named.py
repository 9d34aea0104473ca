"""The arena's "Side by side (named)" tab: the visitor picks two models and votes with the names shown.

Such a vote says what the visitor thinks of two named models, not a blind judgement: it is
stored as not anonymous (``anony`` false, the store's ``named`` flag), so the default
leaderboards leave it out, as LMArena keeps its named side-by-side apart; the Leaderboard's
"Count flagged votes" box counts it. Handlers are thin adapters over
``ArenaService.named_battle`` and ``vote``; the page keeps the open battle in ``gr.State``.
"""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from ..errors import ArenaError
from .common import (
    BUTTONS,
    PRIVATE,
    Loader,
    PairPanel,
    Studio,
    Tab,
    battle_images,
    client_address,
    open_buttons,
    show_image,
    task_radio,
    voter_id,
    vote_buttons,
)


@dataclass
class NamedView(PairPanel):
    """The tab's components, and the updates of a named battle shown or voted on."""

    task: gr.Radio
    model_a: gr.Dropdown
    model_b: gr.Dropdown
    go: gr.Button

    def updates(self, battle, a: str, b: str) -> dict:
        """The two models' images of one prompt, each under its name, the vote buttons on."""
        return {
            self.state: {"battle_id": battle.battle_id, "voted": False},
            self.prompt: battle.prompt,
            self.source: gr.Image(value=show_image(battle.source), visible=battle.source is not None),
            self.image_a: gr.Image(value=show_image(battle.image_a), label=f"A: {a}"),
            self.image_b: gr.Image(value=show_image(battle.image_b), label=f"B: {b}"),
            self.reveal: "",
            **open_buttons(self.buttons),
        }

    def choices(self, models: list[str]) -> dict:
        """The two model choosers, the first two models chosen."""
        return {self.model_a: gr.Dropdown(choices=models, value=models[0] if models else None),
                self.model_b: gr.Dropdown(choices=models, value=models[1] if len(models) > 1 else None)}


def layout() -> NamedView:
    gr.Markdown("Pick two models and compare them with their names shown. These votes are kept apart: the "
                "default leaderboard leaves them out (tick *Count flagged votes* to count them).")
    state = gr.State(None)
    with gr.Row():
        task = task_radio("named-task")
        model_a = gr.Dropdown([], label="Left (A)", elem_id="named-model-a")
        model_b = gr.Dropdown([], label="Right (B)", elem_id="named-model-b")
        go = gr.Button("Show them", variant="primary", elem_id="named-go", elem_classes="next-battle")
    prompt = gr.Textbox(label="Prompt / instruction", interactive=False, elem_id="named-prompt")
    source, image_a, image_b = battle_images("named", source_visible=False)
    buttons = vote_buttons("named")
    reveal = gr.Textbox(label="Result", interactive=False, elem_id="named-reveal", lines=2)
    return NamedView(state=state, prompt=prompt, source=source, image_a=image_a, image_b=image_b, buttons=buttons,
                     reveal=reveal, task=task, model_a=model_a, model_b=model_b, go=go)


def build(studio: Studio) -> Tab:
    """The tab and its events; opening it fills the model choosers."""
    view = layout()

    def choices(task_value: str) -> dict:
        return view.choices(studio.service.arena_models(task_value))

    def show(task_value: str, a: str | None, b: str | None, request: gr.Request) -> dict:
        try:
            battle = studio.service.named_battle(task_value, a, b, voter_id(request), address=client_address(request))
        except ArenaError as exc:
            return {view.reveal: str(exc)}
        return view.updates(battle, a, b)

    def make_vote(outcome: str):
        def vote(current: dict | None, request: gr.Request) -> dict:
            if not current or current.get("voted"):
                return {view.reveal: "Pick two models and press “Show them”."}
            try:
                result = studio.service.vote(current["battle_id"], outcome, voter_id(request))
            except ArenaError as exc:
                return {view.reveal: f"Vote refused: {exc}"}
            out = view.voted(studio, current, result, outcome)
            out[view.reveal] += "\nThis named vote is stored apart from the blind ones."
            return out

        return vote

    view.task.input(choices, [view.task], [view.model_a, view.model_b], **PRIVATE)
    view.go.click(show, [view.task, view.model_a, view.model_b], view.outputs, **PRIVATE)
    for (outcome, _), button in zip(BUTTONS, view.buttons):
        button.click(make_vote(outcome), [view.state], view.outputs, **PRIVATE)
    return Tab(on_open=[Loader(choices, [view.task], [view.model_a, view.model_b])])
