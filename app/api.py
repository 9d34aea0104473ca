"""The REST API, mounted beside the Gradio app: programmatic voting, leaderboards, jobs.

Routes (all JSON; the OpenAPI schema is at ``/api/v1/openapi.json``, docs at ``/api/v1/docs``):

    GET  /api/v1/health                     liveness (used by the Docker HEALTHCHECK)
    GET  /api/v1/battle?task=t2i|edit&k=2   a new anonymous battle for this client (k images: 2, or 3–8)
    POST /api/v1/battle/live                {"prompt", "task", "source_id"}: a battle on your own prompt
                                            or, for editing, your instruction over a gallery source
    GET  /api/v1/sources                    the gallery's editing source images (ids for live edits)
    POST /api/v1/vote                       {"battle_id", "winner": model_a|model_b|tie|tie (bothbad)}
    POST /api/v1/vote/kway                  {"battle_id", "best": 0..k-1|null, "worst": 0..k-1|null} (both null: all bad)
    POST /api/v1/battle/reveal              {"battle_id"}: skip it; the names are shown and no vote is taken after
    GET  /api/v1/leaderboard?task=…&votes=human|auto|learned|all&include_flagged=false&category=…&control=false
                                            (default: human once people voted, else auto; learned: the learned
                                            judge's pairwise votes alone; flagged votes left out;
                                            control=true adds ratings controlled for looks and the coefficients)
    GET  /api/v1/categories?task=…          votes per category (prompt family, editing verb) and the minimum
    GET  /api/v1/leaderboard/personal?task=…   this client's own board, once it has voted N times
    GET  /api/v1/votes/export?format=jsonl|csv&task=…&votes=…   (every vote, with its flags)
    POST /api/v1/admin/login                {"password"} → admin cookie
    GET  /api/v1/admin/voters               (admin) voters, their votes, flagged votes, exclusion
    POST /api/v1/admin/voters/exclude       (admin) {"voter", "reason"}: left out of the default boards
    POST /api/v1/admin/voters/include       (admin) {"voter"}: counted again
    GET  /api/v1/jobs                       (admin) jobs and their status
    POST /api/v1/jobs                       (admin) {"kind", "config", "overrides"} → queued job
    GET  /api/v1/jobs/{id}                  (admin) status, progress, log tail
    POST /api/v1/jobs/{id}/cancel           (admin)

A client is a voter through the ``qwenrl_voter`` cookie, set on its first request: keep the
cookie between ``/battle`` and ``/vote``. Admin routes take ``Authorization: Bearer
PASSWORD`` or the cookie set by ``/admin/login``; without credentials they answer 401, with
wrong ones 403.
"""

from __future__ import annotations

import io
import secrets
from pathlib import Path
from collections.abc import Callable
from typing import Any, Literal

import orjson
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, Field
from starlette.requests import cookie_parser

from . import boards
from .jobs import JobError, JobManager
from .limits import BodyLimit, excerpt
from .live import MAX_PROMPT_CHARS
from .auth import VOTER_COOKIE, AdminAuth, is_voter_id
from .errors import ArenaError, RateLimited
from .service import ArenaService, VoteFilter, export_name

ADMIN_COOKIE = "qwenrl_admin"
#: the ``votes`` query of the leaderboard, categories and export routes
VOTES_HELP = ("which votes: human (people's), auto (every automatic judge: oracle, humanlike, reward:…, learned, reader), "
              "learned (only the learned judge's pairwise votes, from `qwenrl arena auto --judge learned`), "
              "reader (only the reader judge's, from `--judge reader`), reader-probability (the reader judge's by the "
              "likelier pass, from `--judge reader-probability`) or all")


