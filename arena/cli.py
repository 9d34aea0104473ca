"""``qwenrl elo`` and ``qwenrl votes``: rating tables and vote files from the command line.

Each command reads its inputs, calls one library function and prints the result; library
errors become ``click.ClickException`` with the library's message.
"""

from __future__ import annotations

import os

# The rating maths is many small (models × models) linear-algebra calls, for which BLAS
# threads only fight over the cores, badly so beside a training job. Must precede numpy.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import csv  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from collections.abc import Sequence  # noqa: E402
from typing import TYPE_CHECKING  # noqa: E402

import click  # noqa: E402

from arena import io as vote_io  # noqa: E402
from arena._quick import import_in_background, lazy_module, quick_process  # noqa: E402
from arena.categories import CATEGORY_MIN_VOTES, category_too_small, in_category  # noqa: E402
from arena.hygiene import counted_votes, left_out_message  # noqa: E402
from arena.ratings import ROW_FIELDS, Leaderboard, leaderboard, parse_anchor  # noqa: E402
from arena.style import style_control  # noqa: E402

if TYPE_CHECKING:
    import pandas as pd

    from arena.store import ArenaStore
else:
    pd = lazy_module("pandas")  # imported on first use: see arena._quick


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--task", help="Only votes of this task (t2i, edit…); the files must carry a task field.")
@click.option("--judge", help="Only votes by this judge: 'human' (with FastChat's arena_user_… voters) or an "
                             "automatic judge's name.")
@click.option("--anony-only", is_flag=True, help="Only votes cast while the models were hidden.")
@click.option("--category", help="Only votes of this category (a prompt family such as counting, or an editing verb "
                                 "such as recolor); one with fewer than --category-min-votes is not ranked.")
@click.option("--category-min-votes", type=click.IntRange(min=1), default=CATEGORY_MIN_VOTES, show_default=True,
              help="Votes a category needs before it is ranked (the studio's setting of the same name).")
@click.option("--control", is_flag=True,
              help="Also print ratings controlled for the images' covariates (aesthetics, objects…) and the "
                   "covariates' coefficients (style control; votes need a covariates field).")
@click.option("--include-flagged", is_flag=True,
              help="Also count flagged votes (fast, burst, named, excluded: the flags field of a studio export), "
                   "which the default table leaves out as the studio's board does.")
@click.option("--strict", is_flag=True,
              help="Refuse self-battles (model_a = model_b) as malformed instead of leaving them out with a warning.")
@click.option(
    "--ci", type=click.Choice(["bootstrap", "sandwich"]), default="bootstrap", show_default=True,
    help="How the 95% intervals are computed.",
)
@click.option(
    "--bootstrap", "rounds", type=click.IntRange(min=1), default=1000, show_default=True,
    help="Bootstrap rounds.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the bootstrap.")
