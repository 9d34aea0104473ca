"""The ``qwenrl`` command line: a thin layer over the library.

Sub-commands are imported only when they run, so ``qwenrl elo`` starts without importing
torch or gradio. Each entry maps a command name to ``"module:attribute"`` of a click command.
"""

from __future__ import annotations

import importlib

import click

COMMANDS: dict[str, str] = {
    "elo": "arena.cli:elo",
    "votes": "arena.cli:votes",
    "generate": "qwenrl.commands:generate",
    "bench": "qwenrl.commands:bench",
    "reward": "qwenrl.rewards.cli:reward",
    "judge": "qwenrl.rewards.serve:judge",
    "train": "training.cli:train",
    "experiment": "training.cli:experiment",
    "studio": "app.cli:studio",
    "arena": "app.cli:arena",
}


class LazyGroup(click.Group):
    """A click group whose sub-commands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        target = COMMANDS.get(name)
        if target is None:
            return None
        module_name, attr = target.split(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            # A command whose module is not part of this installation yet.
            if exc.name and module_name.startswith(exc.name):
                return None
            raise
        return getattr(module, attr)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="qwenrl-studio")
def main() -> None:
    """QwenRL Studio: RL post-training of image generators, judged by pairwise preference.

    \b
    Examples:
      qwenrl elo votes.jsonl --format markdown
      qwenrl generate --model data/models/shapes-base --prompt "a red circle" --out out/
      qwenrl studio --workspace ./workspace
    """


if __name__ == "__main__":
    main()
