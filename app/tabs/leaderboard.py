"""The Leaderboard tab: a task's board (ranked rows, the models listed apart), its notes and
charts, the visitor's own board, ratings controlled for looks, and the votes to download.

Until the visitor picks which votes to rate, the board follows the service's default view
(human votes once there are enough, else the automatic ones) and says why. Each render reads
the board once (``ArenaService.ranked``, cached while the votes are unchanged).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd

from .. import boards, charts
from ..service import VOTE_FILTERS, export_name
from ..workspace import PAIRWISE_VOTE_JUDGES
from .common import TASK_LABELS, Loader, Studio, Tab, task_radio, voter_id

LEADERBOARD_HEADERS = ["Rank (UB)", "Model", "Elo (BT)", "95% CI", "Online Elo", "TrueSkill μ", "TrueSkill σ",
                       "TrueSkill μ−3σ", "Votes", "Win rate", "Lineage"]
APART_HEADERS = ["Model", "Votes", "Needed", "Elo (BT)", "95% CI"]
PERSONAL_HEADERS = ["Rank (UB)", "Model", "Elo (BT)", "95% CI", "Votes"]
CONTROLLED_HEADERS = ["Model", "Elo (controlled)", "95% CI", "Elo (plain)", "Shift"]
COEFFICIENT_HEADERS = ["Covariate", "Elo per SD", "95% CI", "SD of the difference"]
ALL_CATEGORIES = "all"
#: how the votes chooser names each filter (the pairwise judges' votes are also among "auto")
VOTE_LABELS = dict(PAIRWISE_VOTE_JUDGES)


def vote_choices() -> list[tuple[str, str]]:
    """(label, value) of the votes chooser, in ``VOTE_FILTERS`` order."""
    return [(VOTE_LABELS.get(v, v), v) for v in VOTE_FILTERS]


def chosen_text(votes: str) -> str:
    """The *Showing* line once the visitor picked the votes."""
    what = f"the {VOTE_LABELS[votes]}'s votes" if votes in VOTE_LABELS else f"{votes} votes"
    return f"Showing {what}, as you chose."


def interval(r: dict[str, Any]) -> str:
    return f"{r['ci_low']:.0f} – {r['ci_high']:.0f}"


def board_rows(studio: Studio, ranked: list[dict], apart: list[dict]) -> tuple[list[list[Any]], list[list[Any]]]:
    """The table rows of the ranked models (with their lineage) and of the models listed apart."""
    lineage = {}
    for row in ranked:
        try:
            lineage[row["model"]] = studio.ws.lineage(row["model"])
        except ValueError:
            lineage[row["model"]] = row["model"]
    rows = [[r["rank_ub"], r["model"], round(r["elo"], 1), interval(r), round(r["elo_online"], 1), round(r["trueskill_mu"], 2),
             round(r["trueskill_sigma"], 2), round(r["trueskill_score"], 2), r["votes"], f"{r['win_rate']:.0%}",
             lineage[r["model"]]] for r in ranked]
    unranked = [[r["model"], r["votes"], r["needed"], round(r["elo"], 1), interval(r)] for r in apart]
    return rows, unranked


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
    rows = [[r["model"], round(r["elo"], 1), interval(r), round(r["elo_uncontrolled"], 1), f"{r['shift']:+.1f}"]
            for r in style.rows]
    coefs = [[c["covariate"], f"{c['elo_per_sd']:+.1f}", f"{c['ci_low']:+.1f} – {c['ci_high']:+.1f}", round(c["sd"], 3)]
             for c in style.coefficients]
    note = (f"Style control from {style.votes} vote(s), {style.rounds} bootstrap rounds: Bradley–Terry with each image's "
            "covariates as extra terms. A positive coefficient means voters prefer more of it whatever the model; "
            "the controlled rating is what remains.")
    return (pd.DataFrame(rows, columns=CONTROLLED_HEADERS), pd.DataFrame(coefs, columns=COEFFICIENT_HEADERS),
            "\n".join([note, *style.warnings]))


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


@dataclass
class BoardView:
    """The tab's panels: choosers, the board and the personal board, notes, style control, charts, downloads."""

    task: gr.Radio
    votes: gr.Radio
    category: gr.Dropdown
    flagged: gr.Checkbox
    control: gr.Checkbox
    refresh: gr.Button
    picked: gr.State  #: True once the visitor picks the votes; until then the board follows the default view
    view: gr.Textbox
    table: gr.Dataframe
    personal_note: gr.Textbox
    personal: gr.Dataframe
    apart: gr.Dataframe
    notes: gr.Textbox
    controlled_group: gr.Group
    controlled: gr.Dataframe
    coefficients: gr.Dataframe
    controlled_note: gr.Textbox
    intervals: gr.Plot
    heatmap: gr.Plot
    history: gr.Plot
    dl_jsonl: gr.DownloadButton
    dl_csv: gr.DownloadButton

    @property
    def inputs(self) -> list:
        return [self.task, self.votes, self.picked, self.flagged, self.category, self.control]

    @property
    def outputs(self) -> list:
        return [self.votes, self.view, self.category, self.table, self.apart, self.notes, self.personal_note, self.personal,
                self.controlled_group, self.controlled, self.coefficients, self.controlled_note, self.intervals,
                self.heatmap, self.history, self.dl_jsonl, self.dl_csv]

    def updates(self, studio: Studio, task: str, votes: str, why: str, with_flagged: bool, category: str | None,
                with_control: bool, voter: str) -> dict:
        """Everything the tab shows for one choice of task, votes, flagged votes, category and control."""
        service = studio.service
        choices = category_choices(studio, task, votes, with_flagged)
        chosen = category if category in {c[1] for c in choices} else ALL_CATEGORIES
        only = None if chosen == ALL_CATEGORIES else chosen
        board, ranked, apart = service.ranked(task, votes, include_flagged=with_flagged, category=only)  # type: ignore[arg-type]
        rows, unranked = board_rows(studio, ranked, apart)
        files = export_files(studio, task, votes)
        mine = boards.personal_board(service, task, voter)
        mine_rows = [[r["rank_ub"], r["model"], round(r["elo"], 1), interval(r), r["votes"]]
                     for r in (mine.board.rows if mine.board else [])]
        out = {
            self.votes: votes,
            self.view: why,
            self.category: gr.Dropdown(choices=choices, value=chosen),
            self.table: pd.DataFrame(rows, columns=LEADERBOARD_HEADERS),
            self.apart: gr.Dataframe(value=pd.DataFrame(unranked, columns=APART_HEADERS), visible=bool(unranked)),
            self.notes: "\n".join([board_note(studio, task, votes, board, files, with_flagged, only), *board.warnings]),
            self.personal_note: mine.message,
            self.personal: gr.Dataframe(value=pd.DataFrame(mine_rows, columns=PERSONAL_HEADERS), visible=mine.board is not None),
            self.controlled_group: gr.Group(visible=with_control),
            self.intervals: charts.intervals_figure(board.rows),
            self.heatmap: charts.heatmap_figure(service.win_rates(task, votes, include_flagged=with_flagged)),  # type: ignore[arg-type]
            self.history: charts.elo_history_figure(service.elo_history(task, votes, include_flagged=with_flagged)),  # type: ignore[arg-type]
            self.dl_jsonl: gr.DownloadButton(value=str(files["jsonl"])),
            self.dl_csv: gr.DownloadButton(value=str(files["csv"])),
        }
        if with_control:
            out[self.controlled], out[self.coefficients], out[self.controlled_note] = controlled_tables(
                studio, task, votes, with_flagged, only)
        return out


