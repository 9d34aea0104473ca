"""What the studio's UI and REST API share: serving battles, taking votes, cached leaderboards.

Nothing here imports gradio, fastapi or torch; handlers in ``app.studio`` and routes in
``app.api`` are thin adapters over these methods.

    service = ArenaService(workspace)
    battle = service.new_battle("t2i", voter="a1b2...")
    result = service.vote(battle.battle_id, "model_a", voter="a1b2...")   # reveals the names
    board = service.leaderboard("t2i", votes="human")

Voters are opaque ids (a browser cookie or a Gradio session). A vote is taken only for a
battle served to that voter, once, with one of the four outcomes; each voter has a token
bucket (``rate`` votes and battles per second, ``burst`` at once). A vote sent sooner than
``min_vote_s`` after its battle was served is stored with the ``fast`` flag; boards leave
flagged votes, named ones and excluded voters' out unless ``include_flagged``
(see ``arena.hygiene``).
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np

from arena.boards import MIN_VOTES, needed_text, rank_apart, votes_needed
from arena.categories import category_too_small, in_category
from arena.hygiene import counted_votes, flag_counts
from arena.matchmaking import next_group, next_pair, pair_counts
from arena.io import HUMAN_JUDGE
from arena.ratings import OUTCOMES, Leaderboard, leaderboard, online_elo, win_rate_matrix
from arena.store import AlreadyVoted, RevealedBattle, UnknownBattle, VoteError, WrongVoter
from qwenrl.tasks import TASKS

from .covariates import Covariates
from .errors import ArenaError, RateLimited
from .images import PngCache
from .limits import LimitExceeded, RequestRates, VoterLimits
from .live import LiveError, image_path_for, is_fast, read_live_instruction, read_live_prompt

#: which votes a board rates: people's, every automatic judge's (oracle, humanlike, rewards, the
#: learned judge), one pairwise judge's votes alone (``qwenrl arena auto --judge learned``, ``reader``,
#: ``reader-probability``), or all
VoteFilter = Literal["human", "auto", "learned", "reader", "reader-probability", "all"]
VOTE_FILTERS: tuple[str, ...] = get_args(VoteFilter)
TASK_NAMES = {"t2i": "text-to-image", "edit": "editing"}


def export_name(task: str | None, votes: str, fmt: str) -> str:
    """The file name of an export of votes, the same in the UI and over REST: it says which
    votes (``votes-t2i-human.jsonl``, ``votes-all-tasks-all.csv``)."""
    return f"votes-{task or 'all-tasks'}-{votes}.{fmt}"


@contextmanager
def store_refusals() -> Iterator[None]:
    """The store's refusal of a vote or a reveal, as the ArenaError with the HTTP status that fits:
    no such battle 404, another voter's 403, voted or revealed already 409, a bad vote 422."""
    try:
        yield
    except UnknownBattle as exc:
        raise ArenaError(str(exc), 404) from exc
    except WrongVoter as exc:
        raise ArenaError(str(exc), 403) from exc
    except (AlreadyVoted, RevealedBattle) as exc:
        raise ArenaError(str(exc), 409) from exc
    except VoteError as exc:
        raise ArenaError(str(exc), 422) from exc


@dataclass
class Battle:
    """A battle as a voter sees it: anonymous, left (``model_a``) and right (``model_b``)."""

    battle_id: str
    task: str
    prompt: str
    family: str
    image_a: Path
    image_b: Path
    source: Path | None = None
    source_id: str | None = None  #: editing: the gallery id of the source image (for a live edit of it)
    images: list[Path] = field(default_factory=list)  #: every image, in display order (K of them)


@dataclass
class VoteResult:
    battle_id: str
    task: str
    winner: str
    model_a: str
    model_b: str


@dataclass
class KwayResult:
    """A K-way vote, revealed: the models in display order and the marks (names, or None)."""

    battle_id: str
    task: str
    models: list[str]
    best: str | None
    worst: str | None


