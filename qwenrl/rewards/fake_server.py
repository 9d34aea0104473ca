"""A loopback server speaking the OpenAI chat-completions protocol, for tests and benchmarks.

    with FakeChatServer(answer="Score: 7/10") as server:
        judge = VLMServedJudge(config={"base_url": server.url, "model": "fake"})

``respond(payload, n)`` decides each answer: return a string (the message content), or a
``(status, content)`` pair; it may sleep to simulate latency or a hang. ``n`` counts
requests from 0. Binds 127.0.0.1 on a free port; never reaches beyond the machine.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

Responder = Callable[[dict[str, Any], int], "str | tuple[int, str]"]


class FakeChatServer:
    def __init__(self, answer: str = "Score: 7/10", respond: Responder | None = None) -> None:
        self.respond: Responder = respond or (lambda payload, n: answer)
        self.requests: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out at once, no 40 ms delayed-ACK stall

            def log_message(self, *args: Any) -> None:  # keep test output quiet
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                try:
                    payload = json.loads(self.rfile.read(length))
                except json.JSONDecodeError:
                    return self._send(400, {"error": {"message": "invalid JSON"}})
                if self.path.rstrip("/") != "/v1/chat/completions":
                    return self._send(404, {"error": {"message": f"no route {self.path}"}})
                with server._lock:
                    n = len(server.requests)
                    server.requests.append(payload)
                result = server.respond(payload, n)
                status, content = result if isinstance(result, tuple) else (200, result)
                if status != 200:
                    return self._send(status, {"error": {"message": content}})
                self._send(200, {
                    "id": f"chatcmpl-{n}",
                    "object": "chat.completion",
                    "model": payload.get("model", ""),
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": content}}],
                })

            def _send(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout)
                    pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-chat-server", daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def start(self) -> "FakeChatServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> "FakeChatServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
