"""The studio's Gradio Blocks: Arena, Leaderboard, Reward inspector, Training (admin).

Handlers are thin adapters: they read the inputs, call ``ArenaService`` (``app.service``),
the inspector queries (``app.inspector``) or the ``JobManager`` (``app.jobs``), and return a
dict of component updates. Per-user state lives in ``gr.State`` (the current battle of each
arena, the admin login); the voter is the browser's ``qwenrl_voter`` cookie (set by the
server for every client), else the Gradio session. Prompts and model names are shown in
text components, never as raw HTML.

    blocks = build_studio(Studio(service, jobs, auth))
"""

from __future__ import annotations

import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd
import yaml
from PIL import Image

from . import boards, charts, inspector
from .jobs import CONFIG_DIR, DISTILL_DESIGNS, OBJECTIVES, JobError, JobManager, config_design, config_objective, list_configs, resolve_config
from .kway import build_kway_tab
from .named import build_named_tab
from .live import MAX_PROMPT_CHARS
from .auth import AdminAuth
from .errors import ArenaError
from .service import VOTE_FILTERS, ArenaService, export_name

TASK_LABELS = {"t2i": "Text to image", "edit": "Editing"}
BUTTONS = (("model_a", "A is better"), ("model_b", "B is better"), ("tie", "Tie"),
           ("tie (bothbad)", "Both are bad"))
#: the keyboard shortcut of each vote button (the page's script clicks ``.vote-key-N`` of the open arena)
VOTE_KEYS = ("a", "b", "t", "x")
NEXT_KEY = "n"
OUTCOME_TEXT = {"model_a": "A is better", "model_b": "B is better", "tie": "Tie", "tie (bothbad)": "Both are bad"}
VOTER_COOKIE = "qwenrl_voter"
_VOTER_RE = re.compile(r"^[0-9a-f]{32}$")
DISPLAY_SCALE = 1  # images go out at their own size; CSS enlarges them with crisp pixels
LEADERBOARD_HEADERS = ["Rank (UB)", "Model", "Elo (BT)", "95% CI", "Online Elo", "TrueSkill μ", "TrueSkill σ",
                       "TrueSkill μ−3σ", "Votes", "Win rate", "Lineage"]
CSS = """
.pixelated img { image-rendering: pixelated; object-fit: contain !important; }
/* leaderboard headers break between words, never inside one ("TrueSkil/l μ") */
#lb-table th, #lb-table th * { white-space: nowrap !important; word-break: keep-all !important; overflow-wrap: normal !important; }
/* the inspector's thumbnail labels (model and score) wrap rather than being cut */
#ri-gallery .caption-label { white-space: normal !important; overflow: visible !important; text-overflow: clip !important;
  max-width: 100% !important; line-height: 1.2; }
/* the chosen vote stays marked after the reveal */
.vote-buttons button.voted { outline: 3px solid var(--color-accent); outline-offset: 2px; opacity: 1 !important; }
/* a phone (390 px wide): both images side by side and the vote buttons on the first screen */
@media (max-width: 600px) {
  .gradio-container { padding: 4px !important; }
  .studio-title h1 { font-size: 1.2em; margin: 0; }
  .studio-title p { display: none; }
  .battle-images { flex-wrap: nowrap !important; gap: 4px !important; }
  .battle-images > div { min-width: 0 !important; flex: 1 1 0 !important; }
  .battle-images .image-container, .battle-images .image-frame, .battle-images img { max-height: 150px !important; }
  .battle-images > div, .battle-images .block { height: auto !important; }
  .battle-images .image-container { height: 150px !important; }
  .vote-buttons { flex-wrap: wrap !important; gap: 4px !important; }
  .vote-buttons button { min-width: 45% !important; flex: 1 1 45% !important; }
}
"""

#: the page's script: keys a, b, t and x vote in the arena on screen, n opens its next battle
#: (not while typing in a text box)
KEYS_JS = """
<script>
document.addEventListener("keydown", (event) => {
  if (event.ctrlKey || event.metaKey || event.altKey || event.repeat) return;
  const target = event.target;
  if (target && (target.tagName === "INPUT" || target.tagName === "TEXTAREA" || target.isContentEditable)) return;
  const keys = {%(keys)s};
  const key = event.key.toLowerCase();
  const selector = key in keys ? ".vote-key-" + keys[key] : (key === "%(next)s" ? ".next-battle" : null);
  if (!selector) return;
  const button = [...document.querySelectorAll(selector)].find((el) => el.offsetParent !== null && !el.disabled);
  if (button) { button.click(); event.preventDefault(); }
});
</script>
""" % {"keys": ", ".join(f'"{k}": {i}' for i, k in enumerate(VOTE_KEYS)), "next": NEXT_KEY}


@dataclass
class Studio:
    """What the handlers call: the arena service, the job manager and the admin check."""

    service: ArenaService
    jobs: JobManager | None
    auth: AdminAuth

    status_ttl_s: float = 2.0
    _status: tuple[float, list] = (0.0, [])

    @property
    def ws(self):
        return self.service.ws

    def gallery_status(self) -> list[dict[str, Any]]:
        """The workspace's model rows, shared by every open page for ``status_ttl_s``."""
        now = time.monotonic()
        if now - self._status[0] >= self.status_ttl_s:
            self._status = (now, self.ws.gallery_status())
        return self._status[1]


def voter_id(request: gr.Request | None) -> str:
    """The browser's voter cookie, else the Gradio session (one voter per browser session)."""
    if request is None:
        return "anonymous"
    cookies = getattr(request, "cookies", None) or {}
    cookie = cookies.get(VOTER_COOKIE) if hasattr(cookies, "get") else None
    if cookie and _VOTER_RE.match(cookie):
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


# ---------------------------------------------------------------------------------------------
# Arena
# ---------------------------------------------------------------------------------------------