@click.option(
    "--anchor", metavar="MODEL=RATING",
    help="Shift the scale so that MODEL has RATING (FastChat anchors mixtral-8x7b-instruct-v0.1=1114).",
)
@click.option(
    "--l2", type=click.FloatRange(min=0), default=0.0, show_default=True,
    help="L2 penalty on the Bradley–Terry strengths (base-10 log-odds); 0 is the plain MLE.",
)
@click.option(
    "--min-votes", type=click.IntRange(min=0), default=0, show_default=True,
    help="Leave out models with fewer votes (and their battles).",
)
@click.option(
    "--format", "output_format", type=click.Choice(["table", "markdown", "csv", "json"]), default="table",
    show_default=True, help="Output format; json gives every field of every row.",
)
@click.option(
    "--input-format", type=click.Choice(["auto", *vote_io.FORMATS]), default="auto", show_default=True,
    help="Format of the vote files; auto looks at the name, then the first byte.",
)
@click.option(
    "--workers", type=click.IntRange(min=1), default=None,
    help="Processes to share the work (default: 2 for large inputs on a multi-core machine).",
)
def elo(
    files: Sequence[str], task: str | None, judge: str | None, anony_only: bool, category: str | None,
    category_min_votes: int, control: bool, include_flagged: bool, strict: bool, ci: str, rounds: int,
    seed: int, anchor: str | None, l2: float, min_votes: int, output_format: str, input_format: str,
    workers: int | None,
) -> None:
    """Print the leaderboard of exported votes: Bradley–Terry Elo with 95% intervals,
    online Elo, TrueSkill, votes and win rate.

    FILES are vote logs as `qwenrl votes export` writes them (JSON lines or CSV), or FastChat /
    GenAI-Arena `clean_battle` JSON lists. The numbers match FastChat's: online Elo with K=4,
    Bradley–Terry on the 400·log10 scale, ties as half a win. Self-battles (the same model on
    both sides) carry no information and are left out with one warning (--strict refuses them).
    Votes with flags (a studio export marks fast votes, named ones and excluded voters) are left
    out, as on the studio's default board; --include-flagged counts them.

    \b
    Examples:
      qwenrl elo votes.jsonl
      qwenrl elo votes.jsonl --task t2i --anony-only --format markdown
      qwenrl elo clean_battle_20240220.json --ci sandwich --format json
      qwenrl elo votes.jsonl --task t2i --category counting --control
    """
    importer = import_in_background("pandas")  # while the file is read: see arena._quick
    with quick_process():
        try:
            anchor_pair = parse_anchor(anchor) if anchor else None
            started = time.perf_counter()
            for path in files:
                if os.path.getsize(path) > 32 << 20:
                    click.echo(f"reading {path}…", err=True)
            # only the fields this table needs: each one read costs time on a large file (the judge is
            # always read: without a filter on it, a file that mixes people and programs gets a warning)
            needed = {"task": task is not None, "anony": anony_only}
            fields = tuple(f for f in vote_io.RATING_FIELDS if needed.get(f, True))
            fields += (("category",) if category else ()) + (("covariates",) if control else ())
            votes = read_with_warnings(list(files), input_format=input_format, fields=fields, workers=workers, strict=strict)
            importer.join()  # done by now (the table needed pandas); one thread again, so workers may fork
            if len(votes) == 0:
                raise ValueError(f"no votes in {', '.join(files)}: the file{'s hold' if len(files) > 1 else ' holds'} "
                                 "no vote records")
            votes = _filter(votes, task=task, judge=judge, anony_only=anony_only)
            if judge is None:
                _warn_if_mixed(votes)
            if not include_flagged:
                note = left_out_message(votes)
                counted = counted_votes(votes)
                if note and len(counted) == 0:
                    raise ValueError(f"every vote is flagged: {note}")
                if note:
                    click.echo(f"warning: {note}", err=True)
                votes = counted
            short = None
            if category is not None:
                votes = in_category(votes, category)
                short = category_too_small(category, len(votes), category_min_votes)
            if len(votes) > 100_000:
                click.echo(f"read {len(votes):,} votes in {time.perf_counter() - started:.1f} s", err=True)
            if short:
                board = Leaderboard([], [short])
            else:
                board = leaderboard(
                    votes, ci=ci, rounds=rounds, seed=seed, anchor=anchor_pair, l2=l2, min_votes=min_votes,
                    workers=workers, progress=_progress_printer() if ci == "bootstrap" else None,
                )
            style = style_control(votes, rounds=200, seed=seed) if control and not short else None
        except (ValueError, OSError) as exc:  # VoteFileError is a ValueError
            raise click.ClickException(str(exc)) from exc
        for warning in board.warnings + (style.warnings if style else []):
            click.echo(f"warning: {warning}", err=True)
        click.echo(format_leaderboard(board, output_format), nl=False)
        if style is not None:
            click.echo(format_style(style, output_format), nl=False)