def board_note(studio: Studio, task: str, votes: str, board: Any, files: dict[str, Path], with_flagged: bool,
               only: str | None) -> str:
    """How many votes the board rates, how to reproduce it offline, and the flagged votes it leaves out."""
    offline = f"qwenrl elo {files['jsonl'].name} --task {task}" + (" --include-flagged" if with_flagged else "")
    offline += f" --category {only}" if only else ""
    note = f"{board.votes} {votes} vote(s) for {TASK_LABELS[task]}{f' in {only}' if only else ''}; " \
           f"95% intervals from {board.rounds} bootstrap rounds. Reproduce offline: {offline}"
    left_out = studio.service.flagged(task, votes)  # type: ignore[arg-type]
    if left_out:
        counts = ", ".join(f"{name} {k}" for name, k in left_out.items())
        note += f"\nFlagged votes ({counts}): {'counted' if with_flagged else 'left out; tick Count flagged votes to count them'}."
    return note


def layout(studio: Studio) -> BoardView:
    with gr.Row():
        task = task_radio("lb-task")
        votes = gr.Radio(vote_choices(), value="human", label="Votes", elem_id="lb-votes",
                         info="human votes, automatic judges (oracle, rewards, the learned judge), the learned "
                              "judge's pairwise votes alone, or all")
        category = gr.Dropdown([("all categories", ALL_CATEGORIES)], value=ALL_CATEGORIES, label="Category",
                               elem_id="lb-category", info="the prompt's family, or the editing verb")
    with gr.Row():
        flagged = gr.Checkbox(False, label="Count flagged votes", elem_id="lb-flagged",
                              info="fast votes, named ones and excluded voters' (left out by default)")
        control = gr.Checkbox(False, label="Control for looks", elem_id="lb-control",
                              info="ratings with the images' aesthetics and object count as covariates")
        refresh = gr.Button("Refresh", elem_id="lb-refresh")
    picked = gr.State(False)
    view = gr.Textbox(label="Showing", interactive=False, elem_id="lb-view")
    with gr.Row():
        with gr.Column(scale=3):
            table = gr.Dataframe(headers=LEADERBOARD_HEADERS, interactive=False, elem_id="lb-table", wrap=True)
        with gr.Column(scale=2):
            personal_note = gr.Textbox(label="Your board", interactive=False, elem_id="lb-personal-note")
            personal = gr.Dataframe(headers=PERSONAL_HEADERS, interactive=False, elem_id="lb-personal", visible=False)
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
    return BoardView(task, votes, category, flagged, control, refresh, picked, view, table, personal_note, personal, apart,
                     notes, controlled_group, controlled, coefficients, controlled_note, intervals, heatmap, history,
                     dl_jsonl, dl_csv)


