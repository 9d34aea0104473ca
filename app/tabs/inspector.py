"""The Reward inspector tab: the gallery's showcase samples with their judgements, two models
side by side on one prompt, and how the judges agree with people and with the exact checker.

Four panels, each a view object: :class:`SampleSearch` (filters, the thumbnails and the chosen
sample's :class:`SampleDetail`), :class:`SideBySide`, :class:`Agreement` and :class:`Pairwise`
(the learned judge's pairwise battles: their images and answers for the admin, their agreement
with the checker and people for everyone). The queries are ``app.inspector``'s (no torch
here); opening the tab runs the first search and fills the choosers.
"""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr
import pandas as pd

from .. import charts, inspector
from ..errors import ArenaError
from ..workspace import LEARNED_JUDGE, PAIRWISE_VOTE_JUDGES
from .common import PRIVATE, Loader, Studio, Tab, client_address, show_image, task_radio

NO_SAMPLE = ("No sample matches: the gallery may still be filling (see “Models in the arena”), "
             "or the filters leave none out; widen them and press Search.")
ALL = "(all)"
AGREEMENT_HEADERS = ["judge · pair", "human votes", "compared", "judge agrees", "agreement"]
CHECKER_HEADERS = ["models", "judged", "agree", "judge passes, checker fails", "judge fails, checker passes", "agreement"]


@dataclass
class SampleDetail:
    """One sample: its image (and source), total, components, rationale, prompt, and the learned
    judge's chain of thought beside the exact checker's verdict."""

    image: gr.Image
    source: gr.Image
    total: gr.Textbox
    components: gr.Dataframe
    rationale: gr.Textbox
    prompt: gr.Textbox
    learned: gr.Textbox
    checker: gr.Textbox

    @property
    def outputs(self) -> list:
        return [self.image, self.source, self.total, self.components, self.rationale, self.prompt, self.learned, self.checker]

    def updates(self, detail: dict | None) -> dict:
        """The panels of ``detail`` (``app.inspector.sample_detail``), or, with none, why they are empty."""
        side = {self.learned: detail["learned_rationale"] if detail else "",
                self.checker: "\n\n".join(filter(None, [detail["checker_rationale"], inspector.one_pixel(detail)])) if detail else ""}
        if detail is None:  # the rationale panel says why it is empty, never nothing
            return {self.image: None, self.source: None, self.total: "", self.rationale: NO_SAMPLE, self.prompt: "",
                    self.components: pd.DataFrame(columns=["component", "score"]), **side}
        score = detail["score"]
        return {
            **side,
            self.image: show_image(detail["image"]),
            self.source: gr.Image(value=show_image(detail["source"]) if detail["source"] is not None else None,
                                  visible=detail["source"] is not None),
            self.total: f"{detail['model']} · {detail['task']} · {detail['family']} · seed {detail['seed']} · "
                        f"total {'—' if score is None else f'{score:.3f}'} ({detail['judge']})",
            self.components: pd.DataFrame(detail["components"], columns=["component", "score"]),
            self.rationale: detail["rationale"],
            self.prompt: detail["prompt"],
        }


def detail_layout() -> SampleDetail:
    with gr.Row():
        source = gr.Image(label="Source", interactive=False, type="pil", format="png", elem_classes="pixelated", height=256)
        image = gr.Image(label="Image", interactive=False, type="pil", format="png", elem_classes="pixelated", height=256,
                         elem_id="ri-image")
        with gr.Column():
            prompt = gr.Textbox(label="Prompt / instruction", interactive=False, elem_id="ri-prompt")
            total = gr.Textbox(label="Total", interactive=False, elem_id="ri-total")
            components = gr.Dataframe(headers=["component", "score"], interactive=False, elem_id="ri-components")
    rationale = gr.Textbox(label="Rationale", interactive=False, lines=10, elem_id="ri-rationale")
    with gr.Row():
        learned = gr.Textbox(label="Learned judge (shapes-judge): chain of thought", interactive=False, lines=6,
                             elem_id="ri-learned")
        checker = gr.Textbox(label="Exact checker", interactive=False, lines=6, elem_id="ri-checker")
    return SampleDetail(image, source, total, components, rationale, prompt, learned, checker)