@dataclass
class ArenaView:
    task: str
    state: gr.State
    prompt: gr.Textbox
    source: gr.Image
    image_a: gr.Image
    image_b: gr.Image
    buttons: list[gr.Button]
    reveal: gr.Textbox
    next_button: gr.Button
    own_source: gr.Dropdown | None = None  #: editing with live prompts: the source chooser

    @property
    def outputs(self) -> list:
        return [self.state, self.prompt, self.source, self.image_a, self.image_b, *self.buttons, self.reveal]

    def updates(self, battle) -> dict:
        """A new battle on screen: its prompt and images, names hidden, the vote buttons on."""
        return {
            self.state: battle_state(battle),
            self.prompt: battle.prompt,
            self.source: show_image(battle.source),
            self.image_a: gr.Image(value=show_image(battle.image_a), label="A"),
            self.image_b: gr.Image(value=show_image(battle.image_b), label="B"),
            self.reveal: "",
            **{b: gr.Button(interactive=True, variant="secondary", elem_classes=vote_classes(i))
               for i, b in enumerate(self.buttons)},
        }


CURRENT_SOURCE = "current"


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


def verdict_text(side: str, d: dict) -> str:
    """``A — shapes-base: checker passes; reward 0.91`` (and why the checker fails it)."""
    checker = "not judged" if d["checker"] is None else "checker passes" if d["checker"] else "checker fails"
    found = re.search(r"[Tt]he image fails: ([^;]+)", d["reasons"]) if d["checker"] is False else None
    reasons = found.group(1).strip().rstrip(".)") if found else ""  # the first reason is enough here
    reward = "" if d["score"] is None else f"; reward {d['score']:.2f}"
    return f"{side} — {d['model']}: {checker}{f' ({reasons})' if reasons else ''}{reward}"


def revealed_updates(studio: Studio, result, outcome: str, image_a, image_b, buttons: list, reveal) -> dict:
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


def battle_state(battle) -> dict:
    """What a page keeps of its open battle (``gr.State``): the id, whether voted, its source."""
    return {"battle_id": battle.battle_id, "voted": False, "source_id": battle.source_id}


def source_choices(studio: Studio) -> list[tuple[str, str]]:
    """The editing source chooser: this battle's source first, then every gallery source."""
    return [("this battle's source image", CURRENT_SOURCE)] + [
        (f"{src['description']}  [{src['source_id']}]", src["source_id"]) for src in studio.service.edit_sources()]


def _arena_tab(studio: Studio, task: str) -> ArenaView:
    state = gr.State(None)
    label = "Instruction" if task == "edit" else "Prompt"
    prompt = gr.Textbox(label=label, interactive=False, elem_id=f"{task}-prompt")
    source, image_a, image_b = battle_images(task)
    buttons = vote_buttons(task)
    reveal = gr.Textbox(label="Result", interactive=False, elem_id=f"{task}-reveal", lines=2)
    next_button = gr.Button(f"Next battle ({NEXT_KEY})", variant="primary", elem_id=f"{task}-next",
                            elem_classes="next-battle")
    view = ArenaView(task, state, prompt, source, image_a, image_b, buttons, reveal, next_button)
    own_prompt = own_go = own_source = own_preview = None
    if task == "t2i" and studio.service.live is not None:
        with gr.Row():
            own_prompt = gr.Textbox(label="Or battle on your own prompt (Shapes words, e.g. “a red square above a blue circle”)",
                                    max_length=MAX_PROMPT_CHARS, elem_id="t2i-own-prompt", scale=4)
            own_go = gr.Button("Battle on my prompt", elem_id="t2i-own-go", scale=1)
    if task == "edit" and studio.service.live is not None:
        with gr.Row():
            with gr.Column(scale=4):
                own_prompt = gr.Textbox(
                    label="Or battle on your own instruction (Shapes words, e.g. “make the background black”, "
                          "“add a small red circle”)", max_length=MAX_PROMPT_CHARS, elem_id="edit-own-prompt")
                own_source = gr.Dropdown(source_choices(studio), value=CURRENT_SOURCE, label="over the source image",
                                         elem_id="edit-own-source")
                own_go = gr.Button("Battle on my instruction", elem_id="edit-own-go")
            own_preview = gr.Image(label="Source to edit", interactive=False, type="pil", format="png", scale=1,
                                   elem_id="edit-own-preview", elem_classes="pixelated", height=200, visible=False)
        view.own_source = own_source

    def show_battle(make, keep_on_refusal: bool = False) -> dict:
        try:
            battle = make()
        except ArenaError as exc:
            if keep_on_refusal:  # a refused prompt of the visitor's leaves the open battle (and its source) as it was
                return {reveal: str(exc)}
            return {state: None, prompt: "", reveal: str(exc), image_a: None, image_b: None,
                    **{b: gr.Button(interactive=False, variant="secondary", elem_classes=vote_classes(i))
                       for i, b in enumerate(buttons)}}
        return view.updates(battle)

    def new_battle(request: gr.Request) -> dict:
        return show_battle(lambda: studio.service.new_battle(task, voter_id(request), address=client_address(request)))

    def own_battle(text: str, request: gr.Request) -> dict:
        voter = voter_id(request)

        def make():
            studio.service.throttle(voter)
            return studio.service.live_battle(task, text, voter, address=client_address(request))

        return show_battle(make, keep_on_refusal=True)

    def own_edit(text: str, chosen: str | None, current: dict | None, request: gr.Request) -> dict:
        voter = voter_id(request)
        source_id = (current or {}).get("source_id") if chosen in (None, CURRENT_SOURCE) else chosen
        if not source_id:
            return {reveal: "No source image yet: wait for a battle, or choose a source from the gallery."}

        def make():
            studio.service.throttle(voter)
            return studio.service.live_battle(task, text, voter, source_id=source_id, address=client_address(request))

        return show_battle(make, keep_on_refusal=True)

    def preview(chosen: str | None) -> dict:
        found = studio.ws.edit_source(chosen) if chosen not in (None, CURRENT_SOURCE) else None
        return {own_preview: gr.Image(value=show_image(found["path"]) if found else None, visible=found is not None)}

    def make_vote(outcome: str):
        def vote(current: dict | None, request: gr.Request) -> dict:
            if not current or current.get("voted"):
                return {reveal: "No open battle: press “Next battle”."}
            voter = voter_id(request)
            try:
                studio.service.throttle(voter)
                result = studio.service.vote(current["battle_id"], outcome, voter)
            except ArenaError as exc:
                return {reveal: f"Vote refused: {exc}"}
            return {state: {**current, "voted": True},
                    **revealed_updates(studio, result, outcome, image_a, image_b, buttons, reveal)}

        return vote

    next_button.click(new_battle, None, view.outputs, api_name=f"new_battle_{task}")
    if own_go is not None and task == "t2i":
        own_go.click(own_battle, [own_prompt], view.outputs, api_name="live_battle_t2i")
        own_prompt.submit(own_battle, [own_prompt], view.outputs, api_name=False)
    if own_go is not None and task == "edit":
        own_go.click(own_edit, [own_prompt, own_source, state], view.outputs, api_name="live_battle_edit")
        own_prompt.submit(own_edit, [own_prompt, own_source, state], view.outputs, api_name=False)
        own_source.change(preview, [own_source], [own_preview], api_visibility="private")
    for (outcome, _), button in zip(BUTTONS, buttons):
        name = outcome.replace(" (bothbad)", "_bothbad").replace("model_", "")
        button.click(make_vote(outcome), [state], view.outputs, api_name=f"vote_{task}_{name}")
    return view


