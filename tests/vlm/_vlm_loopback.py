"""Loopback HTTP servers (127.0.0.1 only) that play a Gemini or OpenAI-compatible endpoint."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Reply:
    """One scripted HTTP reply: status, headers, body, a delay before answering, and `drip`:
    seconds between body bytes (a server that stays alive by sending one byte at a time)."""

    status: int = 200
    body: bytes | str | dict = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    drip: float = 0.0


@dataclass
class Seen:
    """One request the server received."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self):
        return json.loads(self.body)


class LoopbackServer:
    """Answers POSTs with scripted replies (FIFO), then with `default(request) -> Reply`."""

    def __init__(self, default: Callable[[Seen], Reply] | None = None):
        self.script: list[Reply] = []
        self.seen: list[Seen] = []
        self.default = default or (lambda _req: Reply(404, {"error": {"message": "no route"}}))
        self._stop = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):  # noqa: N802 (http.server's naming)
                n = int(self.headers.get("Content-Length") or 0)
                req = Seen("POST", self.path, dict(self.headers), self.rfile.read(n))
                server.seen.append(req)
                reply = server.script.pop(0) if server.script else server.default(req)
                if reply.delay:
                    server._stop.wait(reply.delay)
                body = reply.body
                if isinstance(body, dict):
                    body = json.dumps(body)
                if isinstance(body, str):
                    body = body.encode()
                try:
                    self.send_response(reply.status)
                    headers = {"Content-Type": "application/json", **reply.headers}
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    if not reply.drip:
                        self.wfile.write(body)
                    for i in range(len(body) if reply.drip else 0):
                        self.wfile.write(body[i : i + 1])
                        self.wfile.flush()
                        if server._stop.wait(reply.drip):
                            break
                except (BrokenPipeError, ConnectionResetError, OSError):
                    pass  # the client gave up (timeout tests)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self.thread.start()

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def close(self) -> None:
        self._stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()


def gemini_reply(text: str, finish: str = "STOP") -> Reply:
    """A generateContent response whose only candidate answers `text` (no parts when empty)."""
    content = {"role": "model", "parts": [{"text": text}] if text else []}
    return Reply(
        200,
        {
            "candidates": [{"content": content, "finishReason": finish}],
            "usageMetadata": {"promptTokenCount": 1, "candidatesTokenCount": 1},
        },
    )


def gemini_blocked(reason: str = "SAFETY") -> Reply:
    """A generateContent response refusing the prompt: no candidates, a block reason."""
    return Reply(200, {"promptFeedback": {"blockReason": reason}})


def openai_reply(text: str, finish: str = "stop") -> Reply:
    """A chat.completion response whose first choice answers `text`."""
    return Reply(
        200,
        {
            "id": "chatcmpl-test",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": "test-model",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": finish,
                }
            ],
        },
    )


def b64decode_any(data: str) -> bytes:
    """Decode standard or URL-safe base64 (the google-genai SDK sends the URL-safe alphabet)."""
    return base64.urlsafe_b64decode(data.replace("+", "-").replace("/", "_"))