class BattleOut(BaseModel):
    battle_id: str = Field(description="unguessable id; vote on it with the same client (cookie)")
    task: Literal["t2i", "edit"]
    prompt: str = Field(description="the prompt (text-to-image) or the edit instruction")
    family: str = Field(description="prompt family (single, counting, recolor, ...)")
    source_png: str | None = Field(None, description="editing: the source image, base64 PNG")
    source_id: str | None = Field(None, description="editing: the source's gallery id (POST /battle/live edits it)")
    image_a: str = Field(description="left image (model_a), base64 PNG")
    image_b: str = Field(description="right image (model_b), base64 PNG")
    images: list[str] | None = Field(None, description="a K-image battle (k ≥ 3): every image in display order, "
                                                       "base64 PNG (image_a and image_b are the first two)")


class LiveIn(BaseModel):
    # no max_length here: the length is checked with the other rules of a prompt, so that it has
    # one limit and one message (an oversized body is refused with 413 before this is parsed)
    prompt: str = Field(description=f"a text-to-image prompt or an edit instruction in the Shapes grammar, at most "
                                    f"{MAX_PROMPT_CHARS} characters, e.g. 'a red circle left of a blue square', "
                                    "'make the background blue'")
    task: Literal["t2i", "edit"] = "t2i"
    source_id: str | None = Field(None, max_length=128, description="editing: the gallery id of the source image "
                                                                    "(a battle's source_id, or one of GET /sources)")


class SourceOut(BaseModel):
    source_id: str
    description: str = Field(description="the scene in words")
    source_png: str = Field(description="base64 PNG")


class VoteIn(BaseModel):
    battle_id: str = Field(max_length=128)
    winner: Literal["model_a", "model_b", "tie", "tie (bothbad)"]


class KwayVoteIn(BaseModel):
    battle_id: str = Field(max_length=128)
    best: int | None = Field(None, ge=0, le=7, description="position of the best image (0 = first); null with "
                                                           "worst null: all bad")
    worst: int | None = Field(None, ge=0, le=7, description="position of the worst image, optional")


class KwayVoteOut(BaseModel):
    ok: bool = True
    battle_id: str
    task: str
    models: list[str] = Field(description="the models behind the images, in display order, revealed after the vote")
    best: str | None
    worst: str | None


class RevealIn(BaseModel):
    battle_id: str = Field(max_length=128)


class VoteOut(BaseModel):
    ok: bool = True
    battle_id: str
    task: str
    winner: str
    model_a: str = Field(description="the model behind the left image, revealed after the vote")
    model_b: str


class LeaderboardRow(BaseModel):
    model: str
    elo: float = Field(description="Bradley–Terry rating on the Elo scale")
    ci_low: float
    ci_high: float
    elo_online: float
    trueskill_mu: float
    trueskill_sigma: float
    trueskill_score: float
    votes: int
    wins: int
    losses: int
    ties: int
    win_rate: float
    rank_ub: int | None = Field(description="rank (upper bound) among the ranked models; None for a model listed apart")
    component: int
    needed: int | None = Field(None, description="listed apart: the votes it still needs to be ranked")


class ControlledRow(BaseModel):
    model: str
    elo: float = Field(description="Bradley–Terry rating with the covariates as extra regression terms")
    ci_low: float
    ci_high: float
    elo_uncontrolled: float = Field(description="plain Bradley–Terry rating of the same votes")
    shift: float


class Coefficient(BaseModel):
    covariate: str = Field(description="aesthetics, objects, or a numeric field of the battles' meta")
    beta: float = Field(description="log-odds per standard deviation of the difference between two images")
    elo_per_sd: float = Field(description="the same on the Elo scale: > 0 means voters prefer more of it")
    ci_low: float
    ci_high: float
    sd: float


class ControlledOut(BaseModel):
    rows: list[ControlledRow]
    coefficients: list[Coefficient]
    votes: int
    left_out: int = Field(description="votes without covariates, left out of the controlled fit")
    rounds: int
    warnings: list[str]