# ---------------------------------------------------------------------------------------------
# Leaderboard
# ---------------------------------------------------------------------------------------------


APART_HEADERS = ["Model", "Votes", "Needed", "Elo (BT)", "95% CI"]


def leaderboard_rows(studio: Studio, task: str, votes: str, include_flagged: bool = False,
                     category: str | None = None) -> tuple[list[list[Any]], list[str], list[list[Any]]]:
    """The ranked rows, the board's warnings, and the rows of models listed apart (too few votes)."""
    board, ranked, apart = studio.service.ranked(task, votes, include_flagged=include_flagged,  # type: ignore[arg-type]
                                                 category=category)
    lineage = {}
    for row in ranked:
        try:
            lineage[row["model"]] = studio.ws.lineage(row["model"])
        except ValueError:
            lineage[row["model"]] = row["model"]
    rows = [[r["rank_ub"], r["model"], round(r["elo"], 1), f"{r['ci_low']:.0f} – {r['ci_high']:.0f}",
             round(r["elo_online"], 1), round(r["trueskill_mu"], 2), round(r["trueskill_sigma"], 2),
             round(r["trueskill_score"], 2), r["votes"], f"{r['win_rate']:.0%}", lineage[r["model"]]]
            for r in ranked]
    unranked = [[r["model"], r["votes"], r["needed"], round(r["elo"], 1), f"{r['ci_low']:.0f} – {r['ci_high']:.0f}"]
                for r in apart]
    return rows, board.warnings, unranked


ALL_CATEGORIES = "all"
CONTROLLED_HEADERS = ["Model", "Elo (controlled)", "95% CI", "Elo (plain)", "Shift"]
COEFFICIENT_HEADERS = ["Covariate", "Elo per SD", "95% CI", "SD of the difference"]


def category_choices(studio: Studio, task: str, votes: str, with_flagged: bool) -> list[tuple[str, str]]:
    """The category chooser: every vote, then each category with its votes (short ones say so)."""
    counts = boards.categories(studio.service, task, votes, with_flagged)
    least = studio.service.category_min_votes
    return [("all categories", ALL_CATEGORIES)] + [
        (f"{name} ({n} vote{'s' if n != 1 else ''}{'' if n >= least else ', too few to rank'})", name)
        for name, n in counts.items()]


def controlled_tables(studio: Studio, task: str, votes: str, with_flagged: bool, category: str | None
                      ) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """Ratings with and without control for looks, the coefficients, and a note."""
    style = boards.controlled_board(studio.service, task, votes, include_flagged=with_flagged, category=category)
    rows = [[r["model"], round(r["elo"], 1), f"{r['ci_low']:.0f} – {r['ci_high']:.0f}", round(r["elo_uncontrolled"], 1),
             f"{r['shift']:+.1f}"] for r in style.rows]
    coefs = [[c["covariate"], f"{c['elo_per_sd']:+.1f}", f"{c['ci_low']:+.1f} – {c['ci_high']:+.1f}", round(c["sd"], 3)]
             for c in style.coefficients]
    note = (f"Style control from {style.votes} vote(s), {style.rounds} bootstrap rounds: Bradley–Terry with each image's "
            "covariates as extra terms. A positive coefficient means voters prefer more of it whatever the model; "
            "the controlled rating is what remains.")
    return (pd.DataFrame(rows, columns=CONTROLLED_HEADERS), pd.DataFrame(coefs, columns=COEFFICIENT_HEADERS),
            "\n".join([note, *style.warnings]))


