"""The two tasks every part of the project speaks of, named once.

``t2i``: an image from a text prompt; ``edit``: an edited image from a source image and an
instruction. Rewards, models, prompt sets, trainers and the studio all import this tuple.
"""

from __future__ import annotations

TASKS: tuple[str, ...] = ("t2i", "edit")