@dataclass
class SampleSearch:
    """The filters, the matching samples (thumbnails, labelled with model and score) and the detail."""

    task: gr.Radio
    model: gr.Dropdown
    family: gr.Dropdown
    order: gr.Radio
    score_min: gr.Slider
    score_max: gr.Slider
    verdict: gr.Dropdown
    search: gr.Button
    results: gr.State
    status: gr.Markdown
    gallery: gr.Gallery
    detail: SampleDetail

    @property
    def inputs(self) -> list:
        return [self.task, self.model, self.family, self.order, self.score_min, self.score_max, self.verdict]

    @property
    def outputs(self) -> list:
        return [self.results, self.status, self.gallery, *self.detail.outputs]

    def choices(self, models: list[str], families: list[str]) -> dict:
        return {self.model: gr.Dropdown(choices=[ALL] + models, value=ALL),
                self.family: gr.Dropdown(choices=[ALL] + families, value=ALL)}

    def found(self, studio: Studio, rows: list[dict], order: str) -> dict:
        """The matching samples, the first shown and marked selected (the detail panels are never blank)."""
        ws = studio.ws
        short = inspector.short_names(sorted({r["model"] for r in rows}))
        items = [(show_image(ws.root / r["image_path"]),
                  f"{short[r['model']]} {'—' if r['score'] is None else format(r['score'], '.2f')}") for r in rows]
        first = inspector.sample_detail(ws, rows[0]["sample_id"]) if rows else None
        status = f"{len(rows)} sample(s), {order}; each labelled with its model and score" if rows else f"**{NO_SAMPLE}**"
        return {self.results: [r["sample_id"] for r in rows], self.status: status,
                self.gallery: gr.Gallery(value=items, selected_index=0 if items else None), **self.detail.updates(first)}

    def refused(self, why: str) -> dict:
        """No search: why, where the filters are."""
        return {self.results: [], self.gallery: gr.Gallery(value=[], selected_index=None), self.status: f"**{why}**",
                **self.detail.updates(None)}


def search_layout() -> SampleSearch:
    with gr.Row():
        task = task_radio("ri-task")
        model = gr.Dropdown([ALL], value=ALL, label="Model", elem_id="ri-model")
        family = gr.Dropdown([ALL], value=ALL, label="Family", elem_id="ri-family")
        order = gr.Radio(["lowest first", "highest first"], value="lowest first", label="Sort by score")
    with gr.Row():
        score_min = gr.Slider(0, 1, value=0, step=0.01, label="Score at least", elem_id="ri-score-min")
        score_max = gr.Slider(0, 1, value=1, step=0.01, label="Score at most", elem_id="ri-score-max")
        verdict = gr.Dropdown(list(inspector.VERDICT_FILTERS), value="all samples", elem_id="ri-verdict",
                              label="Learned judge vs exact checker")
        search = gr.Button("Search", variant="primary", elem_id="ri-search")
    results = gr.State([])
    status = gr.Markdown("", elem_id="ri-status")  # right under the filters: how many match, or why none does
    gallery = gr.Gallery(label="Samples (click one)", columns=8, height=300, format="png", allow_preview=False,
                         elem_id="ri-gallery", elem_classes="pixelated")
    return SampleSearch(task, model, family, order, score_min, score_max, verdict, search, results, status, gallery,
                        detail_layout())


@dataclass
class SideBySide:
    """Two models' images of one prompt and seed, each with its total and rationale."""

    model_a: gr.Dropdown
    model_b: gr.Dropdown
    prompt: gr.Dropdown
    go: gr.Button
    sides: list[tuple[gr.Image, gr.Textbox, gr.Textbox]]  #: (image, total, rationale) of A, then B

    @property
    def outputs(self) -> list:
        return [c for side in self.sides for c in side]

    def choices(self, models: list[str], prompts: list[tuple[str, str]]) -> dict:
        return {self.model_a: gr.Dropdown(choices=models, value=models[0] if models else None),
                self.model_b: gr.Dropdown(choices=models, value=models[1] if len(models) > 1 else None),
                self.prompt: gr.Dropdown(choices=prompts, value=prompts[0][1] if prompts else None)}

    def updates(self, details: tuple[dict | None, dict | None]) -> dict:
        out = {}
        for d, (image, total, rationale) in zip(details, self.sides):
            out[image] = show_image(d["image"]) if d else None
            out[total] = "—" if d is None else f"{d['model']}: {'—' if d['score'] is None else format(d['score'], '.3f')}"
            out[rationale] = d["rationale"] if d else "no sample of this model for this prompt yet"
        return out