def format_style(style, output_format: str) -> str:
    """Ratings controlled for the covariates, and the coefficients, after the main table."""
    if output_format == "json":
        return json.dumps({"controlled": style.rows, "coefficients": style.coefficients, "votes": style.votes,
                           "left_out": style.left_out}, indent=2) + "\n"
    lines = ["", f"Controlled for {', '.join(c['covariate'] for c in style.coefficients) or 'nothing'} "
                 f"({style.votes} votes, {style.rounds} bootstrap rounds):"]
    lines.append(f"{'model':<32} {'Elo (controlled)':>16} {'95% CI':>17} {'Elo (plain)':>12}")
    for r in style.rows:
        lines.append(f"{r['model']:<32} {r['elo']:16.1f} {r['ci_low']:8.1f}–{r['ci_high']:<8.1f} {r['elo_uncontrolled']:12.1f}")
    lines.append(f"{'covariate':<32} {'Elo per SD':>16} {'95% CI':>17}")
    for c in style.coefficients:
        lines.append(f"{c['covariate']:<32} {c['elo_per_sd']:16.1f} {c['ci_low']:8.1f}–{c['ci_high']:<8.1f}")
    return "\n".join(lines) + "\n"


def read_with_warnings(files: list[str], **options) -> pd.DataFrame:
    """``arena.io.read_votes``, its warning (left-out self-battles) printed on stderr."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", vote_io.SelfBattleWarning)
        votes = vote_io.read_votes(files, **options)
    for warning in caught:
        if issubclass(warning.category, vote_io.SelfBattleWarning):
            click.echo(f"warning: {warning.message}", err=True)
        else:
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    return votes


def _filter(votes: pd.DataFrame, *, task: str | None, judge: str | None, anony_only: bool) -> pd.DataFrame:
    for name, wanted in (("task", task), ("judge", judge)):
        if wanted is None:
            continue
        present = votes[name].dropna().unique().tolist()
        if not present:
            raise ValueError(f"the votes have no {name} field, so --{name} cannot select any")
        if name == "judge" and wanted == "human":  # FastChat logs name each voter (arena_user_…)
            humans = {value for value in present if vote_io.is_human_judge(value)}
            votes = votes[votes[name].isin(humans)]
        else:
            votes = votes[votes[name] == wanted]
        if len(votes) == 0:
            shown = sorted(map(str, present))
            listed = ", ".join(shown[:10]) + (f" and {len(shown) - 10} more" if len(shown) > 10 else "")
            raise ValueError(f"no votes with {name} {wanted!r}; the files have {listed}")
    if anony_only:
        votes = votes[votes["anony"].fillna(False).to_numpy(dtype=bool)]
        if len(votes) == 0:
            raise ValueError("no anonymous votes (anony = true) in the files")
    return votes


def _warn_if_mixed(votes: pd.DataFrame) -> None:
    """One warning when the votes rated mix people's and programs' judgements (a workspace's
    export holds both): the table is then neither the human nor the automatic arena's."""
    judges = votes["judge"].dropna()
    if not len(judges):
        return
    human = judges.map(vote_io.is_human_judge).astype(bool)
    if human.all() or not human.any():
        return
    programs = sorted(set(judges[~human].astype(str)))
    click.echo(f"warning: these votes mix {int(human.sum())} human votes with {int((~human).sum())} automatic ones "
               f"(judge {', '.join(programs[:5])}); rate one kind with --judge human or --judge {programs[0]}", err=True)


def _progress_printer():
    """Bootstrap progress on stderr: a live counter on a terminal, a few lines otherwise."""
    live = sys.stderr.isatty()
    shown = {"step": -1}

    def show(done: int, total: int) -> None:
        if live:
            click.echo(f"\rbootstrap {done}/{total}", err=True, nl=done == total)
            return
        step = done * 4 // total
        if step != shown["step"]:
            shown["step"] = step
            click.echo(f"bootstrap {done}/{total}", err=True)

    return show


