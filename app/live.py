"""Battles on a visitor's own prompt or edit instruction, generated live by two arena models.

Only models that are fast on a CPU take part (Shapes checkpoints: a pair of images costs a
fraction of a second); for others the studio answers that live prompts are off. The prompt is
checked before anything runs: non-empty, at most ``MAX_PROMPT_CHARS`` characters, and, for
Shapes models, a sentence of the Shapes grammar (its models know no other; case and punctuation
do not matter): a prompt must read as one (``qwenrl.world.sentences.read_prompt``), and an edit
instruction must read as one that applies to its source (the object it names is there). An edit
applies to a source image of the arena gallery, named by its pool id and sent to the worker as
its scene (never as a file a visitor chose). What was read (the prompt's spec, the edit's
target scene) is stored with the prompt, so the checker can judge live images as it judges the
gallery's.

Generation runs in one worker subprocess (``python -m app.live``), so the studio's server never
imports torch: the server writes one JSON request per line to the worker's stdin and reads one
JSON answer per line from its stdout. The worker keeps the last few models loaded, samples
exactly as the gallery does (the checkpoint's sampling defaults, initial noise from the seed)
and writes the PNG where it is told, inside the workspace. A worker that dies or hangs is
replaced on the next request; the request that saw it fails with a clear error.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import select
import subprocess
import sys
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

from .pool import PoolItem, composite_reward, model_slug, reward_path

MAX_PROMPT_CHARS = 200
LIVE_DIR = "live"  #: under the workspace root
FAST_POLICIES = ("shapes",)  #: manifest "policy" kinds fast enough to sample while a visitor waits


class LiveError(ValueError):
    """A live request that cannot be served; the message says why (shown to the visitor)."""


def _collapsed(text: Any) -> str:
    """The text with control characters dropped and whitespace collapsed; LiveError when it is
    not text, empty or longer than ``MAX_PROMPT_CHARS`` (the one length limit, with one message)."""
    if not isinstance(text, str):
        raise LiveError("type a prompt first")
    cleaned = " ".join("".join(ch if ch.isprintable() else " " for ch in text).split())
    if not cleaned:
        raise LiveError("type a prompt first")
    if len(cleaned) > MAX_PROMPT_CHARS:
        raise LiveError(f"the prompt has {len(cleaned):,} characters; at most {MAX_PROMPT_CHARS}")
    return cleaned


def _known_words(cleaned: str) -> None:
    from qwenrl.world.grammar import unknown_words

    unknown = unknown_words(cleaned)
    if unknown:
        shown = ", ".join(w if len(w) <= 20 else w[:20] + "…" for w in unknown[:8])
        raise LiveError(
            f"the Shapes models only know the words of their grammar; not known: {shown}. "
            "Try e.g. “a red circle left of a blue square” or “three green triangles on a gray background”."
        )


def clean_prompt(text: Any, shapes: bool = True) -> str:
    """The prompt, whitespace collapsed; LiveError when it is empty or too long, or (``shapes``)
    not a prompt of the Shapes grammar (an unknown word is named; case and punctuation do not
    matter, and the prompt comes back as the grammar writes it)."""
    return read_live_prompt(text).text if shapes else _collapsed(text)


def read_live_prompt(text: Any):
    """The Shapes ``T2IPrompt`` a visitor's prompt reads as (:func:`qwenrl.world.sentences.read_prompt`);
    LiveError saying why it is not one."""
    from qwenrl.world.grammar import GrammarError
    from qwenrl.world.sentences import PROMPT_EXAMPLES, read_prompt

    cleaned = _collapsed(text)
    _known_words(cleaned)
    try:
        return read_prompt(cleaned)
    except GrammarError as exc:
        raise LiveError(f"{exc}. Try {PROMPT_EXAMPLES}.") from None


def clean_instruction(text: Any, shapes: bool = True) -> str:
    """An edit instruction, checked like a prompt (:func:`clean_prompt`) as far as it can be
    without its source: for Shapes models it must start with one of the grammar's edit verbs
    (:func:`read_live_instruction` reads it against the source)."""
    cleaned = _collapsed(text)
    if not shapes:
        return cleaned
    from qwenrl.world.grammar import EDIT_VERBS
    from qwenrl.world.sentences import normalize

    _known_words(cleaned)
    cleaned = normalize(cleaned)
    if not cleaned or cleaned.split()[0] not in EDIT_VERBS:
        raise LiveError(
            f"an edit instruction starts with one of: {', '.join(EDIT_VERBS)}. "
            "Try e.g. “make the background black” or “add a small red circle”."
        )
    return cleaned


def read_live_instruction(text: Any, source: dict[str, Any], seed: int = 0):
    """The Shapes ``EditTask`` a visitor's instruction asks of ``source`` (a scene as
    ``Scene.to_dict`` gives it); LiveError saying why it is not one, or does not apply."""
    from qwenrl.world.grammar import GrammarError
    from qwenrl.world.scene import Scene
    from qwenrl.world.sentences import read_instruction

    cleaned = clean_instruction(text)
    try:
        return read_instruction(cleaned, Scene.from_dict(source), seed=seed)
    except GrammarError as exc:
        raise LiveError(f"{exc}.") from None


def is_fast(source: str | Path) -> bool:
    """Whether the checkpoint at ``source`` is a kind the live worker samples quickly."""
    from qwenrl.checkpoints import CheckpointError, read_manifest

    try:
        return read_manifest(Path(source)).get("policy") in FAST_POLICIES
    except (CheckpointError, OSError):
        return False


def image_path_for(model: str, text: str, seed: int, source_id: str | None = None) -> str:
    """Where a live image goes, relative to the workspace root (derived, never user-supplied);
    an edit's path depends on its source too."""
    key = f"{text}\0{seed}" + (f"\0{source_id}" if source_id is not None else "")
    return f"{LIVE_DIR}/{model_slug(model)}/{hashlib.sha1(key.encode()).hexdigest()[:16]}.png"