def build(studio: Studio) -> Tab:
    """The tab and its events; opening it shows the board of the default view."""
    view = layout(studio)

    def show_board(task_value: str, votes_value: str, is_picked: bool, with_flagged: bool, category_value: str | None,
                   with_control: bool, request: gr.Request) -> dict:
        why = chosen_text(votes_value)
        if not is_picked:
            votes_value, why = studio.service.default_view(task_value)
        return view.updates(studio, task_value, votes_value, why, with_flagged, category_value, with_control,
                            voter_id(request))

    def pick_votes(task_value: str, votes_value: str, with_flagged: bool, category_value: str | None,
                   with_control: bool, request: gr.Request) -> dict:
        return {view.picked: True, **show_board(task_value, votes_value, True, with_flagged, category_value, with_control,
                                                request)}

    # .input, not .change: setting the votes radio from show_board must not count as a choice
    for trigger in (view.refresh.click, view.task.input, view.flagged.input, view.category.input, view.control.input):
        trigger(show_board, view.inputs, view.outputs, api_visibility="undocumented")
    view.votes.input(pick_votes, [view.task, view.votes, view.flagged, view.category, view.control],
                     [view.picked, *view.outputs], api_visibility="undocumented")
    return Tab(on_open=[Loader(show_board, view.inputs, view.outputs)])
