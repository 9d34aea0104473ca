"""``qwenrl studio`` and ``qwenrl arena auto``: thin click commands over ``app``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from .limits import BURST_VOTERS, NEW_VOTERS

from .autojudge import HUMANLIKE_MARGIN

DEFAULT_WORKSPACE = "./workspace"


@click.command()
@click.option("--workspace", default=DEFAULT_WORKSPACE, show_default=True, type=click.Path(file_okay=False),
              help="folder of the store, gallery and runs (created if missing)")
@click.option("--host", default="127.0.0.1", show_default=True, help="address to listen on (0.0.0.0 for all)")
@click.option("--port", default=7860, show_default=True, type=click.IntRange(1, 65535))
@click.option("--admin-password", envvar="QWENRL_ADMIN_PASSWORD", default=None,
              help="password of the Training tab and the job API (or env QWENRL_ADMIN_PASSWORD); "
                   "without one, nobody can launch jobs")
@click.option("--models-dir", default=None, type=click.Path(file_okay=False),
              help="bundled models to register (default: data/models)")
@click.option("--max-jobs", "max_jobs", default=None, type=click.IntRange(1, 64),
              help="training jobs at once (default: 1 without a GPU, else the GPU count)")
@click.option("--pool-size", default=None, type=click.IntRange(2, 250),
              help="arena prompts per task (default 48; remembered by the workspace)")
@click.option("--gallery-steps", default=None, type=click.IntRange(1, 200),
              help="sampling steps of gallery images (default: each checkpoint's)")
@click.option("--configs-dir", default=None, type=click.Path(exists=True, file_okay=False),
              help="training configs the Training tab offers (default: training/configs)")
@click.option("--rate-limit", default=20.0, show_default=True, type=click.FloatRange(0.1),
              help="battles and votes per second per voter (a token bucket)")
@click.option("--rate-burst", default=40.0, show_default=True, type=click.FloatRange(1),
              help="requests a voter may make at once before the rate limit applies")
@click.option("--min-votes", default=10, show_default=True, type=click.IntRange(0),
              help="votes a model needs in a leaderboard view to be ranked there (fewer: listed apart); human votes "
                   "become the default view once every model has this many")
@click.option("--new-voters-per-address", default=NEW_VOTERS, show_default=True, type=click.IntRange(1),
              help="new voters (cookies never seen) one address may bring in 10 minutes; beyond, 429: keep your cookie")
@click.option("--burst-voters", default=BURST_VOTERS, show_default=True, type=click.IntRange(0),
              help="new voters from one address within a minute before the next ones' votes are flagged burst "
                   "(stored, left out of the default leaderboard)")
@click.option("--reveal-scores/--no-reveal-scores", default=True, show_default=True,
              help="after a vote, show each image's checker verdict and reward beside the revealed names")
@click.option("--live-prompts/--no-live-prompts", default=True, show_default=True,
              help="let visitors battle on their own prompt or edit instruction (Shapes models only: they sample in a blink)")
@click.option("--seed-votes", type=click.Path(exists=True, dir_okay=False), default=None,
              help="automatic votes to start the leaderboard with (default: the bundled "
                   "benchmarks/results/seed_recipe_votes.jsonl); only votes between models this workspace has are "
                   "imported, each once")
@click.option("--no-seed-votes", is_flag=True, help="import no bundled votes")
@click.option("--min-vote-seconds", default=1.0, show_default=True, type=click.FloatRange(0),
              help="a human vote sent sooner than this after its battle was served is stored flagged 'fast' and left "
                   "out of the default leaderboard (0: flag none)")
@click.option("--battle-size", default=4, show_default=True, type=click.IntRange(2, 8),
              help="images in the arena's K-image battles (the 'K at once' tab and GET /api/v1/battle?k=); 2 hides the tab")
@click.option("--personal-board-votes", default=30, show_default=True, type=click.IntRange(1),
              help="votes a visitor casts on a task before their own leaderboard shows")
@click.option("--category-min-votes", default=20, show_default=True, type=click.IntRange(1),
              help="votes a category (prompt family, editing verb) needs before its leaderboard ranks models")
def studio(workspace, host, port, admin_password, models_dir, max_jobs, pool_size, gallery_steps, configs_dir,
           rate_limit, rate_burst, min_votes, new_voters_per_address, burst_voters, reveal_scores, live_prompts, seed_votes, no_seed_votes, min_vote_seconds, battle_size,
           personal_board_votes, category_min_votes):
    """Serve the studio: arena, leaderboard, reward inspector and training, plus the REST API.

    \b
    Examples:
      qwenrl studio --workspace ./workspace
      QWENRL_ADMIN_PASSWORD=secret qwenrl studio --host 0.0.0.0 --port 7860
    The REST API is documented at http://HOST:PORT/api/v1/docs.
    """
    import signal

    in_use = port_in_use(host, port)  # before anything starts: one clear line, not a traceback after the banner
    if in_use:
        raise click.ClickException(f"cannot listen on {host}:{port}: {in_use} (another studio there?); "
                                   "stop it or choose another --port")

    import uvicorn

    from .server import StudioRuntime
    from .workspace import SEED_VOTES

    # SIGTERM must unwind like Ctrl-C, so that the finally below stops the workers: uvicorn
    # catches it while serving, then raises it again with the handler found at its start —
    # the default one would end the process on the spot and orphan the gallery filler.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)

    settings = {"pool_size": pool_size, "num_steps": gallery_steps}
    try:
        runtime = StudioRuntime.open(workspace, admin_password=admin_password, models_dir=models_dir,
                                     max_concurrent=max_jobs, workspace_settings=settings,
                                     configs_dir=configs_dir, rate=rate_limit, burst=rate_burst,
                                     min_votes=min_votes, reveal_scores=reveal_scores, live_prompts=live_prompts,
                                     new_voters=new_voters_per_address, burst_voters=burst_voters, min_vote_s=min_vote_seconds,
                                     battle_size=battle_size, personal_votes=personal_board_votes,
                                     category_min_votes=category_min_votes,
                                     seed_votes=None if no_seed_votes else (seed_votes or SEED_VOTES),
                                     log=lambda line: click.echo(line, err=True))
    except (OSError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    try:
        runtime.start()
        click.echo(f"QwenRL Studio on http://{host}:{port}  (workspace {runtime.workspace.root}; "
                   f"admin {'on' if runtime.auth.enabled else 'off'})", err=True)
        # open pages keep streams open: give them 5 s, not forever, before the workers stop
        uvicorn.run(runtime.app, host=host, port=port, log_level="warning", access_log=False,
                    timeout_graceful_shutdown=5)
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM must not cut the clean-up short
        click.echo("stopping the studio's workers…", err=True)
        runtime.stop()


def port_in_use(host: str, port: int) -> str | None:
    """Why ``host:port`` cannot be listened on (the system's words), or None when it can."""
    import socket

    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as exc:
        return f"unknown host ({exc.strerror})"
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            probe.bind(address)
        except OSError as exc:
            return (exc.strerror or str(exc)).lower()
    return None


def _exit_on_sigterm(signum, frame) -> None:
    raise SystemExit(128 + signum)


@click.group()
def arena():
    """The arena of a studio workspace: automatic judging."""


@arena.command("auto")
@click.option("--workspace", default=DEFAULT_WORKSPACE, show_default=True, type=click.Path(file_okay=False))
@click.option("--task", type=click.Choice(["t2i", "edit"]), required=True)
@click.option("--judge", default="oracle", show_default=True,
              help="'oracle' (the strict Shapes checker), 'humanlike' (the checker when exactly one image passes, "
                   "else the task's composite reward when the scores differ by more than --margin), 'learned' (the learned "
                   "judge comparing the two images; learned:FOLDER for another judge folder), 'reader' (the judge that writes "
                   "positions reads each image and the world's rules decide; reader:FOLDER), 'reader-probability' (the "
                   "reader before its editing fine-tune, preferring the image whose reading is likelier to pass) or a reward YAML file")
@click.option("--margin", default=HUMANLIKE_MARGIN, show_default=True, type=click.FloatRange(0, 1),
              help="humanlike: composite-score difference below which two images tie")
@click.option("--battles", default=500, show_default=True, type=click.IntRange(1))
@click.option("--seed", default=0, show_default=True)
@click.option("--strategy", type=click.Choice(["info", "random"]), default="info", show_default=True)
@click.option("--models-dir", default=None, type=click.Path(file_okay=False),
              help="bundled models to register first (default: data/models)")
@click.option("--checkpoint", "checkpoints", multiple=True, type=click.Path(exists=True, file_okay=False),
              help="another checkpoint folder to register (repeatable), e.g. runs/grpo-t2i/checkpoints/step-000300")
@click.option("--pool-size", default=None, type=click.IntRange(2, 250),
              help="arena prompts per task (default: the workspace's, 48 for a new one; 250 = the whole test split)")
@click.option("--fill/--no-fill", default=True, show_default=True,
              help="first generate the gallery images still missing (in this process)")
@click.option("--json", "as_json", is_flag=True, help="print the summary and leaderboard as JSON")
def auto(workspace, task, judge, battles, seed, strategy, margin, models_dir, checkpoints, pool_size, fill, as_json):
    """Fill the store with automatically judged votes, tagged with the judge.

    \b
    Examples:
      qwenrl arena auto --workspace ./workspace --task t2i --judge oracle --battles 2000
      qwenrl arena auto --task edit --judge training/configs/rewards/shapes_edit.yaml --battles 500
      qwenrl arena auto --task edit --judge humanlike --margin 0.02 --battles 2000
      qwenrl arena auto --task t2i --judge learned --battles 2000
      qwenrl arena auto --task t2i --judge reader --battles 2000
      qwenrl arena auto --task t2i --battles 3000 --checkpoint runs/grpo-t2i/checkpoints/step-000300
    Then: qwenrl votes export ... or the Leaderboard tab with "auto" votes.
    """
    from arena.ratings import leaderboard

    from .autojudge import run_auto_arena
    from .gallery import fill_model
    from .workspace import Workspace

    from qwenrl.checkpoints import CheckpointError, read_manifest
    from qwenrl.progress import Progress

    ws = Workspace.open(workspace, models_dir=models_dir, pool_size=pool_size)
    try:
        known = {m["source"] for m in ws.store.list_models()}
        for folder in checkpoints:
            path = Path(folder).resolve()
            if str(path) in known:
                continue
            try:
                name = ws.register_checkpoint(path, read_manifest(path))
            except CheckpointError as exc:
                raise click.ClickException(str(exc)) from exc
            click.echo(f"registered {name} ({ws.lineage(name)})" if name else f"{path}: no arena task", err=True)
        if fill:
            for name in ws.pending_gallery_models():
                fill_model(ws, name, log=lambda msg: click.echo(msg, err=True))
        progress = Progress(f"arena auto ({task}, judge {judge})", battles, "battles")
        try:
            summary = run_auto_arena(ws, task=task, judge=judge, battles=battles, seed=seed, strategy=strategy, margin=margin,
                                     progress=lambda done, total: progress.update(done))
        except ValueError as exc:
            raise click.ClickException(str(exc)) from exc
        frame = ws.store.votes_frame(task=task, judge=summary["judge"])
        board = leaderboard(frame, rounds=1000, seed=seed)
    finally:
        ws.close()
    if as_json:
        click.echo(json.dumps({**summary, "rows": board.rows, "warnings": board.warnings}, indent=2))
        return
    # the table rates every vote of this judge in the workspace, earlier runs' too: say both numbers
    click.echo(f"{summary['battles']} new {task} battles judged by {summary['judge']}: {summary['outcomes']}; "
               f"the table rates all {len(frame)} {task} votes by {summary['judge']} in {workspace}", err=True)
    for warning in board.warnings:
        click.echo(f"warning: {warning}", err=True)
    click.echo(f"{'rank':>4}  {'model':<32} {'elo':>7} {'95% CI':>15} {'votes':>6}")
    for r in board.rows:
        click.echo(f"{r['rank_ub']:>4}  {r['model']:<32} {r['elo']:7.1f} "
                   f"{r['ci_low']:7.1f}–{r['ci_high']:<7.1f} {r['votes']:>6}")


@arena.command("simulate")
@click.option("--task", type=click.Choice(["t2i", "edit"]), default="t2i", show_default=True,
              help="whose pass rates the bundled models bring (measured on the test prompts)")
@click.option("--bundled/--no-bundled", default=True, show_default=True,
              help="include the bundled models (their per-family pass rates from benchmarks/results/seed_recipe.json)")
@click.option("--synthetic", default="0.15,0.55,0.65,0.8", show_default=True,
              help="pass rates of synthetic models, comma-separated ('' for none)")
@click.option("--k", "kway", default=4, show_default=True, type=click.IntRange(3, 8),
              help="images in a K-way battle (compared with pairwise battles)")
@click.option("--noise", default=0.1, show_default=True, type=click.FloatRange(0, 1), help="share of random votes")
@click.option("--votes", default=3000, show_default=True, type=click.IntRange(20), help="votes per simulated arena")
@click.option("--arenas", default=20, show_default=True, type=click.IntRange(1), help="simulated arenas averaged")
@click.option("--tau", default=0.9, show_default=True, type=click.FloatRange(0, 1), help="the Kendall τ to reach")
@click.option("--seed", default=0, show_default=True)
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="write the curves as JSON")
@click.option("--png", "png_path", type=click.Path(dir_okay=False), help="plot the curves (plotly PNG)")
def simulate(task, bundled, synthetic, kway, noise, votes, arenas, tau, seed, json_path, png_path):
    """How fast K-way and pairwise battles learn, with the oracle judge as the voter.

    Simulated arenas among the bundled models (as the strict checker sees them: their pass
    rates per prompt family) and synthetic ones with known pass rates; votes are matched by
    the arena's matchmaking and rated by Bradley–Terry. Prints, for each battle size, the votes
    (human actions) needed for the mean Kendall τ to reach --tau, and τ, interval width and
    top-1 error along the way.

    \b
    Examples:
      qwenrl arena simulate
      qwenrl arena simulate --no-bundled --synthetic 0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8 --png curves.png
    """
    import collections

    from arena.simulate import SimModel, learning_curves, synthetic_models

    from .paths import PROMPT_DIR, REPO_ROOT

    models = []
    if bundled:
        table = json.loads((REPO_ROOT / "benchmarks" / "results" / "seed_recipe.json").read_text())["table"]
        models += [SimModel(name, rows[f"{task}/test"]["families"]) for name, rows in table.items()
                   if f"{task}/test" in rows]
    try:
        rates = [float(x) for x in synthetic.split(",") if x.strip()]
    except ValueError as exc:
        raise click.ClickException(f"--synthetic takes pass rates such as 0.2,0.5: {exc}") from exc
    if any(not 0 <= r <= 1 for r in rates):
        raise click.ClickException("--synthetic pass rates lie between 0 and 1")
    models += synthetic_models(rates)
    with open(PROMPT_DIR / f"{task}_test.jsonl") as handle:
        families = collections.Counter(json.loads(line).get("family", "") for line in handle if line.strip())
    try:
        curves = learning_curves(models, families, ks=(2, kway), votes=votes, noise=noise, arenas=arenas, seed=seed,
                                 progress=lambda done, total: click.echo(f"arena {done}/{total}", err=True))
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(simulation_table(models, families, curves, tau))
    if json_path:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_text(json.dumps({
            "task": task, "noise": noise, "arenas": arenas, "tau": tau, "seed": seed,
            "models": {m.name: round(m.overall(families), 4) for m in models},
            "curves": [c.__dict__ for c in curves]}, indent=2))
    if png_path:
        from .charts import save_png, simulation_figure

        save_png(simulation_figure({f"{len(models)} models": curves}, tau), png_path)