def side_by_side_layout() -> SideBySide:
    gr.Markdown("### Side by side: two models, same prompt and seed")
    with gr.Row():
        model_a = gr.Dropdown([], label="Model A", elem_id="ri-cmp-a")
        model_b = gr.Dropdown([], label="Model B", elem_id="ri-cmp-b")
        prompt = gr.Dropdown([], label="Prompt", elem_id="ri-cmp-prompt")
        go = gr.Button("Compare", elem_id="ri-cmp-go")
    sides = []
    with gr.Row():
        for side in "AB":
            with gr.Column():
                sides.append((gr.Image(label=side, interactive=False, type="pil", format="png", elem_classes="pixelated", height=256),
                              gr.Textbox(label=f"{side}: total", interactive=False),
                              gr.Textbox(label=f"{side}: rationale", interactive=False, lines=8)))
    return SideBySide(model_a, model_b, prompt, go, sides)


@dataclass
class Agreement:
    """Reward distributions per model, and the judges' agreement with people and with the checker."""

    go: gr.Button
    distribution: gr.Plot
    agreement: gr.Dataframe
    checker_agreement: gr.Dataframe

    @property
    def outputs(self) -> list:
        return [self.distribution, self.agreement, self.checker_agreement]

    def updates(self, studio: Studio, task: str) -> dict:
        ws = studio.ws
        rows = [[f"composite · {r[0]}", *r[1:]] for r in inspector.agreement_rows(inspector.agreement(ws, task))]
        learned = inspector.agreement(ws, task, judge=inspector.learned_judge(task))
        rows += [[f"learned judge · {r[0]}", *r[1:]] for r in inspector.agreement_rows(learned)]
        return {
            self.distribution: charts.reward_distribution_figure(inspector.reward_frame(ws, task)),
            self.agreement: pd.DataFrame(rows, columns=AGREEMENT_HEADERS),
            self.checker_agreement: pd.DataFrame(inspector.checker_agreement_rows(inspector.judge_checker_agreement(ws, task)),
                                                 columns=CHECKER_HEADERS),
        }


def agreement_layout() -> Agreement:
    gr.Markdown("### Reward distributions, judge–human and judge–checker agreement")
    go = gr.Button("Update", elem_id="ri-stats")
    distribution = gr.Plot(label="Composite reward per model")
    agreement = gr.Dataframe(headers=AGREEMENT_HEADERS, interactive=False, elem_id="ri-agreement")
    checker_agreement = gr.Dataframe(headers=CHECKER_HEADERS, interactive=False, elem_id="ri-checker-agreement",
                                     label="Learned judge vs exact checker (pass/fail)")
    return Agreement(go, distribution, agreement, checker_agreement)


ADMIN_ONLY = ("The pairwise judges' battles are the automatic arena's, over the images anonymous battles show, and "
              "the vote export names their models: browsing them is for the admin. Log in above to see each battle's "
              "images and the judge's answer; the agreement below is for everyone.")
NO_ADMIN = ("Browsing the pairwise judges' battles is for the admin (they show arena images): start the studio with "
            "--admin-password (or QWENRL_ADMIN_PASSWORD). The agreement below is for everyone.")


def shown_judge(judge: str) -> str:
    """The pairwise judge a page asked for, or the learned judge when the value is not one (a forged event)."""
    return judge if judge in PAIRWISE_VOTE_JUDGES else LEARNED_JUDGE