def format_leaderboard(board: Leaderboard, output_format: str) -> str:
    """The leaderboard as text: ``table``, ``markdown``, ``csv`` or ``json``."""
    if output_format == "json":
        return json.dumps([{name: row[name] for name in ROW_FIELDS} for row in board.rows], indent=2) + "\n"
    if output_format == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(ROW_FIELDS)
        for row in board.rows:
            writer.writerow([row[name] for name in ROW_FIELDS])
        return out.getvalue()
    several = len(board.components) > 1
    header = ["rank (UB)", "model", "Elo (BT)", "95% CI", "online Elo", "TrueSkill μ−3σ", "votes", "win rate"]
    header += ["component"] if several else []
    lines = []
    for row in board.rows:
        cells = [
            str(row["rank_ub"]), row["model"], f"{row['elo']:.1f}",
            f"{row['ci_low']:.1f} – {row['ci_high']:.1f}", f"{row['elo_online']:.1f}",
            f"{row['trueskill_score']:.2f}", str(row["votes"]), f"{row['win_rate']:.1%}",
        ]
        lines.append(cells + ([str(row["component"])] if several else []))
    if output_format == "markdown":
        right = [True, False, True, True, True, True, True, True, True]
        out = ["| " + " | ".join(header) + " |",
               "|" + "|".join("---:" if r else ":---" for r in right[: len(header)]) + "|"]
        out += ["| " + " | ".join(cells) + " |" for cells in lines]
        return "\n".join(out) + "\n"
    widths = [max(len(h), *(len(c[k]) for c in lines)) if lines else len(h) for k, h in enumerate(header)]
    render = lambda cells: "  ".join(  # noqa: E731
        c.ljust(w) if k == 1 else c.rjust(w) for k, (c, w) in enumerate(zip(cells, widths))
    )
    return "\n".join([render(header)] + [render(c) for c in lines]) + "\n"


def open_store(path: str) -> ArenaStore:
    """The store at ``path``; ValueError with one line when the file is not a QwenRL store."""
    import sqlite3

    from arena.store import ArenaStore

    try:
        return ArenaStore(path)
    except sqlite3.DatabaseError as exc:  # "file is not a database", a locked or damaged file…
        raise ValueError(f"--store {path}: not a QwenRL store ({exc}); give the studio's arena.db, "
                         "or a new file name to create one") from None


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def votes() -> None:
    """Move votes between a studio store and files; leave a voter out of the boards.

    \b
    Examples:
      qwenrl votes export --store workspace/arena.db --out votes.jsonl
      qwenrl votes import --store other.db votes.jsonl
      qwenrl votes exclude --store workspace/arena.db VOTER --reason "votes in 0.2 s"
    """


@votes.command("export")
@click.option("--store", "store_path", required=True, type=click.Path(exists=True, dir_okay=False),
              help="The studio's database (workspace/arena.db).")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="File to write.")
@click.option("--format", "output_format", type=click.Choice(["jsonl", "csv"]), default=None,
              help="Default: csv for a .csv file, else jsonl.")
@click.option("--task", help="Only votes of this task.")
@click.option("--judge", help="Only votes by this judge ('human' or an automatic judge's name).")
@click.option("--pairwise", is_flag=True,
              help="Write each K-way vote as the pairwise comparisons it implies, for readers of FastChat's format "
                   "(a warning says how many; qwenrl elo reads K-way votes as they are).")
def export_votes(store_path: str, out: str, output_format: str | None, task: str | None, judge: str | None,
                 pairwise: bool) -> None:
    """Write the votes of a store to a file that `qwenrl elo` reads (FastChat clean_battle
    fields plus battle_id, task, prompt, sample ids, flags, category; K-way votes with their
    models and marks; voters are left out).

    \b
    Examples:
      qwenrl votes export --store workspace/arena.db --out t2i.jsonl --task t2i
      qwenrl votes export --store workspace/arena.db --out fastchat.jsonl --pairwise
    """
    try:
        with open_store(store_path) as store, warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", vote_io.KwayExpandedWarning)
            count = vote_io.write_votes(store.vote_records(task=task, judge=judge), out,
                                        format=output_format or "auto", pairwise=pairwise)
        for warning in caught:
            click.echo(f"warning: {warning.message}", err=True)
    except (ValueError, OSError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"wrote {count} votes to {out}", err=True)


@votes.command("import")
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--store", "store_path", required=True, type=click.Path(dir_okay=False),
              help="The database to add to (created if missing).")