def simulation_table(models, families, curves, tau: float) -> str:
    """A markdown table: votes to reach τ, and τ, interval width and top-1 error at a few vote counts."""
    pairwise = curves[0].votes_to_reach(tau)
    marks = [n for n in curves[0].votes if n in (curves[0].votes[len(curves[0].votes) // 4],
                                                  curves[0].votes[len(curves[0].votes) // 2], curves[0].votes[-1])]
    head = ["battle", f"votes to τ ≥ {tau}", "vs pairwise"] + [f"τ / CI width / top-1 err at {n}" for n in marks]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join([":---"] + ["---:"] * (len(head) - 1)) + "|"]
    for c in curves:
        reach = c.votes_to_reach(tau)
        ratio = f"{reach / pairwise:.2f}×" if reach and pairwise else "—"
        cells = [f"{c.tau_at(n):.2f} / {c.width_at(n):.0f} / {c.error_at(n):.2f}" for n in marks]
        lines.append("| " + " | ".join([("pairwise" if c.k == 2 else f"{c.k} images"),
                                         str(reach) if reach else f"not within {c.votes[-1]}", ratio, *cells]) + " |")
    truth = sorted(models, key=lambda m: -m.overall(families))
    lines.append("")
    lines.append("True ranking (pass rate over the prompt mix): " + ", ".join(
        f"{m.name} {m.overall(families):.3f}" for m in truth) + ".")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(studio())