@dataclass
class Pairwise:
    """A pairwise judge's battles (the learned judge's or the reader's): the admin's battle
    chooser with both images, the judge's answer and the checker's verdicts; everyone's agreement
    table (counts only)."""

    judge: gr.Radio  #: which pairwise judge's votes (``PAIRWISE_VOTE_JUDGES``)
    admin: gr.State  #: True once this page logged in here
    password: gr.Textbox
    unlock: gr.Button
    status: gr.Markdown
    ids: gr.State  #: the listed battles' ids, by chooser index (kept on the server)
    battle: gr.Dropdown
    source: gr.Image
    image_a: gr.Image
    image_b: gr.Image
    rationale: gr.Textbox
    summary: gr.Textbox
    agreement: gr.Dataframe

    @property
    def detail_outputs(self) -> list:
        return [self.source, self.image_a, self.image_b, self.rationale, self.summary]

    @property
    def outputs(self) -> list:
        return [self.status, self.ids, self.battle, self.agreement, *self.detail_outputs]

    def detail(self, detail: dict | None, task: str, judge: str) -> dict:
        """Both images (and the source), the judge's answer and the verdicts in words; with none, why."""
        if detail is None:
            return {self.source: gr.Image(value=None, visible=False), self.image_a: None, self.image_b: None,
                    self.rationale: "", self.summary: inspector.no_pairwise_text(task, judge)}
        source = detail["source"]
        return {self.source: gr.Image(value=show_image(source) if source is not None else None, visible=source is not None),
                self.image_a: show_image(detail["image_a"]), self.image_b: show_image(detail["image_b"]),
                self.rationale: detail["rationale"] or "no answer was kept with this battle",
                self.summary: inspector.pairwise_summary(detail, task, judge)}

    def shown(self, studio: Studio, task: str, is_admin: bool, judge: str) -> dict:
        """The agreement table, and for the admin the battles (the first one shown)."""
        ws = studio.ws
        judge = shown_judge(judge)
        table = {self.agreement: pd.DataFrame(inspector.pairwise_agreement_rows(inspector.pairwise_agreement(ws, task, judge)),
                                              columns=inspector.PAIRWISE_HEADERS)}
        if not is_admin:
            return {**table, self.status: ADMIN_ONLY if studio.auth.enabled else NO_ADMIN, self.ids: [],
                    self.battle: gr.Dropdown(choices=[], value=None), **self.detail(None, task, judge),
                    self.summary: ""}
        battles = inspector.pairwise_battles(ws, task, judge)
        first = inspector.pairwise_detail(ws, battles[0]["battle_id"], judge) if battles else None
        status = f"{len(battles)} battle(s) judged by the {PAIRWISE_VOTE_JUDGES[judge]}" if battles else \
            f"**{inspector.no_pairwise_text(task, judge)}**"
        return {**table, self.status: status, self.ids: [b["battle_id"] for b in battles],
                self.battle: gr.Dropdown(choices=inspector.pairwise_choices(battles), value=0 if battles else None),
                **self.detail(first, task, judge)}


def pairwise_layout(studio: Studio) -> Pairwise:
    gr.Markdown("### Pairwise judges")
    judge = gr.Radio([(label, name) for name, label in PAIRWISE_VOTE_JUDGES.items()], value=LEARNED_JUDGE,
                     label="Whose votes (the reader: the positions judge reads each image, the world's rules decide; "
                           "by the likelier pass: the image whose reading is likelier to pass wins)",
                     elem_id="ri-pair-judge")
    with gr.Row():
        password = gr.Textbox(label="Admin password", type="password", elem_id="ri-pair-password", scale=3,
                              interactive=studio.auth.enabled)
        unlock = gr.Button("Show the battles", elem_id="ri-pair-unlock", scale=1, interactive=studio.auth.enabled)
    status = gr.Markdown("", elem_id="ri-pair-status")
    battle = gr.Dropdown([], label="Battle (prompt · models · the judge's pick)", elem_id="ri-pair-battle")
    with gr.Row():
        source = gr.Image(label="Source", interactive=False, type="pil", format="png", elem_classes="pixelated",
                          height=256, visible=False)
        image_a = gr.Image(label="A", interactive=False, type="pil", format="png", elem_classes="pixelated", height=256,
                           elem_id="ri-pair-a")
        image_b = gr.Image(label="B", interactive=False, type="pil", format="png", elem_classes="pixelated", height=256,
                           elem_id="ri-pair-b")
    with gr.Row():
        rationale = gr.Textbox(label="The judge's answer (rationale)", interactive=False, lines=6,
                               elem_id="ri-pair-rationale")
        summary = gr.Textbox(label="Read: the judge's verdicts and the exact checker's", interactive=False, lines=6,
                             elem_id="ri-pair-summary")
    agreement = gr.Dataframe(headers=inspector.PAIRWISE_HEADERS, interactive=False, elem_id="ri-pair-agreement",
                             label="Pairwise judge vs the exact checker and people (n: what each rate counts)")
    return Pairwise(judge, gr.State(False), password, unlock, status, gr.State([]), battle, source, image_a, image_b, rationale,
                    summary, agreement)


