"""The GRPO trainer's policy-optimisation objectives, named once.

``flow_grpo`` (Flow-GRPO: SDE rollouts, a clipped likelihood ratio) and ``nft`` (the forward
process of DiffusionNFT: ODE rollouts, a flow-matching loss on the clean samples). The trainer's
config (``training/configs.py``) checks a config's ``objective`` against these; the studio's
Training tab (``app.jobs``) lists them with their titles without importing ``training``.
"""

from __future__ import annotations

OBJECTIVES: tuple[str, ...] = ("flow_grpo", "nft")
#: the objective of a GRPO config that names none
DEFAULT_OBJECTIVE = "flow_grpo"
#: how the studio names each objective
OBJECTIVE_TITLES: dict[str, str] = {"flow_grpo": "Flow-GRPO", "nft": "Forward process (NFT)"}