def _leaderboard_tab(studio: Studio) -> tuple:
    with gr.Row():
        task = gr.Radio([(v, k) for k, v in TASK_LABELS.items()], value="t2i", label="Task", elem_id="lb-task")
        votes = gr.Radio(list(VOTE_FILTERS), value="human", label="Votes", elem_id="lb-votes",
                         info="human votes, automatic judges (oracle, rewards), or both")
        category = gr.Dropdown([("all categories", ALL_CATEGORIES)], value=ALL_CATEGORIES, label="Category",
                               elem_id="lb-category", info="the prompt's family, or the editing verb")
    with gr.Row():
        flagged = gr.Checkbox(False, label="Count flagged votes", elem_id="lb-flagged",
                              info="fast votes, named ones and excluded voters' (left out by default)")
        control = gr.Checkbox(False, label="Control for looks", elem_id="lb-control",
                              info="ratings with the images' aesthetics and object count as covariates")
        refresh = gr.Button("Refresh", elem_id="lb-refresh")
    # True once the visitor picks the votes themselves; until then the board follows the default view
    picked = gr.State(False)
    view = gr.Textbox(label="Showing", interactive=False, elem_id="lb-view")
    with gr.Row():
        with gr.Column(scale=3):
            table = gr.Dataframe(headers=LEADERBOARD_HEADERS, interactive=False, elem_id="lb-table", wrap=True)
        with gr.Column(scale=2):
            personal_note = gr.Textbox(label="Your board", interactive=False, elem_id="lb-personal-note")
            personal = gr.Dataframe(headers=["Rank (UB)", "Model", "Elo (BT)", "95% CI", "Votes"], interactive=False,
                                    elem_id="lb-personal", visible=False)
    apart = gr.Dataframe(headers=APART_HEADERS, interactive=False, elem_id="lb-apart", visible=False,
                         label=f"Listed apart, unranked: fewer than {studio.service.min_votes} votes in this view")
    notes = gr.Textbox(label="Notes", interactive=False, elem_id="lb-notes")
    with gr.Group(visible=False) as controlled_group:
        controlled = gr.Dataframe(headers=CONTROLLED_HEADERS, interactive=False, elem_id="lb-controlled",
                                  label="Controlled for looks")
        coefficients = gr.Dataframe(headers=COEFFICIENT_HEADERS, interactive=False, elem_id="lb-coefficients",
                                    label="What voters reward apart from the model")
        controlled_note = gr.Textbox(label="Style control", interactive=False, elem_id="lb-controlled-note")
    with gr.Row():
        intervals = gr.Plot(label="Intervals", elem_id="lb-intervals")
        heatmap = gr.Plot(label="Win rates", elem_id="lb-heatmap")
    history = gr.Plot(label="Elo over time", elem_id="lb-history")
    with gr.Row():
        dl_jsonl = gr.DownloadButton("Download votes (JSON lines)", elem_id="lb-download-jsonl")
        dl_csv = gr.DownloadButton("Download votes (CSV)", elem_id="lb-download-csv")

    def show_board(task_value: str, votes_value: str, is_picked: bool, with_flagged: bool, category_value: str | None,
                   with_control: bool, request: gr.Request) -> dict:
        why = f"Showing {votes_value} votes, as you chose."
        if not is_picked:
            votes_value, why = studio.service.default_view(task_value)
        choices = category_choices(studio, task_value, votes_value, with_flagged)
        chosen = category_value if category_value in {c[1] for c in choices} else ALL_CATEGORIES
        only = None if chosen == ALL_CATEGORIES else chosen
        board = studio.service.leaderboard(task_value, votes_value, include_flagged=with_flagged,  # type: ignore[arg-type]
                                           category=only)
        rows, warnings, unranked = leaderboard_rows(studio, task_value, votes_value, with_flagged, only)
        files = export_files(studio, task_value, votes_value)
        n = board.votes
        offline = f"qwenrl elo {files['jsonl'].name} --task {task_value}" + (" --include-flagged" if with_flagged else "")
        offline += f" --category {only}" if only else ""
        note = f"{n} {votes_value} vote(s) for {TASK_LABELS[task_value]}{f' in {only}' if only else ''}; " \
               f"95% intervals from {board.rounds} bootstrap rounds. Reproduce offline: {offline}"
        left_out = studio.service.flagged(task_value, votes_value)  # type: ignore[arg-type]
        if left_out:
            counts = ", ".join(f"{name} {k}" for name, k in left_out.items())
            note += f"\nFlagged votes ({counts}): {'counted' if with_flagged else 'left out; tick Count flagged votes to count them'}."
        mine = boards.personal_board(studio.service, task_value, voter_id(request))
        mine_rows = [[r["rank_ub"], r["model"], round(r["elo"], 1), f"{r['ci_low']:.0f} – {r['ci_high']:.0f}", r["votes"]]
                     for r in (mine.board.rows if mine.board else [])]
        out = {
            votes: votes_value,
            view: why,
            category: gr.Dropdown(choices=choices, value=chosen),
            table: pd.DataFrame(rows, columns=LEADERBOARD_HEADERS),
            apart: gr.Dataframe(value=pd.DataFrame(unranked, columns=APART_HEADERS), visible=bool(unranked)),
            notes: "\n".join([note, *warnings]),
            personal_note: mine.message,
            personal: gr.Dataframe(value=pd.DataFrame(mine_rows, columns=["Rank (UB)", "Model", "Elo (BT)", "95% CI", "Votes"]),
                                   visible=mine.board is not None),
            controlled_group: gr.Group(visible=with_control),
            intervals: charts.intervals_figure(board.rows),
            heatmap: charts.heatmap_figure(studio.service.win_rates(task_value, votes_value, include_flagged=with_flagged)),  # type: ignore[arg-type]
            history: charts.elo_history_figure(studio.service.elo_history(task_value, votes_value, include_flagged=with_flagged)),  # type: ignore[arg-type]
            dl_jsonl: gr.DownloadButton(value=str(files["jsonl"])),
            dl_csv: gr.DownloadButton(value=str(files["csv"])),
        }
        if with_control:
            out[controlled], out[coefficients], out[controlled_note] = controlled_tables(
                studio, task_value, votes_value, with_flagged, only)
        return out

    def pick_votes(task_value: str, votes_value: str, with_flagged: bool, category_value: str | None,
                   with_control: bool, request: gr.Request) -> dict:
        return {picked: True, **show_board(task_value, votes_value, True, with_flagged, category_value, with_control,
                                           request)}

    outputs = [votes, view, category, table, apart, notes, personal_note, personal, controlled_group, controlled, coefficients,
               controlled_note, intervals, heatmap, history, dl_jsonl, dl_csv]
    inputs = [task, votes, picked, flagged, category, control]
    # .input, not .change: setting the votes radio from show_board must not count as a choice
    for trigger in (refresh.click, task.input, flagged.input, category.input, control.input):
        trigger(show_board, inputs, outputs, api_visibility="undocumented")
    votes.input(pick_votes, [task, votes, flagged, category, control], [picked, *outputs], api_visibility="undocumented")
    return show_board, inputs, outputs