class LeaderboardOut(BaseModel):
    task: str
    votes: str = Field(description="the votes rated: human, auto, learned or all")
    why: str = Field("", description="without ?votes=, which votes the board shows and why")
    include_flagged: bool = Field(False, description="whether flagged votes (fast, burst, named, excluded voters') count")
    flagged: dict[str, int] = Field(default_factory=dict,
                                    description="votes per flag among the votes asked for (left out unless include_flagged)")
    category: str | None = Field(None, description="the prompt family or editing verb rated, or every vote")
    n_votes: int
    ci: str
    rounds: int
    warnings: list[str]
    min_votes: int = Field(description="votes a model needs in this view to be ranked")
    rows: list[LeaderboardRow] = Field(description="the ranked models")
    unranked: list[LeaderboardRow] = Field(default_factory=list, description="models with fewer than min_votes votes "
                                                                             "in this view, listed apart, unranked")
    controlled: ControlledOut | None = Field(None, description="with control=true: style control for images")


class PersonalOut(BaseModel):
    task: str
    votes_cast: int = Field(description="this client's votes on the task")
    needed: int = Field(description="votes before the personal board shows")
    message: str
    rows: list[LeaderboardRow] | None = Field(description="null until votes_cast reaches needed")


class LoginIn(BaseModel):
    password: str = Field(max_length=1024)


class VoterIn(BaseModel):
    voter: str = Field(min_length=1, max_length=256, description="a voter id, as GET /admin/voters lists them")
    reason: str = Field("", max_length=1000)


class JobIn(BaseModel):
    kind: Literal["grpo", "distill"]
    config: str = Field(max_length=512, description="a YAML file under training/configs/")
    overrides: dict[str, str | int | float | bool] = Field(default_factory=dict, description="--set KEY=VALUE")


class VoterCookieMiddleware:
    """Gives every client a random voter id in a cookie (a malformed one is replaced).

    Plain ASGI rather than ``BaseHTTPMiddleware``: it runs on every request, the vote path
    included, and costs next to nothing this way.
    """

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        voter = None
        for name, value in scope.get("headers", ()):
            if name == b"cookie":
                voter = cookie_parser(value.decode("latin-1")).get(VOTER_COOKIE)
                break
        fresh = not is_voter_id(voter)
        if fresh:
            voter = secrets.token_hex(16)
        scope.setdefault("state", {})["voter"] = voter
        if not fresh:
            await self.app(scope, receive, send)
            return
        cookie = f"{VOTER_COOKIE}={voter}; Max-Age={365 * 86400}; Path=/; HttpOnly; SameSite=lax".encode()

        async def send_with_cookie(message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), (b"set-cookie", cookie)]}
            await send(message)

        await self.app(scope, receive, send_with_cookie)


def voter_of(request: Request) -> str:
    """The client's voter id (set by the middleware)."""
    return request.state.voter


def client_of(request: Request) -> str | None:
    """The client's address (the key of the per-address limits)."""
    return request.client.host if request.client else None


def create_api(service: ArenaService, jobs: JobManager | None, auth: AdminAuth) -> FastAPI:
    """The FastAPI app with the REST routes; ``app.server`` mounts Gradio on it at ``/``."""
    app = FastAPI(
        title="QwenRL Studio API",
        version="1",
        description=__doc__,
        openapi_url="/api/v1/openapi.json",
        docs_url="/api/v1/docs",
        redoc_url=None,
    )

    app.add_middleware(VoterCookieMiddleware)
    app.add_middleware(BodyLimit)  # added last, so it runs first: nothing reads an oversized body
    _error_handlers(app)
    api = APIRouter(prefix="/api/v1")
    _battle_routes(api, service)
    _board_routes(api, service)
    require_admin = admin_guard(auth)
    _admin_routes(api, service, require_admin, auth)
    _job_routes(api, jobs, require_admin)
    app.include_router(api)
    return app