# -- server side -------------------------------------------------------------------------------


class LiveGenerator:
    """The studio's handle on the worker: one request at a time, each with a timeout."""

    def __init__(self, root: Path, *, python: str = sys.executable, timeout_s: float = 60.0) -> None:
        self.root = Path(root)
        self.python = python
        self.timeout_s = timeout_s
        self._lock = threading.Lock()
        self._proc: subprocess.Popen | None = None

    def _ensure(self) -> subprocess.Popen:
        if self._proc is None or self._proc.poll() is not None:
            env = {**os.environ, "PYTHONUNBUFFERED": "1"}
            self._proc = subprocess.Popen(
                [self.python, "-m", "app.live", "--workspace", str(self.root)], stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env,
                cwd=str(Path(__file__).resolve().parents[1]),
            )
        return self._proc

    def generate(self, source: str, text: str, seed: int, out: str, *,
                 edit_source: dict[str, Any] | None = None, spec: dict[str, Any] | None = None) -> dict[str, Any]:
        """Sample one image of ``text`` from the checkpoint ``source`` into ``root/out`` (with
        ``edit_source``, a Shapes scene as ``Scene.to_dict`` gives it, an edit of that scene);
        returns {"content_hash"}, and with ``spec`` (what the text asks for, ``T2IPrompt`` or
        ``EditTask.to_dict``) the task's composite judgement of the image too ("judgement").
        LiveError when the worker fails or takes too long."""
        request = {"source": source, "text": text, "seed": int(seed), "out": out}
        if edit_source is not None:
            request["edit_source"] = edit_source
        if spec is not None:
            request["spec"] = spec
        request = json.dumps(request)
        with self._lock:
            proc = self._ensure()
            try:
                proc.stdin.write(request + "\n")
                proc.stdin.flush()
                ready, _, _ = select.select([proc.stdout], [], [], self.timeout_s)
                line = proc.stdout.readline() if ready else ""
            except (BrokenPipeError, OSError, ValueError):
                line = ""
            try:
                answer = json.loads(line) if line else None
            except json.JSONDecodeError:
                answer = None
            if not isinstance(answer, dict):  # silent, dead, hung or garbled: start afresh next time
                self.close()
                raise LiveError("the live generator did not answer; try again")
        if "error" in answer:
            raise LiveError(answer["error"])
        return answer

    def close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


