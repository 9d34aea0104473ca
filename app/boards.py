"""The leaderboards beside the global one: a voter's own, and ratings controlled for looks.

Thin functions over ``ArenaService`` (its vote tables and settings); nothing here imports
gradio or fastapi, so the UI and the REST API show the same numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

from arena.categories import category_counts, in_category
from arena.hygiene import counted_votes
from arena.io import HUMAN_JUDGE
from arena.ratings import Leaderboard, leaderboard
from arena.style import StyleBoard, style_control

from .service import ArenaService


@dataclass
class PersonalBoard:
    """A voter's own board: shown once they have cast ``needed`` votes on the task."""

    votes_cast: int
    needed: int
    board: Leaderboard | None  #: None until ``votes_cast >= needed``

    @property
    def message(self) -> str:
        if self.board is None:
            left = self.needed - self.votes_cast
            return (f"Your own leaderboard appears after {self.needed} votes on this task: you have cast "
                    f"{self.votes_cast}, {left} to go.")
        return (f"Your own leaderboard, from your {self.votes_cast} votes (the rows rate only your judgement; "
                "the global board is beside it).")


def personal_board(service: ArenaService, task: str, voter: str) -> PersonalBoard:
    """The voter's own leaderboard of ``task`` from their own (human) votes, once they have cast
    ``service.personal_votes`` of them; flagged votes are left out of it as of every board."""
    service.check_task(task)
    frame = service.ws.store.votes_frame(task=task, judge=HUMAN_JUDGE, voter=voter)
    cast, needed = len(frame), service.personal_votes
    if cast < needed:
        return PersonalBoard(cast, needed, None)
    counted = counted_votes(frame)
    board = leaderboard(counted, rounds=service.rounds, seed=0, workers=1) if len(counted) else Leaderboard([], [])
    return PersonalBoard(cast, needed, board)


def categories(service: ArenaService, task: str, votes: str = "human", include_flagged: bool = False) -> dict[str, int]:
    """Votes per category (prompt family or editing verb) of a task's board, most voted first."""
    return category_counts(service.votes(task, votes, include_flagged=include_flagged))  # type: ignore[arg-type]


def controlled_board(service: ArenaService, task: str, votes: str = "human", *, include_flagged: bool = False,
                     category: str | None = None, rounds: int = 200) -> StyleBoard:
    """Ratings with and without control for the images' covariates (aesthetics, objects…), and
    the covariates' coefficients (``arena.style``), from the same votes as the board."""
    frame = service.votes(task, votes, include_flagged=include_flagged)  # type: ignore[arg-type]
    if category:
        frame = in_category(frame, category)
    return style_control(frame, rounds=rounds, seed=0)