def _error_handlers(app: FastAPI) -> None:
    """422 naming each bad field; an ArenaError or JobError with its status."""

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError):
        """422 naming each bad field, quoting at most a short excerpt of what was sent."""
        problems = []
        for err in exc.errors():
            where = ".".join(str(part) for part in err.get("loc", ()) if part != "body") or "body"
            item = {"loc": list(err.get("loc", ())), "msg": f"{where}: {err.get('msg', 'invalid')}"}
            if "input" in err and err.get("type") != "missing":
                item["input"] = excerpt(err["input"])
            problems.append(item)
        return JSONResponse({"detail": problems}, status_code=422)

    @app.exception_handler(ArenaError)
    async def arena_error(request: Request, exc: ArenaError):
        headers = {"Retry-After": f"{max(1, round(exc.retry_after))}"} if isinstance(exc, RateLimited) else None
        return JSONResponse({"detail": str(exc)}, status_code=exc.status, headers=headers)

    @app.exception_handler(JobError)
    async def job_error(request: Request, exc: JobError):
        status = 404 if str(exc).startswith("no job") else 400
        return JSONResponse({"detail": str(exc)}, status_code=status)


def admin_guard(auth: AdminAuth) -> Callable[[Request], None]:
    """The dependency of the admin routes: ``Authorization: Bearer PASSWORD`` or the login cookie;
    401 without credentials, 403 with wrong ones (wrong passwords count towards a lockout)."""

    def require_admin(request: Request) -> None:
        if not auth.enabled:
            raise HTTPException(403, "admin is disabled: start the studio with --admin-password or QWENRL_ADMIN_PASSWORD")
        header = request.headers.get("authorization", "")
        if header.lower().startswith("bearer "):
            if auth.verify(header[7:].strip(), client_of(request)):
                return
            raise HTTPException(403, "wrong admin password")
        cookie = request.cookies.get(ADMIN_COOKIE)
        if cookie:
            if auth.check_token(cookie):
                return
            raise HTTPException(403, "admin login expired; log in again")
        raise HTTPException(401, "admin only: send Authorization: Bearer PASSWORD or log in",
                            headers={"WWW-Authenticate": "Bearer"})

    return require_admin


def _battle_json(service: ArenaService, b: Any, k: int | None = None) -> Response:
    """A served battle as the API answers it: its text and images as base64 PNGs (``images``
    with every image for a K-image battle, ``k`` > 2)."""
    body = {
        "battle_id": b.battle_id, "task": b.task, "prompt": b.prompt, "family": b.family,
        "source_png": service.pngs.as_base64(b.source) if b.source is not None else None, "source_id": b.source_id,
        "image_a": service.pngs.as_base64(b.image_a), "image_b": service.pngs.as_base64(b.image_b),
    }
    if k is not None:
        body["images"] = [service.pngs.as_base64(path) for path in b.images] if k > 2 else None
    return _json(body)