def export_files(studio: Studio, task: str, votes: str) -> dict[str, Path]:
    """The task's votes (every one, with its flags) written as JSON lines and CSV under ``workspace/exports``."""
    from arena.io import write_votes

    folder = studio.ws.root / "exports"
    folder.mkdir(exist_ok=True)
    frame = studio.service.votes(task, votes, include_flagged=True)  # type: ignore[arg-type]
    out = {}
    for fmt in ("jsonl", "csv"):
        path = folder / export_name(task, votes, fmt)  # the name REST gives the same votes
        write_votes(frame, path, format=fmt)
        out[fmt] = path
    return out


# ---------------------------------------------------------------------------------------------
# Reward inspector
# ---------------------------------------------------------------------------------------------


NO_SAMPLE = ("No sample matches: the gallery may still be filling (see “Models in the arena”), "
             "or the filters leave none out; widen them and press Search.")


def _detail_updates(detail: dict | None, image, source, total, components, rationale, prompt, learned=None,
                    checker=None) -> dict:
    # the learned judge's chain of thought and the exact checker's verdict, side by side
    side = {} if learned is None else {learned: detail["learned_rationale"] if detail else "",
                                       checker: detail["checker_rationale"] if detail else ""}
    if detail is None:  # the rationale panel says why it is empty, never nothing
        return {image: None, source: None, total: "", components: pd.DataFrame(columns=["component", "score"]),
                rationale: NO_SAMPLE, prompt: "", **side}
    score = detail["score"]
    return {
        **side,
        image: show_image(detail["image"]),
        source: gr.Image(value=show_image(detail["source"]) if detail["source"] is not None else None,
                         visible=detail["source"] is not None),
        total: f"{detail['model']} · {detail['task']} · {detail['family']} · seed {detail['seed']} · "
               f"total {'—' if score is None else f'{score:.3f}'} ({detail['judge']})",
        components: pd.DataFrame(detail["components"], columns=["component", "score"]),
        rationale: detail["rationale"],
        prompt: detail["prompt"],
    }


