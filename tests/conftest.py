"""Session-wide test settings."""

from __future__ import annotations

import os

# Under pytest-xdist every worker is a process of its own: with torch's default of one thread per
# core, two workers on two cores run four busy threads, and torch's threads spin waiting for each
# other (measured here: a 14 s training step took 60 s beside a two-worker pytest). One thread per
# worker, inherited by the subprocesses the tests start.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["OMP_NUM_THREADS"] = "1"
    os.environ["MKL_NUM_THREADS"] = "1"
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:  # arena-only environments
        pass