def _battle_routes(api: APIRouter, service: ArenaService) -> None:
    """Battles and votes: the arena's loop."""

    @api.get("/health", tags=["studio"])
    def health() -> dict[str, Any]:
        return {"ok": True, "models": {t: len(service.arena_models(t)) for t in service.tasks()}}

    # The two routes of the vote loop are async and answer pre-serialised JSON: their work is
    # a cached lookup and one short SQLite write, cheaper on the event loop than a thread hop.
    @api.get("/battle", response_model=BattleOut, tags=["arena"],
             responses={429: {"description": "rate limited"}, 503: {"description": "gallery not ready"}})
    async def battle(request: Request, task: Literal["t2i", "edit"] = Query("t2i"),
                     k: int = Query(2, ge=2, le=8, description="images in the battle: 2 (a pair), or 3 to 8")) -> Response:
        """A new anonymous battle: ``k`` images of the same prompt (and seed) by ``k`` models."""
        voter = voter_of(request)
        service.throttle(voter, request.client.host if request.client else None)
        return _battle_json(service, service.new_battle(task, voter, k, address=client_of(request)), k)

    @api.post("/battle/live", response_model=BattleOut, tags=["arena"],
              responses={404: {"description": "no such source image in the gallery"},
                         422: {"description": "empty, too long, words the models do not know, not an edit "
                                              "instruction, or no source_id for an edit"},
                         429: {"description": "rate limited"}, 503: {"description": "live prompts off or unavailable"}})
    def live_battle(request: Request, body: LiveIn) -> Response:
        """A battle on your own prompt (task t2i) or on your edit instruction over a gallery source image
        (task edit, source_id), sampled now by two arena models (Shapes models only)."""
        voter = voter_of(request)
        service.throttle(voter, request.client.host if request.client else None)
        return _battle_json(service, service.live_battle(body.task, body.prompt, voter, source_id=body.source_id,
                                                         address=client_of(request)))

    @api.get("/sources", response_model=list[SourceOut], tags=["arena"])
    def sources() -> Response:
        """The gallery's editing source images: a live edit (POST /battle/live, task edit) names one by its id."""
        return _json([{"source_id": src["source_id"], "description": src["description"],
                       "source_png": service.pngs.as_base64(src["path"])} for src in service.edit_sources()])

    @api.post("/vote", response_model=VoteOut, tags=["arena"],
              responses={403: {"description": "battle served to another client"},
                         404: {"description": "no such battle"}, 409: {"description": "already voted"},
                         429: {"description": "rate limited"}})
    async def vote(request: Request, body: VoteIn) -> Response:
        """Vote on a battle this client fetched; the answer reveals both models."""
        voter = voter_of(request)
        service.throttle(voter, request.client.host if request.client else None)
        r = service.vote(body.battle_id, body.winner, voter)
        return _json({"ok": True, "battle_id": r.battle_id, "task": r.task, "winner": r.winner,
                      "model_a": r.model_a, "model_b": r.model_b})

    @api.post("/vote/kway", response_model=KwayVoteOut, tags=["arena"],
              responses={403: {"description": "battle served to another client"},
                         404: {"description": "no such battle"},
                         409: {"description": "already voted, or revealed without a vote"},
                         422: {"description": "a position outside the battle, best = worst, or a two-image battle"},
                         429: {"description": "rate limited"}})
    async def vote_kway(request: Request, body: KwayVoteIn) -> Response:
        """Vote on a K-image battle this client fetched: the best image and optionally the worst (positions);
        neither is "all bad". The answer reveals every model."""
        voter = voter_of(request)
        service.throttle(voter, request.client.host if request.client else None)
        r = service.vote_kway(body.battle_id, body.best, body.worst, voter)
        return _json({"ok": True, "battle_id": r.battle_id, "task": r.task, "models": r.models, "best": r.best,
                      "worst": r.worst})

    @api.post("/battle/reveal", tags=["arena"], responses={403: {"description": "battle served to another client"},
                                                            404: {"description": "no such battle"}})
    def reveal(request: Request, body: RevealIn) -> dict[str, Any]:
        """Skip a battle: its models are shown, and no vote is taken for it afterwards (409)."""
        voter = voter_of(request)
        service.throttle(voter, request.client.host if request.client else None)
        return service.reveal(body.battle_id, voter)