def _inspector_tab(studio: Studio) -> tuple:
    ws = studio.ws
    with gr.Row():
        task = gr.Radio([(v, k) for k, v in TASK_LABELS.items()], value="t2i", label="Task", elem_id="ri-task")
        model = gr.Dropdown(["(all)"], value="(all)", label="Model", elem_id="ri-model")
        family = gr.Dropdown(["(all)"], value="(all)", label="Family", elem_id="ri-family")
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
    with gr.Row():
        d_source = gr.Image(label="Source", interactive=False, type="pil", format="png", elem_classes="pixelated", height=256)
        d_image = gr.Image(label="Image", interactive=False, type="pil", format="png", elem_classes="pixelated", height=256,
                           elem_id="ri-image")
        with gr.Column():
            d_prompt = gr.Textbox(label="Prompt / instruction", interactive=False, elem_id="ri-prompt")
            d_total = gr.Textbox(label="Total", interactive=False, elem_id="ri-total")
            d_components = gr.Dataframe(headers=["component", "score"], interactive=False, elem_id="ri-components")
    d_rationale = gr.Textbox(label="Rationale", interactive=False, lines=10, elem_id="ri-rationale")
    with gr.Row():
        d_learned = gr.Textbox(label="Learned judge (shapes-judge): chain of thought", interactive=False, lines=6,
                               elem_id="ri-learned")
        d_checker = gr.Textbox(label="Exact checker", interactive=False, lines=6, elem_id="ri-checker")
    detail_outputs = [d_image, d_source, d_total, d_components, d_rationale, d_prompt, d_learned, d_checker]

    def choices(task_value: str) -> dict:
        models = ["(all)"] + [m["name"] for m in ws.store.list_models(task_value) if m["kind"] != "imported"]
        fams = ["(all)"] + inspector.families(ws, task_value)
        return {model: gr.Dropdown(choices=models, value="(all)"), family: gr.Dropdown(choices=fams, value="(all)")}

    def run_search(task_value, model_value, family_value, order_value, lo, hi, verdict_value) -> dict:
        if float(lo) > float(hi):  # an empty range: say so where the filters are, not below the page
            why = (f"“Score at least” ({float(lo):.2f}) is above “Score at most” ({float(hi):.2f}): no score lies "
                   "between them. Swap them, or lower the first.")
            return {results: [], gallery: gr.Gallery(value=[], selected_index=None), status: f"**{why}**",
                    **_detail_updates(None, *detail_outputs)}
        rows = inspector.samples_table(
            ws, task_value, model=None if model_value in (None, "(all)") else model_value,
            family=None if family_value in (None, "(all)") else family_value,
            score_min=float(lo), score_max=float(hi), order=order_value, verdict=verdict_value or "all samples",
        )
        short = inspector.short_names(sorted({r["model"] for r in rows}))
        items = [(show_image(ws.root / r["image_path"]),
                  f"{short[r['model']]} {'—' if r['score'] is None else format(r['score'], '.2f')}") for r in rows]
        first = inspector.sample_detail(ws, rows[0]["sample_id"]) if rows else None
        found = f"{len(rows)} sample(s), {order_value}; each labelled with its model and score" if rows else f"**{NO_SAMPLE}**"
        # the first sample is shown and marked selected, so the detail panels are never blank
        return {results: [r["sample_id"] for r in rows], status: found,
                gallery: gr.Gallery(value=items, selected_index=0 if items else None),
                **_detail_updates(first, *detail_outputs)}

    def pick(ids: list[int], evt: gr.SelectData) -> dict:
        index = evt.index if isinstance(evt.index, int) else (evt.index[0] if evt.index else 0)
        if not ids or index is None or index >= len(ids):
            return _detail_updates(None, *detail_outputs)
        return _detail_updates(inspector.sample_detail(ws, ids[index]), *detail_outputs)

    search_inputs = [task, model, family, order, score_min, score_max, verdict]
    search_outputs = [results, status, gallery, *detail_outputs]
    task.change(choices, [task], [model, family], api_visibility="undocumented").then(
        run_search, search_inputs, search_outputs, api_visibility="undocumented")
    search.click(run_search, search_inputs, search_outputs, api_visibility="undocumented")
    gallery.select(pick, [results], detail_outputs, api_visibility="undocumented")

    gr.Markdown("### Side by side: two models, same prompt and seed")
    with gr.Row():
        cmp_a = gr.Dropdown([], label="Model A", elem_id="ri-cmp-a")
        cmp_b = gr.Dropdown([], label="Model B", elem_id="ri-cmp-b")
        cmp_prompt = gr.Dropdown([], label="Prompt", elem_id="ri-cmp-prompt")
        cmp_go = gr.Button("Compare", elem_id="ri-cmp-go")
    with gr.Row():
        with gr.Column():
            ca_image = gr.Image(label="A", interactive=False, type="pil", format="png", elem_classes="pixelated", height=256)
            ca_total = gr.Textbox(label="A: total", interactive=False)
            ca_rationale = gr.Textbox(label="A: rationale", interactive=False, lines=8)
        with gr.Column():
            cb_image = gr.Image(label="B", interactive=False, type="pil", format="png", elem_classes="pixelated", height=256)
            cb_total = gr.Textbox(label="B: total", interactive=False)
            cb_rationale = gr.Textbox(label="B: rationale", interactive=False, lines=8)

    def compare_choices(task_value: str) -> dict:
        models = [m["name"] for m in ws.store.list_models(task_value) if m["kind"] != "imported"]
        prompts = inspector.pool_prompts(ws, task_value)
        return {
            cmp_a: gr.Dropdown(choices=models, value=models[0] if models else None),
            cmp_b: gr.Dropdown(choices=models, value=models[1] if len(models) > 1 else None),
            cmp_prompt: gr.Dropdown(choices=prompts, value=prompts[0][1] if prompts else None),
        }

    def run_compare(task_value, a, b, pool_id) -> dict:
        if not (a and b and pool_id):
            return {ca_total: "choose two models and a prompt"}
        da, db = inspector.compare(ws, task_value, a, b, pool_id)
        out = {}
        for d, img, tot, rat in ((da, ca_image, ca_total, ca_rationale), (db, cb_image, cb_total, cb_rationale)):
            out[img] = show_image(d["image"]) if d else None
            out[tot] = ("—" if d is None else f"{d['model']}: {'—' if d['score'] is None else format(d['score'], '.3f')}")
            out[rat] = d["rationale"] if d else "no sample of this model for this prompt yet"
        return out

    task.change(compare_choices, [task], [cmp_a, cmp_b, cmp_prompt], api_visibility="undocumented")
    cmp_go.click(run_compare, [task, cmp_a, cmp_b, cmp_prompt],
                 [ca_image, ca_total, ca_rationale, cb_image, cb_total, cb_rationale], api_visibility="undocumented")

    gr.Markdown("### Reward distributions, judge–human and judge–checker agreement")
    stats_go = gr.Button("Update", elem_id="ri-stats")
    distribution = gr.Plot(label="Composite reward per model")
    agreement = gr.Dataframe(headers=["judge · pair", "human votes", "compared", "judge agrees", "agreement"],
                             interactive=False, elem_id="ri-agreement")
    checker_cols = ["models", "judged", "agree", "judge passes, checker fails", "judge fails, checker passes", "agreement"]
    checker_agreement = gr.Dataframe(headers=checker_cols, interactive=False, elem_id="ri-checker-agreement",
                                     label="Learned judge vs exact checker (pass/fail)")

    def stats(task_value: str) -> dict:
        rows = [[f"composite · {r[0]}", *r[1:]] for r in inspector.agreement_rows(inspector.agreement(ws, task_value))]
        learned = inspector.agreement(ws, task_value, judge=inspector.learned_judge(task_value))
        rows += [[f"learned judge · {r[0]}", *r[1:]] for r in inspector.agreement_rows(learned)]
        return {
            distribution: charts.reward_distribution_figure(inspector.reward_frame(ws, task_value)),
            agreement: pd.DataFrame(rows, columns=["judge · pair", "human votes", "compared", "judge agrees", "agreement"]),
            checker_agreement: pd.DataFrame(inspector.checker_agreement_rows(inspector.judge_checker_agreement(ws, task_value)),
                                            columns=checker_cols),
        }

    stats_go.click(stats, [task], [distribution, agreement, checker_agreement], api_visibility="undocumented")
    # what the tab runs when it opens: the first page of samples (lowest scores first), the choosers, the charts
    return (run_search, search_inputs, search_outputs), (choices, [task], [model, family]), \
        (compare_choices, [task], [cmp_a, cmp_b, cmp_prompt]), (stats, [task], [distribution, agreement, checker_agreement])


# ---------------------------------------------------------------------------------------------
# Training (admin)
# ---------------------------------------------------------------------------------------------

JOB_HEADERS = ["id", "kind", "status", "config", "overrides", "created", "note"]


def config_fields(config: str | None, config_dir: Path = CONFIG_DIR) -> pd.DataFrame:
    """Top-level scalar fields of a config (the ones the launcher lets the admin edit)."""
    rows = []
    if config:
        try:
            data = yaml.safe_load(resolve_config(config, config_dir).read_text()) or {}
        except (OSError, yaml.YAMLError, JobError):
            data = {}
        for key, value in data.items() if isinstance(data, dict) else []:
            if isinstance(value, (str, int, float, bool)) or value is None:
                rows.append([str(key), "" if value is None else yaml.safe_dump(value).strip().removesuffix("\n...")])
    return pd.DataFrame(rows, columns=["field", "value"])


def changed_fields(config: str, table: Any, config_dir: Path = CONFIG_DIR) -> dict[str, str]:
    """The fields whose value the admin changed, as ``--set`` overrides."""
    original = {r[0]: r[1] for r in config_fields(config, config_dir).values.tolist()}
    frame = table if isinstance(table, pd.DataFrame) else pd.DataFrame(table, columns=["field", "value"])
    out = {}
    for key, value in frame.values.tolist():
        key, value = str(key).strip(), "" if value is None else str(value).strip()
        if key and original.get(key) != value:
            out[key] = value
    return out


