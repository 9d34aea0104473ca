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

from .errors import ArenaError


@dataclass
class NamedView:
    """The tab's components, and what the page runs when it opens."""

    task: gr.Radio
    model_a: gr.Dropdown
    model_b: gr.Dropdown
    load: tuple


def build_named_tab(studio, helpers, labels: dict[str, str]) -> NamedView:
    """``helpers``: the studio module (``battle_images``, ``vote_buttons``, ``revealed_updates``,
    ``show_image``, ``voter_id``, ``client_address``, ``BUTTONS``), passed in to keep imports one way."""
    h = helpers
    gr.Markdown("Pick two models and compare them with their names shown. These votes are kept apart: the "
                "default leaderboard leaves them out (tick *Count flagged votes* to count them).")
    state = gr.State(None)
    with gr.Row():
        task = gr.Radio([(v, k) for k, v in labels.items()], value="t2i", label="Task", elem_id="named-task")
        model_a = gr.Dropdown([], label="Left (A)", elem_id="named-model-a")
        model_b = gr.Dropdown([], label="Right (B)", elem_id="named-model-b")
        go = gr.Button("Show them", variant="primary", elem_id="named-go", elem_classes="next-battle")
    prompt = gr.Textbox(label="Prompt / instruction", interactive=False, elem_id="named-prompt")
    source, image_a, image_b = h.battle_images("named", source_visible=False)
    buttons = h.vote_buttons("named")
    reveal = gr.Textbox(label="Result", interactive=False, elem_id="named-reveal", lines=2)

    def choices(task_value: str) -> dict:
        models = studio.service.arena_models(task_value)
        return {model_a: gr.Dropdown(choices=models, value=models[0] if models else None),
                model_b: gr.Dropdown(choices=models, value=models[1] if len(models) > 1 else None)}

    def show(task_value: str, a: str | None, b: str | None, request: gr.Request) -> dict:
        try:
            battle = studio.service.named_battle(task_value, a, b, h.voter_id(request), address=h.client_address(request))
        except ArenaError as exc:
            return {reveal: str(exc)}
        return {
            state: {"battle_id": battle.battle_id, "voted": False},
            prompt: battle.prompt,
            source: gr.Image(value=h.show_image(battle.source), visible=battle.source is not None),
            image_a: gr.Image(value=h.show_image(battle.image_a), label=f"A: {a}"),
            image_b: gr.Image(value=h.show_image(battle.image_b), label=f"B: {b}"),
            reveal: "",
            **{btn: gr.Button(interactive=True, variant="secondary", elem_classes=h.vote_classes(i))
               for i, btn in enumerate(buttons)},
        }

    def make_vote(outcome: str):
        def vote(current: dict | None, request: gr.Request) -> dict:
            if not current or current.get("voted"):
                return {reveal: "Pick two models and press “Show them”."}
            try:
                result = studio.service.vote(current["battle_id"], outcome, h.voter_id(request))
            except ArenaError as exc:
                return {reveal: f"Vote refused: {exc}"}
            out = h.revealed_updates(studio, result, outcome, image_a, image_b, buttons, reveal)
            out[reveal] += "\nThis named vote is stored apart from the blind ones."
            return {state: {**current, "voted": True}, **out}

        return vote

    outputs = [state, prompt, source, image_a, image_b, *buttons, reveal]
    private = {"api_visibility": "private"}
    task.input(choices, [task], [model_a, model_b], **private)
    go.click(show, [task, model_a, model_b], outputs, **private)
    for (outcome, _), button in zip(h.BUTTONS, buttons):
        button.click(make_vote(outcome), [state], outputs, **private)
    return NamedView(task, model_a, model_b, (choices, [task], [model_a, model_b]))