def _board_routes(api: APIRouter, service: ArenaService) -> None:
    """Leaderboards, categories and the vote export."""

    @api.get("/leaderboard", response_model=LeaderboardOut, tags=["arena"])
    def board(task: Literal["t2i", "edit"] = Query("t2i"),
              votes: VoteFilter | None = Query(
                  None, description=f"{VOTES_HELP}. Default: human votes once there are any, else the automatic ones"),
              include_flagged: bool = Query(False, description="count flagged votes too (fast, burst, named, "
                                                               "excluded voters'), which the default board leaves out"),
              category: str | None = Query(None, max_length=64, description="a prompt family or editing verb "
                                                                             "(GET /categories lists them)"),
              control: bool = Query(False, description="add ratings controlled for the images' covariates "
                                                       "(aesthetics, object count) and their coefficients")
              ) -> LeaderboardOut:
        """Bradley–Terry Elo (95% bootstrap interval), online Elo, TrueSkill; rows as `qwenrl elo --format json`.
        Models with fewer than ``min_votes`` votes in the view are listed apart (``unranked``)."""
        why = ""
        if votes is None:
            votes, why = service.default_view(task)
        lb, ranked, apart = service.ranked(task, votes, include_flagged=include_flagged, category=category)
        controlled = None
        if control:
            style = boards.controlled_board(service, task, votes, include_flagged=include_flagged, category=category)
            controlled = ControlledOut(rows=[ControlledRow(**r) for r in style.rows],
                                       coefficients=[Coefficient(**c) for c in style.coefficients], votes=style.votes,
                                       left_out=style.left_out, rounds=style.rounds, warnings=style.warnings)
        return LeaderboardOut(task=task, votes=votes, why=why, include_flagged=include_flagged,
                              flagged=service.flagged(task, votes), category=category, n_votes=lb.votes,
                              ci=lb.ci_method, rounds=lb.rounds, warnings=lb.warnings, min_votes=service.min_votes,
                              rows=[LeaderboardRow(**row) for row in ranked],
                              unranked=[LeaderboardRow(**row) for row in apart], controlled=controlled)

    @api.get("/categories", tags=["arena"])
    def list_categories(task: Literal["t2i", "edit"] = Query("t2i"),
                        votes: VoteFilter = Query("human", description=VOTES_HELP)) -> dict[str, Any]:
        """Votes per category (the prompt's family; for editing, its verb), and the votes a category needs
        before its board ranks models."""
        return {"task": task, "votes": votes, "min_votes": service.category_min_votes,
                "categories": boards.categories(service, task, votes)}

    @api.get("/leaderboard/personal", response_model=PersonalOut, tags=["arena"])
    def personal(request: Request, task: Literal["t2i", "edit"] = Query("t2i")) -> PersonalOut:
        """This client's own leaderboard, from its own votes, once it has cast enough of them."""
        mine = boards.personal_board(service, task, voter_of(request))
        return PersonalOut(task=task, votes_cast=mine.votes_cast, needed=mine.needed, message=mine.message,
                           rows=None if mine.board is None else [LeaderboardRow(**r) for r in mine.board.rows])

    @api.get("/votes/export", tags=["arena"], response_class=StreamingResponse,
             responses={200: {"content": {"application/x-ndjson": {}, "text/csv": {}}}})
    def export(format: Literal["jsonl", "csv"] = Query("jsonl"), task: Literal["t2i", "edit"] | None = None,
               votes: VoteFilter | None = Query(
                   None, description=f"{VOTES_HELP}. Default: with a task, the votes its leaderboard shows (as the "
                                     "UI's download); without one, all")):
        """Every vote, with its flags, in the format `qwenrl elo` reads (JSON lines or CSV): `qwenrl elo`
        leaves the flagged ones out as the default board does, and `--include-flagged` counts them. The
        file is named after the votes it holds, as the UI's download is (``votes-t2i-human.jsonl``)."""
        if votes is None:
            votes = service.default_view(task)[0] if task else "all"
        data = export_votes(service, format, task, votes)
        media = "application/x-ndjson" if format == "jsonl" else "text/csv"
        name = export_name(task, votes, format)
        return Response(data, media_type=media, headers={"Content-Disposition": f'attachment; filename="{name}"'})


