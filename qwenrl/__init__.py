"""QwenRL Studio core library: the Shapes world, policies, sampling, rewards, checkpoints and the CLI."""

__version__ = "0.1.0"