# -- worker side -------------------------------------------------------------------------------


def _sample(policy, text: str, seed: int, edit_source: dict[str, Any] | None = None):
    from qwenrl.evaluation import policy_sampling_defaults

    from .gallery import generate

    defaults = policy_sampling_defaults(policy)
    if edit_source is None:
        item = PoolItem(id="live", task="t2i", text=text, family="user", record={})
    else:
        item = PoolItem(id="live", task="edit", text=text, family="user", record={"source": edit_source})
    return generate(policy, [item], [seed], num_steps=defaults["num_steps"], guidance_scale=defaults["guidance_scale"])[0]


def _judge(rewards: dict[str, Any], spec: dict[str, Any], image) -> dict[str, Any]:
    """The task's composite judgement of a live image (as the gallery's images are judged)."""
    from qwenrl.rewards import Sample, load_reward
    from qwenrl.world.grammar import EditTask, T2IPrompt

    task = spec["task"]
    if task not in rewards:
        rewards[task] = load_reward(reward_path(composite_reward(task)), cache=False)
    item = T2IPrompt.from_dict(spec) if task == "t2i" else EditTask.from_dict(spec)
    return rewards[task]([Sample.from_spec(image, item)])[0].to_dict()


def worker(root: Path, requests, answers, max_models: int = 4) -> None:
    """Answer each JSON request line of ``requests`` with one JSON line on ``answers``."""
    from PIL import Image

    from qwenrl.models import load_policy

    root = root.resolve()
    policies: OrderedDict[str, Any] = OrderedDict()
    rewards: dict[str, Any] = {}  # task → its composite reward, loaded on first use
    for line in requests:
        try:
            req = json.loads(line)
            out = (root / req["out"]).resolve()
            if root not in out.parents or not str(req["out"]).startswith(LIVE_DIR + "/"):
                raise LiveError(f"output path {req['out']!r} is outside the workspace's {LIVE_DIR}/ folder")
            source = str(req["source"])
            if not is_fast(source):
                raise LiveError(f"{source} is not a model the live worker samples (only {FAST_POLICIES})")
            if source not in policies:
                policies[source] = load_policy(source)
                while len(policies) > max_models:
                    policies.popitem(last=False)
            policies.move_to_end(source)
            edit_source = req.get("edit_source")
            if edit_source is not None:
                from qwenrl.world.scene import Scene

                edit_source = Scene.from_dict(edit_source).to_dict()  # a scene, or an error here
            image = _sample(policies[source], str(req["text"]), int(req["seed"]), edit_source)
            out.parent.mkdir(parents=True, exist_ok=True)
            tmp = out.with_suffix(".tmp.png")
            Image.fromarray(image).save(tmp)
            os.replace(tmp, out)
            answer = {"content_hash": hashlib.sha256(image.tobytes()).hexdigest()[:32]}
            if req.get("spec"):
                answer["judgement"] = _judge(rewards, req["spec"], image)
        except Exception as exc:  # one bad request must not kill the worker
            answer = {"error": f"{type(exc).__name__}: {exc}" if not isinstance(exc, LiveError) else str(exc)}
        answers.write(json.dumps(answer) + "\n")
        answers.flush()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="The studio's live-prompt worker (JSON lines on stdin/stdout).")
    ap.add_argument("--workspace", required=True, type=Path)
    args = ap.parse_args(argv)
    # the protocol keeps the real stdout; anything else printed there (by us, a library or C
    # code writing to file descriptor 1) goes to stderr instead
    answers = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    import torch

    torch.set_num_threads(1)
    worker(args.workspace, sys.stdin, answers)


if __name__ == "__main__":
    main()