def _jobs_frame(jobs: JobManager) -> pd.DataFrame:
    rows = []
    for j in reversed(jobs.store.list_jobs()):
        spec = j["config"]
        rows.append([j["id"], j["kind"], j["status"], Path(spec.get("config", "")).name,
                     " ".join(f"{k}={v}" for k, v in (spec.get("overrides") or {}).items()),
                     time.strftime("%H:%M:%S", time.localtime(j["created"])), j.get("error") or ""])
    return pd.DataFrame(rows, columns=JOB_HEADERS)


def _training_tab(studio: Studio) -> dict:
    admin = gr.State(False)
    # say at once when nobody can log in, rather than after a password is tried
    if studio.jobs is None:
        access = "This studio runs no training jobs."
    elif not studio.auth.enabled:
        access = "Admin is disabled: start the studio with --admin-password (or QWENRL_ADMIN_PASSWORD) to launch jobs."
    else:
        access = "Training is for the admin: log in to launch or cancel jobs."
    can_log_in = studio.jobs is not None and studio.auth.enabled
    with gr.Row():
        password = gr.Textbox(label="Admin password", type="password", elem_id="admin-password", scale=3,
                              interactive=can_log_in)
        login = gr.Button("Log in", elem_id="admin-login", scale=1, interactive=can_log_in)
    login_status = gr.Textbox(label="Access", interactive=False, elem_id="admin-status", value=access)
    with gr.Group(visible=False) as panel:
        with gr.Row():
            kind = gr.Radio(["grpo", "distill"], value="grpo", label="Trainer", elem_id="job-kind")
            objective = gr.Radio([(label, name) for name, label in OBJECTIVES.items()], value="nft", label="Objective (GRPO)",
                                 elem_id="job-objective")
            design = gr.Radio([(label, name) for name, label in DISTILL_DESIGNS.items()], value="absorb", label="Design (distillation)",
                              elem_id="job-design", visible=False)
            config = gr.Dropdown([], label="Config", elem_id="job-config")
        fields = gr.Dataframe(headers=["field", "value"], interactive=True, elem_id="job-fields",
                              label="Main fields (edit values; changed ones are passed as --set)")
        launch = gr.Button("Launch", variant="primary", elem_id="job-launch")
        launch_msg = gr.Textbox(label="Launch", interactive=False, elem_id="job-launch-msg")
        jobs_table = gr.Dataframe(headers=JOB_HEADERS, interactive=False, elem_id="jobs-table", label="Jobs")
        with gr.Row():
            job_pick = gr.Dropdown([], label="Job", elem_id="job-pick")
            cancel = gr.Button("Cancel job", variant="stop", elem_id="job-cancel")
        job_status = gr.Textbox(label="Status and progress", interactive=False, elem_id="job-status")
        job_log = gr.Textbox(label="Log (tail)", interactive=False, lines=12, elem_id="job-log", autoscroll=True)
        with gr.Row():
            job_eval = gr.Plot(label="Held-out accuracy", elem_id="job-eval")
            job_curve = gr.Plot(label="Reward curves")

    def do_login(secret: str, request: gr.Request) -> dict:
        if studio.jobs is None:
            return {login_status: "This studio runs no training jobs."}
        if not studio.auth.enabled:
            return {login_status: "Admin is disabled: start the studio with --admin-password (or QWENRL_ADMIN_PASSWORD)."}
        try:  # wrong passwords count against this client, as over REST
            ok = studio.auth.verify(secret, request.client.host if request is not None and request.client else None)
        except ArenaError as exc:
            return {admin: False, login_status: f"Refused: {exc}", password: "", panel: gr.Group(visible=False)}
        if not ok:
            return {admin: False, login_status: "Wrong password.", password: "", panel: gr.Group(visible=False)}
        every = list_configs("grpo", studio.jobs.config_dir)
        first = config_objective(every[0]) if every else "nft"  # the objective of the first (default) config
        shipped = list_configs("distill", studio.jobs.config_dir)
        first_design = config_design(shipped[0]) if shipped else "absorb"  # the design of the shipped distillation config
        return {admin: True, password: "", login_status: "Logged in as admin.", panel: gr.Group(visible=True),
                kind: "grpo", **configs_for("grpo", first, first_design)}

    def configs_for(kind_value: str, objective_value: str, design_value: str) -> dict:
        """The objective choice (GRPO) or the design choice (distillation), and the config list and
        fields that go with it."""
        grpo = kind_value == "grpo"
        configs = list_configs(kind_value, studio.jobs.config_dir, objective_value if grpo else None, None if grpo else design_value)
        return {objective: gr.Radio(value=objective_value, visible=grpo), design: gr.Radio(value=design_value, visible=not grpo),
                config: gr.Dropdown(choices=configs, value=configs[0] if configs else None),
                fields: config_fields(configs[0] if configs else None, studio.jobs.config_dir)}

    def kind_changed(is_admin: bool, kind_value: str, objective_value: str, design_value: str) -> dict:
        if not is_admin:
            return unchanged([objective, design, config, fields])
        return configs_for(kind_value, objective_value, design_value)

    def variant_changed(is_admin: bool, kind_value: str, objective_value: str, design_value: str) -> dict:
        if not is_admin:
            return unchanged([config, fields])
        update = configs_for(kind_value, objective_value, design_value)
        return {config: update[config], fields: update[fields]}

    def config_changed(is_admin: bool, config_value: str | None) -> dict:
        if not is_admin or studio.jobs is None:
            return unchanged([fields])
        return {fields: config_fields(config_value, studio.jobs.config_dir)}

    def do_launch(is_admin: bool, kind_value: str, config_value: str | None, table: Any) -> dict:
        if not is_admin or studio.jobs is None:
            return {launch_msg: "Refused: only the admin can launch jobs."}
        if not config_value:
            return {launch_msg: f"No {kind_value} config for this choice under training/configs/."}
        try:
            job_id = studio.jobs.submit(kind_value, config_value,
                                        changed_fields(config_value, table, studio.jobs.config_dir))
        except JobError as exc:
            return {launch_msg: f"Refused: {exc}"}
        return {launch_msg: f"Queued job {job_id}.", **refresh_jobs(True, job_id)}

    def refresh_jobs(is_admin: bool, selected: Any) -> dict:
        if not is_admin or studio.jobs is None:
            return unchanged(job_outputs)
        frame = _jobs_frame(studio.jobs)
        ids = [str(i) for i in frame["id"].tolist()]
        selected = str(selected) if selected is not None and str(selected) in ids else (ids[0] if ids else None)
        out = {jobs_table: frame, job_pick: gr.Dropdown(choices=ids, value=selected)}
        if selected is not None:
            p = studio.jobs.progress(selected)
            step = "—" if p["step"] is None else p["step"]
            total = p["total_steps"] or "?"
            out[job_status] = f"job {selected}: {p['status']} · step {step}/{total}"
            out[job_log] = studio.jobs.log_tail(selected, 40)
            rows = studio.jobs.metrics(selected)
            out[job_eval] = charts.eval_figure(rows)
            out[job_curve] = charts.metrics_figure(rows)
        return out

    def do_cancel(is_admin: bool, selected: Any) -> dict:
        if not is_admin or studio.jobs is None:
            return {launch_msg: "Refused: only the admin can cancel jobs."}
        if selected is None:
            return {launch_msg: "No job chosen."}
        try:
            job = studio.jobs.cancel(selected)
        except JobError as exc:
            return {launch_msg: f"Refused: {exc}"}
        return {launch_msg: f"Job {job['id']}: {job['status']} (cancel requested)", **refresh_jobs(True, selected)}

    job_outputs = [jobs_table, job_pick, job_status, job_log, job_eval, job_curve]
    private = {"api_visibility": "private"}
    login_outputs = [admin, password, login_status, panel, kind, objective, design, config, fields]
    login.click(do_login, [password], login_outputs, **private)
    password.submit(do_login, [password], login_outputs, **private)
    kind.change(kind_changed, [admin, kind, objective, design], [objective, design, config, fields], **private)
    objective.change(variant_changed, [admin, kind, objective, design], [config, fields], **private)
    design.change(variant_changed, [admin, kind, objective, design], [config, fields], **private)
    config.change(config_changed, [admin, config], [fields], **private)
    launch.click(do_launch, [admin, kind, config, fields], [launch_msg, *job_outputs], **private)
    cancel.click(do_cancel, [admin, job_pick], [launch_msg, *job_outputs], **private)
    job_pick.change(refresh_jobs, [admin, job_pick], job_outputs, **private)
    return {"refresh": (refresh_jobs, [admin, job_pick], job_outputs)}