@dataclass
class _TaskIndex:
    """A snapshot of one task's arena: model → {(prompt_id, seed): sample}, and what the
    matchmaker needs (battle counts and rating intervals among ``models``)."""

    by_model: dict[str, dict[tuple[int, int], dict[str, Any]]]
    built: float
    models: list[str]
    counts: Any
    intervals: dict[str, tuple[float, float]]
    rated: float = 0.0  #: when counts and intervals were computed
    _common: dict[tuple[str, str], list] = field(default_factory=dict)

    def common(self, a: str, b: str) -> list:
        """(prompt, seed) keys both models have images for (cached per pair)."""
        key = (a, b) if a < b else (b, a)
        if key not in self._common:
            self._common[key] = sorted(set(self.by_model[a]) & set(self.by_model[b]))
        return self._common[key]


class ArenaService:
    """Battles, votes and leaderboards over a workspace (``app.workspace.Workspace``)."""

    def __init__(
        self,
        workspace,
        *,
        rate: float = 20.0,
        burst: float = 40.0,
        ip_rate: float = 2000.0,
        ip_burst: float = 4000.0,
        rounds: int = 1000,
        min_votes: int = MIN_VOTES,
        index_ttl_s: float = 2.0,
        board_ttl_s: float = 5.0,
        seed: int | None = None,
        strategy: str = "info",
        live=None,
        min_vote_s: float = 0.0,
        kway: int = 4,
        personal_votes: int = 30,
        category_min_votes: int = 20,
        limits: VoterLimits | None = None,
        reveal_scores: bool = True,
    ) -> None:
        self.ws = workspace
        #: after a vote, show each image's checker verdict and reward beside the names
        self.reveal_scores = reveal_scores
        #: new voters per address, burst flags, battles not voted on (app.limits)
        self.limits = limits or VoterLimits(known=workspace.store.voter_seen)
        self.kway = int(kway)  #: images in a K-image battle (the studio's "Four at once" arena)
        self.personal_votes = int(personal_votes)  #: votes a voter casts before their own board shows
        self.category_min_votes = int(category_min_votes)  #: votes a category needs before it is ranked
        self.covariates = Covariates(workspace)
        self._kway_models: OrderedDict[str, list[str]] = OrderedDict()  # battle id → its models, for the vote
        self.min_vote_s = float(min_vote_s)  #: a vote sooner than this after its battle is flagged fast
        self.live = live  #: an app.live.LiveGenerator, or None (live prompts off)
        self._fast_cache: dict[str, bool] = {}
        self.strategy = strategy
        self._refresh_lock = threading.Lock()
        self._refresher: threading.Thread | None = None
        self._stop_refresher = threading.Event()
        self.rounds = rounds
        self.min_votes = min_votes  #: votes a model needs in a view to be ranked there (arena.boards)
        self.index_ttl_s = index_ttl_s
        self.board_ttl_s = board_ttl_s
        self.rates = RequestRates(rate, burst, ip_rate, ip_burst)  #: requests per voter and address (app.limits)
        self._rng = np.random.default_rng(seed)
        self._rng_lock = threading.Lock()
        self._index: dict[str, _TaskIndex] = {}
        self._boards: dict[tuple, tuple[float, int, Leaderboard]] = {}
        self._boards_lock = threading.Lock()
        self.pngs = PngCache()  #: the gallery's PNGs as the REST API sends them

    # -- rate limits ----------------------------------------------------------------------
    def throttle(self, voter: str, client_ip: str | None = None) -> None:
        """RateLimited when the voter (or the client address) asks too often (``self.rates``)."""
        try:
            self.rates.check(voter, client_ip)
        except LimitExceeded as exc:
            raise RateLimited(exc.retry_after, str(exc)) from None

    def admit(self, voter: str, address: str | None) -> None:
        """Before a battle is served: RateLimited when the voter or its address is over one of
        the limits on new voters and open battles (:class:`app.limits.VoterLimits`)."""
        try:
            self.limits.admit(voter, address)
        except LimitExceeded as exc:
            raise RateLimited(exc.retry_after, str(exc)) from None

    # -- battles --------------------------------------------------------------------------
    def tasks(self) -> tuple[str, ...]:
        return TASKS

    def check_task(self, task: Any) -> str:
        """``task`` when the arena has it; ArenaError (400) naming the tasks otherwise."""
        if task not in TASKS:
            raise ArenaError(f"unknown task {task!r}; expected one of {TASKS}", 400)
        return task

    def _task_index(self, task: str) -> _TaskIndex:
        """The task's current snapshot; refreshed here only when no refresher thread runs."""
        idx = self._index.get(task)
        if idx is None:
            with self._refresh_lock:  # the first request builds it; the others wait for it
                idx = self._index.get(task)
                if idx is None:
                    return self.refresh(task)
        if self._refresher is None and time.monotonic() - idx.built >= self.index_ttl_s:
            if self._refresh_lock.acquire(blocking=False):  # else another thread is on it
                try:
                    return self.refresh(task)
                finally:
                    self._refresh_lock.release()
        return idx

    def refresh(self, task: str, warm: bool = False) -> _TaskIndex:
        """Rebuild a task's snapshot: its gallery samples per model, and the matchmaking inputs
        (battle counts and intervals of the human votes, recomputed every ``board_ttl_s`` or when
        the models change). Requests only ever read snapshots."""
        by_model: dict[str, dict[tuple[int, int], dict[str, Any]]] = {}
        for s in self.ws.arena_samples(task):
            by_model.setdefault(s["model"], {})[(s["prompt_id"], int(s["seed"]))] = s
        models = sorted(by_model)
        old = self._index.get(task)
        now = time.monotonic()
        if old is not None and old.models == models and now - old.rated < self.board_ttl_s:
            counts, intervals, rated = old.counts, old.intervals, old.rated
        else:
            counts, intervals, rated = None, {}, now
            if len(models) >= 2:
                counts = pair_counts(self.votes(task, "human"), models)
                # the intervals of the cached human board (the one pages show), not a bootstrap of its own
                board = self.leaderboard(task, "human", max_age_s=self.board_ttl_s)
                intervals = {r["model"]: (r["ci_low"], r["ci_high"]) for r in board.rows}
        idx = _TaskIndex(by_model, now, models, counts, intervals, rated)
        self._index[task] = idx
        if warm:  # the background refresher computes new images' covariates, off the request path (cached)
            for samples in by_model.values():
                for sample in samples.values():
                    self.covariates.of(sample)
        return idx

    def start(self, interval_s: float = 1.0) -> None:
        """Refresh the snapshots in a background thread, off the request path."""
        if self._refresher is not None:
            return
        stop = self._stop_refresher = threading.Event()

        def loop() -> None:
            while not stop.wait(interval_s):
                for task in self.tasks():
                    try:
                        self.refresh(task, warm=True)
                    except Exception as exc:  # keep serving the last snapshot
                        print(f"arena refresh ({task}): {type(exc).__name__}: {exc}", file=sys.stderr)

        self._refresher = threading.Thread(target=loop, name="arena-refresh", daemon=True)
        self._refresher.start()

    def stop(self) -> None:
        if self._refresher is not None:
            self._stop_refresher.set()
            self._refresher.join(timeout=5)
            self._refresher = None

    def arena_models(self, task: str) -> list[str]:
        """Models that can appear in a battle of ``task`` now."""
        return list(self._task_index(task).models)

    def new_battle(self, task: str, voter: str, k: int = 2, address: str | None = None) -> Battle:
        """Pick ``k`` models (matchmaking), a prompt they all have, randomise the order, record the battle.
        ``address``: the client's, for the limits on new voters and open battles."""
        self.check_task(task)
        if not isinstance(k, int) or not 2 <= k <= 8:
            raise ArenaError(f"a battle shows 2 to 8 images, not {k!r}", 422)
        self.admit(voter, address)
        idx = self._task_index(task)
        models = idx.models
        if len(models) < k:
            registered = len(self.ws.store.list_models(task))
            why = ("the gallery is still filling" if registered >= k else
                   f"{registered} model(s) registered: add checkpoints to data/models or train one")
            noun = "two models" if k == 2 else f"{k} models"
            raise ArenaError(f"the {task} arena needs {noun} with gallery images; {why}", 503)
        with self._rng_lock:
            # matchmaking shuffles the sides, so the left image is any model at random
            group = next_group(models, idx.counts, k, strategy=self.strategy, seed=self._rng, intervals=idx.intervals)
            common = idx.common(group[0], group[1])
            if k > 2:
                shared = set(common).intersection(*(idx.by_model[m] for m in group[2:]))
                common = [key for key in common if key in shared]
            if not common:
                raise ArenaError(f"{task}: no prompt shared by the chosen models yet", 503)
            key = common[int(self._rng.integers(len(common)))]
        samples = [idx.by_model[m][key] for m in group]
        meta = self.covariates.battle_meta(samples)
        if k == 2:
            battle_id = self.ws.create_battle(samples[0], samples[1], voter, meta=meta)
        else:
            battle_id = self.ws.create_kway_battle(samples, voter, meta=meta)
            with self._rng_lock:
                self._kway_models[battle_id] = list(group)
                while len(self._kway_models) > 100_000:
                    self._kway_models.popitem(last=False)
        self.limits.served(voter, battle_id)
        first = samples[0]
        images = [self.ws.root / s["image_path"] for s in samples]
        return Battle(
            battle_id=battle_id,
            task=task,
            prompt=first["prompt"],
            family=first.get("family") or "",
            image_a=images[0],
            image_b=images[1],
            source=self.ws.source_path(first["pool_id"]) if task == "edit" else None,
            source_id=first["pool_id"] if task == "edit" else None,
            images=images,
        )

    def open_or_new_battle(self, task: str, voter: str, address: str | None = None, k: int = 2) -> Battle:
        """The voter's latest open gallery battle of ``task`` with ``k`` images (served, neither voted
        on nor revealed, within the open-battle window), else a new one: a page that is reloaded shows
        the battle it had, instead of piling up battles nobody votes on."""
        row = self.ws.store.open_battle(voter, task, k, since=time.time() - self.limits.open_ttl_s)
        item = self.ws.pool_item(row["prompt_id"]) if row else None
        if item is None:  # none open, or a live one (made on the visitor's own text): a new battle
            return self.new_battle(task, voter, k, address=address)
        ids = json.loads(row["samples"]) if k > 2 else [row["sample_a"], row["sample_b"]]
        images = [self.ws.root / self.ws.store.get_sample(i)["image_path"] for i in ids]
        return Battle(battle_id=row["id"], task=task, prompt=item.text, family=item.family, image_a=images[0],
                      image_b=images[1], source=self.ws.source_path(item.id) if task == "edit" else None,
                      source_id=item.id if task == "edit" else None, images=images)

    def named_battle(self, task: str, model_a: str, model_b: str, voter: str, address: str | None = None) -> Battle:
        """A side-by-side battle of two models the visitor picked, on a gallery prompt both have
        (left ``model_a``, right ``model_b``). Its vote is stored as not anonymous (the names were
        shown), so the default boards leave it out, as LMArena keeps its named side-by-side apart."""
        self.check_task(task)
        idx = self._task_index(task)
        for name in (model_a, model_b):
            if name not in idx.models:
                raise ArenaError(f"{str(name)[:80]!r} is not a model of the {task} arena; pick one of {', '.join(idx.models)}", 422)
        if model_a == model_b:
            raise ArenaError("pick two different models", 422)
        self.admit(voter, address)
        with self._rng_lock:
            common = idx.common(model_a, model_b)
            if not common:
                raise ArenaError(f"{task}: no prompt shared by {model_a} and {model_b} yet", 503)
            key = common[int(self._rng.integers(len(common)))]
        sa, sb = idx.by_model[model_a][key], idx.by_model[model_b][key]
        battle_id = self.ws.create_battle(sa, sb, voter, meta={**(self.covariates.battle_meta([sa, sb]) or {}), "named": True})
        self.limits.served(voter, battle_id)
        return Battle(battle_id=battle_id, task=task, prompt=sa["prompt"], family=sa.get("family") or "",
                      image_a=self.ws.root / sa["image_path"], image_b=self.ws.root / sb["image_path"],
                      source=self.ws.source_path(sa["pool_id"]) if task == "edit" else None,
                      source_id=sa["pool_id"] if task == "edit" else None,
                      images=[self.ws.root / sa["image_path"], self.ws.root / sb["image_path"]])

    def reveal_details(self, battle_id: str) -> list[dict[str, Any]]:
        """After a vote: for each image of the battle (side order), its ``model``, composite
        ``score``, whether the exact checker passes it (``checker``; None when not judged) and
        the checker's ``reasons``. Empty when ``reveal_scores`` is off or the battle has no vote."""
        battle = self.ws.store.get_battle(battle_id) if self.reveal_scores else None
        if battle is None or battle.get("vote") is None:
            return []
        from .inspector import component_rationale, reward_judge  # the inspector's reading of a judgement

        models = battle.get("models") or [battle["model_a"], battle["model_b"]]
        samples = battle.get("samples") or [battle["sample_a"], battle["sample_b"]]
        out = []
        for model, sample in zip(models, samples):
            judged = {j["judge"]: j for j in self.ws.store.judgements(sample_id=sample)} if sample is not None else {}
            j = judged.get(reward_judge(battle["task"]))
            strict = (j or {}).get("parts", {}).get("strict")
            out.append({"model": model, "score": j["score"] if j else None,
                        "checker": None if strict is None else strict >= 1.0,
                        "reasons": (component_rationale(j["rationale"], "strict") or "") if j else ""})
        return out

    def _fast(self, model: str) -> bool:
        """Whether ``model`` samples quickly enough for live prompts (read once from its manifest)."""
        if model not in self._fast_cache:
            row = self.ws.store.get_model(model)
            self._fast_cache[model] = bool(row and row.get("source") and is_fast(row["source"]))
        return self._fast_cache[model]

    def live_battle(self, task: str, text: str, voter: str, source_id: str | None = None,
                    address: str | None = None) -> Battle:
        """A battle on the visitor's own prompt (text-to-image) or instruction (editing, over the
        gallery source ``source_id``): two arena models (matchmaking among the fast ones) sample
        it now with a fresh seed; the battle and its vote are stored like any other (family
        ``user``). ArenaError: 422 for a bad text, 404 for an unknown source, 503 when off."""
        self.check_task(task)
        if self.live is None:
            raise ArenaError("live prompts are off in this studio", 503)
        source = None
        if task == "edit":
            if not source_id:
                raise ArenaError("an edit needs a source image: give the source_id of a gallery source "
                                 "(a battle's, or one of GET /api/v1/sources)", 422)
            source = self.ws.edit_source(source_id)
            if source is None:
                raise ArenaError(f"no source image {str(source_id)[:64]!r} in the gallery", 404)
        try:  # every fast model is a Shapes model: the text must be a sentence of the Shapes grammar
            read = read_live_instruction(text, source["scene"]) if source else read_live_prompt(text)
        except LiveError as exc:
            raise ArenaError(str(exc), 422) from exc
        text = read.text
        self.admit(voter, address)
        idx = self._task_index(task)
        keep = [i for i, m in enumerate(idx.models) if self._fast(m)]
        models = [idx.models[i] for i in keep]
        if len(models) < 2:
            raise ArenaError("live prompts need two arena models that sample quickly on this machine (Shapes checkpoints)", 503)
        counts = idx.counts[np.ix_(keep, keep)] if idx.counts is not None else np.zeros((len(models), len(models)), dtype=np.int64)
        with self._rng_lock:
            left, right = next_pair(models, counts, strategy=self.strategy, seed=self._rng,
                                    intervals={m: idx.intervals[m] for m in models if m in idx.intervals})
            seed = int(self._rng.integers(1, 2**31 - 1))
        # what the text asks for is stored with it (a prompt's spec; an edit's source, target and
        # the source's gallery id), so the checker can judge these images like the gallery's
        if source is None:
            prompt_id = self.ws.store.add_prompt(task, text, family="user", spec=read.spec)
        else:
            prompt_id = self.ws.store.add_prompt(
                task, text, family="user", spec={**read.to_dict(), "source_id": source["source_id"]},
                source_image=str(source["path"].relative_to(self.ws.root)))
        samples = []
        for model in (left, right):
            out = image_path_for(model, text, seed, source["source_id"] if source else None)
            try:
                made = self.live.generate(self.ws.store.get_model(model)["source"], text, seed, out,
                                          edit_source=source["scene"] if source else None, spec=read.to_dict())
            except LiveError as exc:
                raise ArenaError(str(exc), 503) from exc
            sample_id = self.ws.store.add_sample(model, prompt_id, seed, out, content_hash=made.get("content_hash"))
            j = made.get("judgement")
            if j:  # the worker judged the image as the gallery's are judged: the reveal can show it
                self.ws.store.add_judgement(sample_id, j["judge"], j["score"], parts=j["parts"], rationale=j["rationale"])
            samples.append({"id": sample_id, "image_path": out})
        battle_id = self.ws.create_battle(samples[0], samples[1], voter)
        self.limits.served(voter, battle_id)
        return Battle(battle_id=battle_id, task=task, prompt=text, family="user",
                      image_a=self.ws.root / samples[0]["image_path"], image_b=self.ws.root / samples[1]["image_path"],
                      source=source["path"] if source else None, source_id=source["source_id"] if source else None)

    def edit_sources(self) -> list[dict[str, Any]]:
        """Gallery source images a live edit may use (``source_id``, ``description``, ``path``)."""
        return self.ws.edit_sources()

    def vote(self, battle_id: str, winner: str, voter: str, judge: str = HUMAN_JUDGE) -> VoteResult:
        """Record a vote; reveals both models. ArenaError (with an HTTP status) when refused."""
        if winner not in OUTCOMES:
            raise ArenaError(f"winner must be one of {', '.join(OUTCOMES)}; got {winner!r}", 422)
        if not isinstance(battle_id, str) or not 0 < len(battle_id) <= 128:
            raise ArenaError("battle_id must be the id of a battle you were served", 404)
        with store_refusals():
            row = self.ws.record_vote(battle_id, winner, voter, judge=judge, flags=self.limits.vote_flags(voter),
                                      min_seconds=self.min_vote_s if judge == HUMAN_JUDGE else None)
        self.limits.voted(voter, battle_id)
        return VoteResult(battle_id, row["task"], winner, row["model_a"], row["model_b"])

    def vote_kway(self, battle_id: str, best: int | None, worst: int | None, voter: str,
                  judge: str = HUMAN_JUDGE) -> KwayResult:
        """Record a K-way vote given by positions (0 = the first image): the ``best``, optionally
        the ``worst``; neither is "all bad". Reveals the models. ArenaError (with an HTTP status) when refused."""
        if not isinstance(battle_id, str) or not 0 < len(battle_id) <= 128:
            raise ArenaError("battle_id must be the id of a battle you were served", 404)
        models = self._kway_models.get(battle_id)
        if models is None:  # served by an earlier run of the studio, or not a K-way battle
            battle = self.ws.store.get_battle(battle_id)
            if battle is None:
                raise ArenaError(f"no battle {battle_id!r}", 404)
            models = battle.get("models")
        if not models:
            raise ArenaError(f"battle {battle_id!r} shows two images: vote with a winner (POST /api/v1/vote)", 422)
        marks = []
        for name, position in (("best", best), ("worst", worst)):
            if position is not None and not (isinstance(position, int) and 0 <= position < len(models)):
                raise ArenaError(f"{name} must be an image position from 0 to {len(models) - 1}, or null", 422)
            marks.append(None if position is None else models[position])
        with store_refusals():
            row = self.ws.store.record_ranking(battle_id, marks[0], marks[1], voter=voter, judge=judge,
                                               flags=self.limits.vote_flags(voter),
                                               min_seconds=self.min_vote_s if judge == HUMAN_JUDGE else None)
        self.limits.voted(voter, battle_id)
        return KwayResult(battle_id, row["task"], list(models), marks[0], marks[1])

    def reveal(self, battle_id: str, voter: str) -> dict[str, Any]:
        """Skip a battle: show its models without a vote; no vote is taken for it afterwards."""
        with store_refusals():
            battle = self.ws.store.reveal_battle(battle_id, voter)
        self.limits.voted(voter, battle_id)  # a skipped battle is no longer open
        models = battle.get("models") or [battle["model_a"], battle["model_b"]]
        return {"battle_id": battle_id, "task": battle["task"], "models": models, "voted": battle["vote"] is not None}

    # -- leaderboards ---------------------------------------------------------------------
    def votes(self, task: str | None = None, votes: VoteFilter = "human", *, include_flagged: bool = False):
        """The vote table (a DataFrame in the export format) of a task and kind of judge: the
        votes a board counts, or with ``include_flagged`` every vote (an export's)."""
        if votes not in VOTE_FILTERS:
            raise ArenaError(f"votes must be one of {VOTE_FILTERS}, not {votes!r}")
        return counted_votes(self.ws.votes_frame(task=task, judges=votes), include_flagged=include_flagged)

    def flagged(self, task: str, votes: VoteFilter = "human") -> dict[str, int]:
        """How many votes of each flag the default board of ``task`` leaves out."""
        return flag_counts(self.votes(task, votes, include_flagged=True))

    def exclude_voter(self, voter: str, reason: str = "") -> dict[str, Any]:
        """Admin: leave a voter's votes out of the default boards (reversible; nothing deleted)."""
        try:
            return self.ws.store.exclude_voter(voter, reason)
        except ValueError as exc:
            raise ArenaError(str(exc), 404) from exc

    def include_voter(self, voter: str) -> bool:
        """Admin: count an excluded voter's votes again; False when they were not excluded."""
        return self.ws.store.include_voter(voter)

    def default_view(self, task: str) -> tuple[VoteFilter, str]:
        """Which votes the leaderboard of ``task`` opens on, and why (a sentence for the page).

        Human votes once every shown model (the arena's, and any a human vote names) has at least
        ``min_votes`` of them (people's judgement is the point of an arena, but one vote would
        rank two models on nothing); until then the automatic ones (a new workspace has the
        bundled automatic-arena votes), so the first leaderboard a newcomer sees is not empty,
        and the sentence says how many human votes are still needed.
        """
        self.check_task(task)
        counts = self.ws.store.judge_counts(task)
        human = counts.get(HUMAN_JUDGE, 0)
        auto = {judge: n for judge, n in counts.items() if judge != HUMAN_JUDGE}
        name = TASK_NAMES[task]
        shown = self.ws.arena_model_names(task)  # the models people can battle here, voted on or not
        needed = votes_needed(self.votes(task, "human"), self.min_votes, shown) if human else {}
        if human and not needed:
            return "human", f"Showing human votes: people have voted {human} time(s) on {name} battles."
        if not auto:
            if human:
                return "human", (f"Showing human votes: people have voted {human} time(s) on {name} battles; a model "
                                 f"is ranked once it has {self.min_votes} votes ({needed_text(needed)}).")
            return "human", (f"No {name} votes yet: vote in the Arena tab, or let a program judge "
                             "(qwenrl arena auto).")
        judges = ", ".join(f"{judge} ({n})" for judge, n in sorted(auto.items()))
        if human:
            why = (f"Showing automatic votes: people have voted {human} time(s) on {name} battles, and human votes "
                   f"take over once every model has {self.min_votes}: {needed_text(needed)} needed. These "
                   f"{sum(auto.values())} were judged by a program: {judges}.")
        else:
            why = (f"Showing automatic votes: nobody has voted on {name} battles yet; these "
                   f"{sum(auto.values())} were judged by a program: {judges}.")
        seed = getattr(self.ws, "seed_votes", None)
        bundled = seed.by_task.get(task, 0) if seed is not None else 0
        if bundled:
            why += (f" {bundled} of them come with the studio: the automatic arena of the bundled models "
                    f"({seed.path}).")
        if human:
            return "auto", why
        return "auto", why + f" Human votes take over once people vote ({self.min_votes} per model)."

    def ranked(self, task: str, votes: VoteFilter = "human", *, include_flagged: bool = False,
               category: str | None = None) -> tuple[Leaderboard, list[dict], list[dict]]:
        """The leaderboard, its ranked rows and the rows listed apart (models with fewer than
        ``min_votes`` votes in this view: unranked, with the votes they still need)."""
        board = self.leaderboard(task, votes, include_flagged=include_flagged, category=category)
        ranked, apart = rank_apart(board.rows, self.min_votes)
        return board, ranked, apart

    def leaderboard(self, task: str, votes: VoteFilter = "human", *, max_age_s: float | None = 0.0,
                    include_flagged: bool = False, category: str | None = None) -> Leaderboard:
        """Leaderboard of a task, cached while the task's votes and the excluded voters are unchanged.

        ``max_age_s``: a cached board younger than this is returned without looking at the
        votes at all (matchmaking uses ``board_ttl_s``; pages and the API see every vote).
        ``include_flagged``: count flagged votes too (fast, burst, named, excluded voters').
        ``category``: only the votes of one prompt family or editing verb; a category with fewer
        than ``category_min_votes`` votes gets no rows, and a warning that says so.
        """
        self.check_task(task)
        if votes not in VOTE_FILTERS:
            raise ArenaError(f"votes must be one of {VOTE_FILTERS}, not {votes!r}")
        key = (task, votes, bool(include_flagged), category, self.category_min_votes if category else 0)
        now = time.monotonic()
        with self._boards_lock:
            cached = self._boards.get(key)
        if cached is not None and max_age_s and now - cached[0] < max_age_s:
            return cached[2]
        count = (self.ws.store.vote_count(task), tuple(r["voter"] for r in self.ws.store.excluded_voters()))
        if cached is not None and cached[1] == count:
            return cached[2]
        frame = self.votes(task, votes, include_flagged=include_flagged)
        if category:
            frame = in_category(frame, category)
            short = category_too_small(category, len(frame), self.category_min_votes)
            if short:
                board = Leaderboard([], [short], votes=len(frame))
                with self._boards_lock:
                    self._boards[key] = (now, count, board)
                return board
        board = leaderboard(frame, rounds=self.rounds, seed=0, workers=1) if len(frame) else Leaderboard([], [])
        with self._boards_lock:
            self._boards[key] = (now, count, board)
        return board

    def win_rates(self, task: str, votes: VoteFilter = "human", *, include_flagged: bool = False):
        frame = self.votes(task, votes, include_flagged=include_flagged)
        return win_rate_matrix(frame) if len(frame) else None

    def elo_history(self, task: str, votes: VoteFilter = "human", points: int = 30, *,
                    include_flagged: bool = False) -> list[dict[str, Any]]:
        """Online Elo after each of ``points`` evenly spaced prefixes of the vote log."""
        frame = self.votes(task, votes, include_flagged=include_flagged)
        n = len(frame)
        if not n:
            return []
        if "tstamp" in frame:
            frame = frame.sort_values("tstamp", kind="stable")
        out = []
        for k in sorted({max(1, round(n * i / points)) for i in range(1, points + 1)}):
            prefix = frame.iloc[:k]
            t = float(prefix["tstamp"].iloc[-1]) if "tstamp" in prefix else float(k)
            for model, rating in online_elo(prefix).items():
                out.append({"votes": k, "tstamp": t, "model": model, "elo": rating})
        return out
