"""``qwenrl judge serve``: a local vision-language judge behind an OpenAI-compatible endpoint.

    qwenrl judge serve --model data/models/shapes-judge --port 8000
    # then any vlm_served reward points at it: base_url http://127.0.0.1:8000/v1, model shapes-judge

``POST /v1/chat/completions`` takes the chat format vLLM and SGLang take — ``messages`` whose
user content mixes ``{"type": "text"}`` and ``{"type": "image_url", "image_url": {"url":
"data:image/png;base64,..."}}`` parts — and answers with a ``chat.completion`` object.
``GET /v1/models`` lists the one model. Requests that arrive together are answered in one
batch (greedy, KV cache: the same ``generate_token_ids`` as ``vlm_local``): a worker thread
takes what is queued, waits ``batch_wait_s`` for more, up to ``max_batch``.

Only inline ``data:`` image URLs are accepted (the server fetches nothing), greedy decoding
only (``temperature`` above 0 is refused), and images must have the size the model reads
(its manifest's ``image_size``) — each refusal is a 400 with an OpenAI-style error body.
It binds 127.0.0.1 unless told otherwise.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import queue
import threading
import time
import uuid
from concurrent.futures import Future
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import click
import numpy as np

from .base import RewardConfigError
from .vlm import model_input_size


class BadRequest(ValueError):
    """A request the server refuses (answered with HTTP 400)."""


def decode_image(url: str) -> np.ndarray:
    """An RGB uint8 array from a ``data:image/...;base64,`` URL."""
    from PIL import Image, UnidentifiedImageError

    if not isinstance(url, str) or not url.startswith("data:image/") or ";base64," not in url:
        raise BadRequest("image_url must be an inline data:image/...;base64,... URL (this server fetches nothing)")
    try:
        raw = base64.b64decode(url.split(";base64,", 1)[1], validate=True)
        with Image.open(io.BytesIO(raw)) as im:
            return np.asarray(im.convert("RGB"))
    except (binascii.Error, UnidentifiedImageError, OSError) as exc:
        raise BadRequest(f"image_url does not hold a readable image ({type(exc).__name__})") from None


def read_request(body: Any) -> tuple[list[np.ndarray], str, int | None]:
    """(images, text, max_tokens) of a chat-completions request with one user turn."""
    if not isinstance(body, dict) or not isinstance(body.get("messages"), list) or not body["messages"]:
        raise BadRequest("the body must be a JSON object with a non-empty `messages` list")
    if body.get("n", 1) != 1:
        raise BadRequest("n must be 1")
    temperature = body.get("temperature", 0)
    if not isinstance(temperature, (int, float)) or temperature > 0:
        raise BadRequest("this server decodes greedily; send temperature 0 (or leave it out)")
    users = [m for m in body["messages"] if isinstance(m, dict) and m.get("role") == "user"]
    if not users:
        raise BadRequest("no user message")
    content = users[-1].get("content")
    parts = [{"type": "text", "text": content}] if isinstance(content, str) else content
    if not isinstance(parts, list):
        raise BadRequest("message content must be a string or a list of parts")
    images, texts = [], []
    for part in parts:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and isinstance(part.get("text"), str):
            texts.append(part["text"])
        elif kind == "image_url":
            url = part.get("image_url")
            images.append(decode_image(url.get("url") if isinstance(url, dict) else url))
        else:
            raise BadRequest(f"unsupported content part {str(part)[:80]!r}; expected text or image_url parts")
    max_tokens = body.get("max_tokens", body.get("max_completion_tokens"))
    if max_tokens is not None and (not isinstance(max_tokens, int) or max_tokens < 1):
        raise BadRequest("max_tokens must be a positive integer")
    return images, "\n".join(texts), max_tokens


@dataclass
class _Job:
    images: list[np.ndarray]
    text: str
    max_tokens: int
    future: Future


class JudgeServer:
    """A model folder (``vlm_local``'s kind) served on ``host:port`` with micro-batching."""

    def __init__(self, model_path: str | Path, *, host: str = "127.0.0.1", port: int = 8000, name: str | None = None,
                 max_batch: int = 64, batch_wait_s: float = 0.01, max_tokens: int = 512, device: str = "cpu",
                 threads: int | None = None) -> None:
        path = Path(model_path)
        if not (path / "config.json").is_file():
            raise RewardConfigError(f"{path} is not a local model folder (no config.json)")
        if max_batch < 1 or batch_wait_s < 0 or max_tokens < 1:
            raise ValueError("max_batch >= 1, batch_wait_s >= 0 and max_tokens >= 1 are required")
        self.path = path
        self.name = name or path.name
        self.max_batch, self.batch_wait_s, self.max_tokens = max_batch, batch_wait_s, max_tokens
        self.input_size = model_input_size(path)
        self._load(device, threads)
        self._jobs: queue.Queue[_Job | None] = queue.Queue()
        self._worker = threading.Thread(target=self._work, name="judge-batcher", daemon=True)
        self._httpd = ThreadingHTTPServer((host, port), self._handler())
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="judge-server", daemon=True)

    def _load(self, device: str, threads: int | None) -> None:
        import torch
        from transformers import AutoModelForImageTextToText, AutoProcessor

        from .vlm import QwenStyleProcessor

        if threads:
            torch.set_num_threads(threads)
        self.model = AutoModelForImageTextToText.from_pretrained(self.path, local_files_only=True).to(device).eval()
        try:
            self.processor = AutoProcessor.from_pretrained(self.path, local_files_only=True)
        except ImportError:  # Qwen-VL processors need torchvision; see QwenStyleProcessor
            self.processor = QwenStyleProcessor.from_pretrained(self.path)
        self.processor.tokenizer.padding_side = "left"

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    # -- batching --------------------------------------------------------------------------
    def submit(self, images: list[np.ndarray], text: str, max_tokens: int | None) -> Future:
        """Queue one request; the future resolves to (answer, finish_reason, completion tokens)."""
        if self.input_size:
            for im in images:
                if im.shape[:2] != (self.input_size, self.input_size):
                    raise BadRequest(f"{self.name} reads {self.input_size}×{self.input_size} images; got {im.shape[1]}×{im.shape[0]}")
        job = _Job(images, text, min(max_tokens or self.max_tokens, self.max_tokens), Future())
        self._jobs.put(job)
        return job.future

    def _work(self) -> None:
        while True:
            first = self._jobs.get()
            if first is None:
                return
            batch = [first]
            deadline = time.monotonic() + self.batch_wait_s
            while len(batch) < self.max_batch:
                try:
                    nxt = self._jobs.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if nxt is None:
                    self._jobs.put(None)
                    break
                batch.append(nxt)
            try:
                results = self._answer(batch)
            except Exception as exc:  # one bad batch answers its requests with the error, the server goes on
                for job in batch:
                    job.future.set_exception(exc)
                continue
            for job, result in zip(batch, results):
                job.future.set_result(result)

    def _answer(self, batch: list[_Job]) -> list[tuple[str, str, int]]:
        from .vlm import generate_token_ids

        limit = max(j.max_tokens for j in batch)
        ids = generate_token_ids(self.model, self.processor, [(j.images, j.text) for j in batch], limit)
        eos = self.processor.tokenizer.eos_token_id
        pad = self.processor.tokenizer.pad_token_id
        out = []
        for job, row in zip(batch, ids.tolist()):
            row = row[: job.max_tokens]
            ended = eos in row
            if ended:
                row = row[: row.index(eos)]
            row = [t for t in row if t != pad]
            answer = self.processor.batch_decode([row], skip_special_tokens=True)[0]
            out.append((answer, "stop" if ended else "length", len(row)))
        return out

    # -- HTTP --------------------------------------------------------------------------------
    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                if self.path.rstrip("/") == "/v1/models":
                    return self._send(200, {"object": "list", "data": [{"id": server.name, "object": "model", "owned_by": "qwenrl"}]})
                self._send(404, _error(f"no route GET {self.path}", "not_found"))

            def do_POST(self) -> None:
                if self.path.rstrip("/") != "/v1/chat/completions":
                    return self._send(404, _error(f"no route POST {self.path}", "not_found"))
                try:
                    body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                    model = body.get("model") if isinstance(body, dict) else None
                    if model not in (None, server.name):
                        return self._send(404, _error(f"model {model!r} is not served here; this server serves {server.name!r}", "model_not_found"))
                    images, text, max_tokens = read_request(body)
                    answer, finish, completion = server.submit(images, text, max_tokens).result()
                except json.JSONDecodeError:
                    return self._send(400, _error("the body is not valid JSON", "invalid_request_error"))
                except BadRequest as exc:
                    return self._send(400, _error(str(exc), "invalid_request_error"))
                except Exception as exc:  # a model failure is a 500 with its reason, not a dropped connection
                    return self._send(500, _error(f"{type(exc).__name__}: {exc}", "server_error"))
                self._send(200, {
                    "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": server.name,
                    "choices": [{"index": 0, "finish_reason": finish, "message": {"role": "assistant", "content": answer}}],
                    "usage": {"completion_tokens": completion},
                })

            def _send(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        return Handler

    def start(self) -> "JudgeServer":
        self._worker.start()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._jobs.put(None)
        self._thread.join(timeout=5)
        self._worker.join(timeout=30)

    def __enter__(self) -> "JudgeServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def _error(message: str, kind: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "code": None}}


@click.group()
def judge() -> None:
    """Run a local vision-language judge as a service.

    \b
    Examples:
      qwenrl judge serve --model data/models/shapes-judge --port 8000
    """


@judge.command()
@click.option("--model", "model_path", required=True, type=click.Path(file_okay=False),
              help="a local model folder (e.g. data/models/shapes-judge)")
@click.option("--host", default="127.0.0.1", show_default=True, help="address to bind (loopback unless you mean otherwise)")
@click.option("--port", default=8000, show_default=True, help="port to bind (0: any free port)")
@click.option("--name", default=None, help="model name clients send (default: the folder's name)")
@click.option("--max-batch", default=64, show_default=True, help="most requests answered in one batch")
@click.option("--batch-wait", "batch_wait_s", default=0.01, show_default=True, help="seconds to wait for a batch to fill")
@click.option("--max-tokens", default=512, show_default=True, help="longest answer, whatever a request asks")
@click.option("--threads", default=None, type=int, help="torch CPU threads (default torch's)")
def serve(model_path, host, port, name, max_batch, batch_wait_s, max_tokens, threads) -> None:
    """Serve a judge behind POST /v1/chat/completions (OpenAI format, images as data URLs).

    \b
    Example:
      qwenrl judge serve --model data/models/shapes-judge --port 8000 &
      qwenrl reward --config training/configs/rewards/vlm_t2i_served.yaml --images out/ --prompts p.jsonl
    """
    try:
        server = JudgeServer(model_path, host=host, port=port, name=name, max_batch=max_batch,
                             batch_wait_s=batch_wait_s, max_tokens=max_tokens, threads=threads)
    except (RewardConfigError, ValueError, OSError) as exc:
        raise click.ClickException(str(exc)) from None
    server.start()
    click.echo(f"serving {server.name} at {server.url} (Ctrl-C stops)", err=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