def _admin_routes(api: APIRouter, service: ArenaService, require_admin: Callable[[Request], None], auth: AdminAuth) -> None:
    """The admin's login and the voters it may leave out of the boards."""

    @api.post("/admin/login", tags=["admin"], responses={403: {"description": "wrong password"},
                                                         429: {"description": "locked out after wrong passwords"}})
    def login(request: Request, body: LoginIn, response: Response) -> dict[str, bool]:
        """Log in as the admin: sets an HttpOnly cookie for the job routes. Five wrong passwords
        from one client lock it out for five minutes (429 with Retry-After)."""
        if not auth.verify(body.password, client_of(request)):
            raise HTTPException(403, "wrong admin password" if auth.enabled else "admin is disabled")
        response.set_cookie(ADMIN_COOKIE, auth.issue_token(), max_age=int(auth.ttl_s), httponly=True, samesite="strict")
        return {"ok": True}

    @api.get("/admin/voters", tags=["admin"], dependencies=[Depends(require_admin)])
    def voters(task: Literal["t2i", "edit"] | None = None) -> list[dict[str, Any]]:
        """Voters with their votes, flagged votes, first and last vote, and whether excluded."""
        return service.ws.store.voters(task)

    @api.post("/admin/voters/exclude", tags=["admin"], dependencies=[Depends(require_admin)],
              responses={404: {"description": "no votes from that voter"}})
    def exclude(body: VoterIn) -> dict[str, Any]:
        """Leave a voter's votes out of the default boards; nothing is deleted (see /admin/voters/include)."""
        return service.exclude_voter(body.voter, body.reason)

    @api.post("/admin/voters/include", tags=["admin"], dependencies=[Depends(require_admin)],
              responses={404: {"description": "the voter is not excluded"}})
    def include(body: VoterIn) -> dict[str, Any]:
        """Count an excluded voter's votes again."""
        if not service.include_voter(body.voter):
            raise HTTPException(404, f"voter {body.voter!r} is not excluded")
        return {"ok": True, "voter": body.voter}


def _job_routes(api: APIRouter, jobs: JobManager | None, require_admin: Callable[[Request], None]) -> None:
    """Training jobs (admin only); 503 when the studio runs none."""

    def need_jobs() -> JobManager:
        if jobs is None:
            raise HTTPException(503, "this studio runs no training jobs")
        return jobs

    @api.get("/jobs", tags=["admin"], dependencies=[Depends(require_admin)])
    def list_jobs() -> list[dict[str, Any]]:
        return [_public_job(j) for j in need_jobs().store.list_jobs()]

    @api.post("/jobs", tags=["admin"], status_code=201, dependencies=[Depends(require_admin)],
              responses={401: {"description": "no credentials"}, 403: {"description": "wrong credentials"}})
    def launch(body: JobIn) -> dict[str, Any]:
        """Queue a GRPO or distillation job (admin only)."""
        manager = need_jobs()
        job_id = manager.submit(body.kind, body.config, {k: v if isinstance(v, str) else _yaml_scalar(v)
                                                         for k, v in body.overrides.items()})
        return _public_job(manager.job(job_id))

    @api.get("/jobs/{job_id}", tags=["admin"], dependencies=[Depends(require_admin)])
    def job(job_id: int, log_lines: int = Query(40, ge=0, le=1000)) -> dict[str, Any]:
        manager = need_jobs()
        out = _public_job(manager.job(job_id))
        out["progress"] = manager.progress(job_id)
        out["log_tail"] = manager.log_tail(job_id, log_lines)
        return out

    @api.post("/jobs/{job_id}/cancel", tags=["admin"], dependencies=[Depends(require_admin)])
    def cancel(job_id: int) -> dict[str, Any]:
        return _public_job(need_jobs().cancel(job_id))


def _json(content: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(content), status_code=status, media_type="application/json")


def _yaml_scalar(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def _public_job(job: dict[str, Any]) -> dict[str, Any]:
    spec = job.get("config") or {}
    return {"id": job["id"], "kind": job["kind"], "config": Path(spec.get("config", "")).name,
            "overrides": spec.get("overrides") or {}, "status": job["status"], "created": job["created"],
            "started": job.get("started"), "finished": job.get("finished"), "error": job.get("error")}


def export_votes(service: ArenaService, fmt: str, task: str | None, votes: str) -> bytes:
    """Votes as JSON lines or CSV bytes (``arena.io`` format)."""
    from arena.io import write_votes

    frame = service.votes(task, votes, include_flagged=True)  # type: ignore[arg-type]
    buf = io.StringIO()
    write_votes(frame, buf, format=fmt)
    return buf.getvalue().encode()