# ---------------------------------------------------------------------------------------------
# The app
# ---------------------------------------------------------------------------------------------


def models_frame(studio: Studio) -> pd.DataFrame:
    rows = [[r["model"], r["lineage"], r["status"], f"{r['done']}/{r['total']}", r["note"]]
            for r in studio.gallery_status()]
    return pd.DataFrame(rows, columns=["model", "lineage", "gallery", "images", "note"])


def build_studio(studio: Studio, *, refresh_s: float = 2.0) -> gr.Blocks:
    """The Blocks app; theme and CSS are given when it is mounted (``app.server``)."""
    with gr.Blocks(title="QwenRL Studio") as blocks:
        gr.Markdown("# QwenRL Studio\nVote for the better image; the names are revealed after your vote. "
                    "Keys: a, b, t (tie), x (both bad), n (next battle).", elem_classes="studio-title")
        with gr.Tabs():
            with gr.Tab("Arena", id="arena"):
                with gr.Tabs():
                    views = []
                    for task, label in TASK_LABELS.items():
                        with gr.Tab(label, id=f"arena-{task}"):
                            views.append(_arena_tab(studio, task))
                    kway_view = None
                    if studio.service.kway > 2:
                        with gr.Tab(f"{studio.service.kway} at once", id="arena-kway"):
                            kway_view = build_kway_tab(studio, show_image, voter_id, TASK_LABELS)
                    with gr.Tab("Side by side (named)", id="arena-named") as named_tab:
                        named_view = build_named_tab(studio, sys.modules[__name__], TASK_LABELS)
                with gr.Accordion("Models in the arena", open=False):
                    models = gr.Dataframe(headers=["model", "lineage", "gallery", "images", "note"],
                                          interactive=False, elem_id="models-table")
            with gr.Tab("Leaderboard", id="leaderboard") as lb_tab:
                lb_refresh = _leaderboard_tab(studio)
            with gr.Tab("Reward inspector", id="inspector") as ri_tab:
                ri_loaders = _inspector_tab(studio)
            with gr.Tab("Training", id="training"):
                training = _training_tab(studio)
        timer = gr.Timer(refresh_s)

        def first_battles(request: gr.Request) -> dict:
            out: dict = {models: models_frame(studio)}
            for chooser in choosers:  # the gallery may have filled since the page was built
                out[chooser] = gr.Dropdown(choices=source_choices(studio), value=CURRENT_SOURCE)
            for view in views:
                try:
                    # a reloaded page shows the battle it had rather than opening another
                    battle = studio.service.open_or_new_battle(view.task, voter_id(request), address=client_address(request))
                except ArenaError as exc:
                    out[view.reveal] = str(exc)
                    continue
                out.update(view.updates(battle))
            return out

        choosers = [v.own_source for v in views if v.own_source is not None]
        load_outputs = [models] + [c for v in views for c in v.outputs] + choosers
        blocks.load(first_battles, None, load_outputs, api_visibility="private")
        if kway_view is not None:
            fn, inputs, outputs = kway_view.load
            blocks.load(fn, inputs, outputs, api_visibility="private")
        fn, inputs, outputs = named_view.load
        named_tab.select(fn, inputs, outputs, api_visibility="private")
        fn, inputs, outputs = lb_refresh
        lb_tab.select(fn, inputs, outputs, api_visibility="private")
        for fn, inputs, outputs in ri_loaders:
            ri_tab.select(fn, inputs, outputs, api_visibility="private")
        refresh_fn, refresh_in, refresh_out = training["refresh"]
        timer.tick(lambda: models_frame(studio), None, [models], api_visibility="private")
        timer.tick(refresh_fn, refresh_in, refresh_out, api_visibility="private")
    return blocks