def wire_pairwise(studio: Studio, task: gr.Radio, view: Pairwise) -> Loader:
    """The pairwise section's events; returns its loader (run when the tab opens)."""
    ws = studio.ws

    def show(task_value: str, is_admin: bool, judge: str) -> dict:
        return view.shown(studio, task_value, bool(is_admin), judge)

    def log_in(secret: str, task_value: str, judge: str, request: gr.Request) -> dict:
        try:  # wrong passwords count against this client, as the Training tab's and REST's do
            ok = studio.auth.verify(secret, client_address(request))
        except ArenaError as exc:
            return {view.admin: False, view.password: "", view.status: f"**Refused: {exc}**"}
        if not ok:
            return {view.admin: False, view.password: "",
                    view.status: "**Wrong password.**" if studio.auth.enabled else NO_ADMIN}
        return {view.admin: True, view.password: "", **view.shown(studio, task_value, True, judge)}

    def pick(task_value: str, is_admin: bool, judge: str, ids: list[str], index: int | None) -> dict:
        judge = shown_judge(judge)
        if not is_admin or index is None or not 0 <= int(index) < len(ids):
            return view.detail(None, task_value, judge)
        return view.detail(inspector.pairwise_detail(ws, ids[int(index)], judge), task_value, judge)

    # private, as the Training tab's: the admin's events are not callable through the Gradio API
    task.change(show, [task, view.admin, view.judge], view.outputs, **PRIVATE)
    view.judge.change(show, [task, view.admin, view.judge], view.outputs, **PRIVATE)
    view.unlock.click(log_in, [view.password, task, view.judge], [view.admin, view.password, *view.outputs], **PRIVATE)
    view.battle.input(pick, [task, view.admin, view.judge, view.ids, view.battle], view.detail_outputs, **PRIVATE)
    return Loader(show, [task, view.admin, view.judge], view.outputs)


def build(studio: Studio) -> Tab:
    """The tab and its events; opening it runs the first search (lowest scores first), fills the
    choosers and draws the charts."""
    ws = studio.ws
    search, compare, stats = search_layout(), side_by_side_layout(), agreement_layout()
    pairwise = pairwise_layout(studio)

    def choices(task_value: str) -> dict:
        return search.choices([m["name"] for m in ws.store.list_models(task_value) if m["kind"] != "imported"],
                              inspector.families(ws, task_value))

    def run_search(task_value, model_value, family_value, order_value, lo, hi, verdict_value) -> dict:
        if float(lo) > float(hi):  # an empty range: say so where the filters are, not below the page
            return search.refused(f"“Score at least” ({float(lo):.2f}) is above “Score at most” ({float(hi):.2f}): no "
                                  "score lies between them. Swap them, or lower the first.")
        rows = inspector.samples_table(
            ws, task_value, model=None if model_value in (None, ALL) else model_value,
            family=None if family_value in (None, ALL) else family_value,
            score_min=float(lo), score_max=float(hi), order=order_value, verdict=verdict_value or "all samples",
        )
        return search.found(studio, rows, order_value)

    def pick(ids: list[int], evt: gr.SelectData) -> dict:
        index = evt.index if isinstance(evt.index, int) else (evt.index[0] if evt.index else 0)
        if not ids or index is None or index >= len(ids):
            return search.detail.updates(None)
        return search.detail.updates(inspector.sample_detail(ws, ids[index]))

    def compare_choices(task_value: str) -> dict:
        return compare.choices([m["name"] for m in ws.store.list_models(task_value) if m["kind"] != "imported"],
                               inspector.pool_prompts(ws, task_value))

    def run_compare(task_value, a, b, pool_id) -> dict:
        if not (a and b and pool_id):
            return {compare.sides[0][1]: "choose two models and a prompt"}
        return compare.updates(inspector.compare(ws, task_value, a, b, pool_id))

    def run_stats(task_value: str) -> dict:
        return stats.updates(studio, task_value)

    events = {"api_visibility": "undocumented"}
    search.task.change(choices, [search.task], [search.model, search.family], **events).then(
        run_search, search.inputs, search.outputs, **events)
    search.search.click(run_search, search.inputs, search.outputs, **events)
    search.gallery.select(pick, [search.results], search.detail.outputs, **events)
    search.task.change(compare_choices, [search.task], [compare.model_a, compare.model_b, compare.prompt], **events)
    compare.go.click(run_compare, [search.task, compare.model_a, compare.model_b, compare.prompt], compare.outputs, **events)
    stats.go.click(run_stats, [search.task], stats.outputs, **events)
    return Tab(on_open=[Loader(run_search, search.inputs, search.outputs),
                        Loader(choices, [search.task], [search.model, search.family]),
                        Loader(compare_choices, [search.task], [compare.model_a, compare.model_b, compare.prompt]),
                        Loader(run_stats, [search.task], stats.outputs),
                        wire_pairwise(studio, search.task, pairwise)])