@click.option("--task", help="Task for records that carry none (FastChat logs carry none).")
@click.option("--input-format", type=click.Choice(["auto", *vote_io.FORMATS]), default="auto", show_default=True,
              help="Format of the files; auto looks at the name, then the first byte.")
@click.option("--strict", is_flag=True,
              help="Refuse self-battles (model_a = model_b) as malformed instead of leaving them out with a warning.")
def import_votes(files: Sequence[str], store_path: str, task: str | None, input_format: str, strict: bool) -> None:
    """Add votes from files to a store, all or nothing: one malformed record or one battle
    already in the store, and nothing is added. Self-battles are left out with one warning
    (--strict refuses them); fields the store does not know are ignored.

    \b
    Example:
      qwenrl votes import --store workspace/arena.db --task t2i clean_battle_20240220.json
    """
    folder = os.path.dirname(os.path.abspath(store_path))
    if not os.path.isdir(folder):
        raise click.ClickException(f"--store {store_path}: the folder {os.path.dirname(store_path) or folder} does not "
                                   "exist (create it first, or give the path of an existing store)")
    try:
        frame = read_with_warnings(list(files), input_format=input_format, strict=strict)
        with open_store(store_path) as store:
            count = store.import_votes(frame, task=task)
    except (ValueError, OSError) as exc:  # VoteFileError and StoreError are ValueErrors
        raise click.ClickException(str(exc)) from exc
    click.echo(f"imported {count} votes into {store_path}", err=True)



@votes.command("voters")
@click.option("--store", "store_path", required=True, type=click.Path(exists=True, dir_okay=False),
              help="The studio's database (workspace/arena.db).")
@click.option("--task", help="Only votes of this task.")
@click.option("--json", "as_json", is_flag=True, help="Print the rows as JSON.")
def list_voters(store_path: str, task: str | None, as_json: bool) -> None:
    """List voters: their votes, how many are flagged (fast, burst…), first and last vote, and
    whether they are excluded. Voter ids are the studio's opaque cookie ids.

    \b
    Example:
      qwenrl votes voters --store workspace/arena.db
    """
    from arena.store import ArenaStore

    try:
        with ArenaStore(store_path) as store:
            rows = store.voters(task)
    except (ValueError, OSError) as exc:
        raise click.ClickException(str(exc)) from exc
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    click.echo(f"{'voter':<36} {'votes':>6} {'flagged':>8}  {'last vote (UTC)':<19}  excluded")
    for row in rows:
        last = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(row["last"]))
        click.echo(f"{row['voter']:<36} {row['votes']:>6} {row['flagged']:>8}  {last:<19}  "
                   f"{'yes' if row['excluded'] else ''}")


@votes.command("exclude")
@click.argument("voter")
@click.option("--store", "store_path", required=True, type=click.Path(exists=True, dir_okay=False),
              help="The studio's database (workspace/arena.db).")
@click.option("--reason", default="", help="Why (kept beside the exclusion).")
@click.option("--undo", is_flag=True, help="Count the voter's votes again.")
def exclude_voter(voter: str, store_path: str, reason: str, undo: bool) -> None:
    """Leave a voter's votes out of the default boards, or with --undo count them again.

    Nothing is deleted: the votes stay in the store, exports flag them `excluded`, and the
    boards' include-flagged switch (qwenrl elo --include-flagged) still counts them.

    \b
    Examples:
      qwenrl votes exclude --store workspace/arena.db 3f2a… --reason "100 votes in a minute"
      qwenrl votes exclude --store workspace/arena.db 3f2a… --undo
    """
    from arena.store import ArenaStore

    try:
        with ArenaStore(store_path) as store:
            if undo:
                if not store.include_voter(voter):
                    raise ValueError(f"voter {voter!r} is not excluded")
                click.echo(f"voter {voter} counts again", err=True)
                return
            store.exclude_voter(voter, reason)
            count = next((r["votes"] for r in store.voters() if r["voter"] == voter), 0)
    except (ValueError, OSError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"excluded voter {voter} ({count} votes left out of the default boards; --undo reverses it)", err=True)
