"""The K-image arena tab: K anonymous images of one prompt; mark the best (and the worst), or "all bad".

One battle asks one judgement of K images instead of one bit of two: the vote is expanded
into the comparisons it implies when rated (``arena.ratings``), and resampled whole by the
bootstrap. The flow: press *Best* under one image (and optionally *Worst* under another),
then *Vote*; or press *All bad*. The names are revealed under the images, then *Next battle*.

Handlers are thin adapters over ``ArenaService.new_battle(k=…)`` and ``vote_kway``; the page
keeps its open battle in ``gr.State`` (id, marks, whether voted).
"""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from .service import ArenaError


@dataclass
class KwayView:
    """The tab's components; ``outputs`` is what every handler may update."""

    k: int
    state: gr.State
    task: gr.Radio
    prompt: gr.Textbox
    source: gr.Image
    images: list[gr.Image]
    best: list[gr.Button]
    worst: list[gr.Button]
    vote: gr.Button
    all_bad: gr.Button
    reveal: gr.Textbox
    next_button: gr.Button
    load: tuple = ()  #: (handler, inputs, outputs) the page runs when it opens: the first battle

    @property
    def outputs(self) -> list:
        return [self.state, self.prompt, self.source, *self.images, *self.best, *self.worst, self.vote, self.all_bad,
                self.reveal]


def marks_text(k: int, best: int | None, worst: int | None) -> str:
    """What the voter has marked so far, in words."""
    if best is None:
        return "Mark the best image (and, if you like, the worst), then Vote; or All bad."
    text = f"Best: image {best + 1}"
    return text + (f"; worst: image {worst + 1}." if worst is not None else "; no worst marked (optional).")


def build_kway_tab(studio, show_image, voter_id, labels: dict[str, str]) -> KwayView:
    """The tab's components and events; ``show_image`` and ``voter_id`` are the studio's helpers."""
    k = studio.service.kway
    state = gr.State(None)
    task = gr.Radio([(v, key) for key, v in labels.items()], value="t2i", label="Task", elem_id="kway-task")
    prompt = gr.Textbox(label="Prompt or instruction", interactive=False, elem_id="kway-prompt")
    source = gr.Image(label="Source", interactive=False, visible=False, type="pil", format="png",
                      elem_id="kway-source", elem_classes="pixelated", height=200)
    images, best, worst = [], [], []
    with gr.Row():
        for i in range(k):
            with gr.Column(min_width=160):
                images.append(gr.Image(label=f"Image {i + 1}", interactive=False, type="pil", format="png",
                                       elem_id=f"kway-image-{i}", elem_classes="pixelated", height=220))
                with gr.Row():
                    best.append(gr.Button("Best", size="sm", elem_id=f"kway-best-{i}", interactive=False))
                    worst.append(gr.Button("Worst", size="sm", elem_id=f"kway-worst-{i}", interactive=False))
    with gr.Row():
        vote = gr.Button("Vote", variant="primary", elem_id="kway-vote", interactive=False)
        all_bad = gr.Button("All bad", elem_id="kway-all-bad", interactive=False)
    reveal = gr.Textbox(label="Result", interactive=False, elem_id="kway-reveal", lines=2)
    next_button = gr.Button("Next battle", elem_id="kway-next")
    view = KwayView(k, state, task, prompt, source, images, best, worst, vote, all_bad, reveal, next_button)

    def buttons(current: dict | None) -> dict:
        """The mark and vote buttons as the current marks allow."""
        open_ = bool(current) and not current.get("voted")
        b, w = (current or {}).get("best"), (current or {}).get("worst")
        out = {}
        for i in range(k):
            out[best[i]] = gr.Button(variant="primary" if b == i else "secondary", interactive=open_ and w != i)
            out[worst[i]] = gr.Button(variant="stop" if w == i else "secondary", interactive=open_ and b != i)
        out[vote] = gr.Button(interactive=open_ and b is not None)
        out[all_bad] = gr.Button(interactive=open_)
        return out

    def show_battle(task_value: str, request: gr.Request, resume: bool = False) -> dict:
        address = getattr(getattr(request, "client", None), "host", None)
        try:  # a page that opens (or reloads) shows the battle it had, if it is still open
            battle = (studio.service.open_or_new_battle(task_value, voter_id(request), address, k) if resume else
                      studio.service.new_battle(task_value, voter_id(request), k, address=address))
        except ArenaError as exc:
            return {state: None, prompt: "", reveal: str(exc), **{im: None for im in images}, **buttons(None)}
        current = {"battle_id": battle.battle_id, "voted": False, "best": None, "worst": None}
        return {
            state: current,
            prompt: battle.prompt,
            source: gr.Image(value=show_image(battle.source), visible=battle.source is not None),
            **{im: gr.Image(value=show_image(path), label=f"Image {i + 1}")
               for i, (im, path) in enumerate(zip(images, battle.images))},
            reveal: marks_text(k, None, None),
            **buttons(current),
        }

    def mark(kind: str, position: int):
        def handler(current: dict | None) -> dict:
            if not current or current.get("voted"):
                return {reveal: "No open battle: press “Next battle”."}
            current = {**current, kind: None if current.get(kind) == position else position}  # a second press unmarks
            return {state: current, reveal: marks_text(k, current["best"], current["worst"]), **buttons(current)}

        return handler

    def send(current: dict | None, everything_bad: bool, request: gr.Request) -> dict:
        if not current or current.get("voted"):
            return {reveal: "No open battle: press “Next battle”."}
        best_at, worst_at = (None, None) if everything_bad else (current["best"], current["worst"])
        if not everything_bad and best_at is None:
            return {reveal: "Mark the best image first (or press All bad)."}
        voter = voter_id(request)
        try:
            studio.service.throttle(voter)
            result = studio.service.vote_kway(current["battle_id"], best_at, worst_at, voter)
        except ArenaError as exc:
            return {reveal: f"Vote refused: {exc}"}
        done = {**current, "voted": True}
        if everything_bad:
            said = "You voted: all bad."
        else:
            said = f"You voted: best {result.best}" + (f", worst {result.worst}." if result.worst else ".")
        names = "; ".join(f"{i + 1} was {name}" for i, name in enumerate(result.models))
        return {
            state: done,
            **{im: gr.Image(label=f"{i + 1}: {name}") for i, (im, name) in enumerate(zip(images, result.models))},
            reveal: f"{said}\n{names}.",
            **buttons(done),
        }

    def vote_marked(current: dict | None, request: gr.Request) -> dict:
        return send(current, False, request)

    def vote_all_bad(current: dict | None, request: gr.Request) -> dict:
        return send(current, True, request)

    outputs = view.outputs
    next_button.click(show_battle, [task], outputs, api_name="new_battle_kway")
    task.input(show_battle, [task], outputs, api_visibility="private")
    for i in range(k):
        best[i].click(mark("best", i), [state], outputs, api_visibility="private")
        worst[i].click(mark("worst", i), [state], outputs, api_visibility="private")
    vote.click(vote_marked, [state], outputs, api_name="vote_kway")
    all_bad.click(vote_all_bad, [state], outputs, api_name="vote_kway_all_bad")
    def first_battle(task_value: str, request: gr.Request) -> dict:
        return show_battle(task_value, request, resume=True)

    view.load = (first_battle, [task], outputs)
    return view
