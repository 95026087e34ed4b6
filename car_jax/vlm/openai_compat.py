"""Any OpenAI-compatible chat-completions endpoint (OpenAI, vLLM, Ollama, llama.cpp server)."""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import os
import socket
import threading
import urllib.error
import urllib.request
from typing import Any

from car_jax.vlm.base import Answer, VLMRequest, check_base_url
from car_jax.vlm.retry import (
    RETRY_STATUSES,
    BackendError,
    RetryPolicy,
    TransientError,
    call_with_retries,
    parse_retry_after,
    run_with_deadline,
)

DEFAULT_BASE_URL = "https://api.openai.com/v1"
DEFAULT_MODEL = "gpt-4o"


def _snippet(body: bytes | str, n: int = 200) -> str:
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    text = " ".join(text.split())
    return text[:n] + ("..." if len(text) > n else "")


def _error_message(body: bytes) -> str:
    """The `error.message` of an OpenAI-style error body, else a snippet of the body."""
    try:
        data = json.loads(body)
        err = data.get("error", data) if isinstance(data, dict) else data
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])
        if isinstance(err, str):
            return err
    except ValueError:
        pass
    return _snippet(body)


class OpenAIBackend:
    """POST `{base_url}/chat/completions` with images as `data:image/png;base64,...` URLs.

    The key comes from `api_key` or `OPENAI_API_KEY` and is only required for the default
    (OpenAI-hosted) base URL; local servers usually need none. The answer schema is requested as
    `response_format={"type": "json_schema", ...}`; a server that refuses it (HTTP 400 naming
    response_format) is asked again without it, once, and not asked with it again.
    """

    name = "openai"
    cacheable = True

    def __init__(
        self,
        model: str | None = None,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        temperature: float = 0.2,
        max_tokens: int = 4096,
        retry: RetryPolicy | None = None,
        structured_output: bool = True,
    ):
        self.model = model or os.environ.get("OPENAI_MODEL") or DEFAULT_MODEL
        self.base_url = (base_url or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL).rstrip(
            "/"
        )
        check_base_url("openai", self.base_url, "http://localhost:8000/v1")
        self.api_key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY")
        if not self.api_key and self.base_url == DEFAULT_BASE_URL:
            raise BackendError(
                "openai: OPENAI_API_KEY is not set (needed for api.openai.com); set it, or point "
                "--vlm-base-url at a local OpenAI-compatible server, or use --vlm replay"
            )
        self.retry = retry or RetryPolicy()
        self.structured_output = structured_output
        self.settings: dict[str, Any] = {
            "base_url": self.base_url,
            "temperature": temperature,
            "max_tokens": max_tokens,
        }

    @property
    def url(self) -> str:
        """The chat-completions URL."""
        return f"{self.base_url}/chat/completions"

    def _body(self, request: VLMRequest, structured: bool) -> dict[str, Any]:
        messages = []
        for m in request.messages:
            role = "assistant" if m.role == "model" else "user"
            if m.images:
                content: Any = [{"type": "text", "text": m.text}] + [
                    {
                        "type": "image_url",
                        "image_url": {
                            "url": "data:image/png;base64," + base64.b64encode(img).decode()
                        },
                    }
                    for img in m.images
                ]
            else:
                content = m.text
            messages.append({"role": role, "content": content})
        body: dict[str, Any] = {
            "model": self.model,
            "messages": messages,
            "temperature": self.settings["temperature"],
            "max_tokens": self.settings["max_tokens"],
        }
        if structured and request.schema is not None:
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {
                    "name": request.schema_name,
                    "schema": request.schema,
                    "strict": False,
                },
            }
        return body

    def _post_once(self, body: dict[str, Any]) -> Answer:
        """One POST, bounded as a whole by `retry.timeout`."""
        connections = _Connections()
        return run_with_deadline(
            lambda: self._post(body, connections), self.retry.timeout, abort=connections.close
        )

    def _post(self, body: dict[str, Any], connections: _Connections) -> Answer:
        data = json.dumps(body).encode()
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        req = urllib.request.Request(self.url, data=data, headers=headers, method="POST")
        opener = urllib.request.build_opener(
            _TrackedHTTPHandler(connections), _TrackedHTTPSHandler(connections)
        )
        try:
            with opener.open(req, timeout=self.retry.timeout) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as err:
            raw = err.read() if err.fp is not None else b""
            status = f"HTTP {err.code} {err.reason}"
            if err.code in RETRY_STATUSES:
                raise TransientError(
                    f"{status}: {_error_message(raw)}",
                    parse_retry_after(err.headers.get("Retry-After")),
                ) from None
            if err.code == 400 and b"response_format" in raw and "response_format" in body:
                raise _NoStructuredOutput() from None
            hint = {
                401: "check OPENAI_API_KEY",
                403: "check OPENAI_API_KEY and its permissions",
                404: f"unknown model {self.model!r} or wrong --vlm-base-url (it should end in /v1)",
            }.get(err.code, "")
            raise BackendError(
                f"openai: {status} from {self.url}: {_error_message(raw)}"
                + (f" ({hint})" if hint else "")
            ) from None
        except TimeoutError:
            raise TransientError(f"timed out after {self.retry.timeout:g} s") from None
        except urllib.error.URLError as err:
            reason = err.reason
            if isinstance(reason, TimeoutError):
                raise TransientError(f"timed out after {self.retry.timeout:g} s") from None
            raise TransientError(f"cannot reach {self.url}: {reason}") from None
        except (ConnectionError, OSError, http.client.HTTPException) as err:
            raise TransientError(f"connection error talking to {self.url}: {err}") from None
        return self._answer(raw)

    def _answer(self, raw: bytes) -> Answer:
        try:
            data = json.loads(raw)
        except ValueError:
            raise TransientError(f"the answer body is not JSON: {_snippet(raw)!r}") from None
        try:
            choice = data["choices"][0]
            content = choice["message"].get("content")
        except (KeyError, IndexError, TypeError, AttributeError):
            if isinstance(data, dict) and "error" in data:
                raise TransientError(f"error in body: {_error_message(raw)}") from None
            raise TransientError(
                f"the answer is not a chat completion (no choices[0].message): {_snippet(raw)!r}"
            ) from None
        if isinstance(content, list):  # some servers return content parts
            content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
        refusal = choice["message"].get("refusal")
        return Answer(
            text=content if isinstance(content, str) else "",
            finish=str(choice.get("finish_reason") or ""),
            blocked=f"refusal: {refusal}" if refusal else "",
        )

    def complete(self, request: VLMRequest) -> Answer:
        """The assistant's answer; transient faults retried per `self.retry`."""

        def attempt() -> Answer:
            try:
                return self._post_once(self._body(request, self.structured_output))
            except _NoStructuredOutput:
                # NOTE: this server does not take response_format; ask plainly from now on.
                self.structured_output = False
                return self._post_once(self._body(request, False))

        return call_with_retries(
            attempt, backend=f"openai ({self.url}, model {self.model})", policy=self.retry
        )


class _NoStructuredOutput(Exception):
    """The server refused `response_format`."""


class _Connections:
    """The HTTP connections one request opened, so that a deadline can close them."""

    def __init__(self):
        self._lock = threading.Lock()
        self._open: list[http.client.HTTPConnection] = []
        self.closed = False

    def track(self, cls: type[http.client.HTTPConnection]):
        """A factory making `cls` connections that this object remembers."""

        def make(host: str, **kw: Any) -> http.client.HTTPConnection:
            conn = cls(host, **kw)
            with self._lock:
                self._open.append(conn)
            return conn

        return make

    def close(self) -> None:
        """Shut down every socket so that a blocked read returns at once."""
        with self._lock:
            self.closed = True
            conns = list(self._open)
        for conn in conns:
            # NOTE: shutdown only: conn.close() would wait for the reader's buffer lock, held by
            # the blocked read we are trying to end.
            sock = conn.sock
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


class _TrackedHTTPHandler(urllib.request.HTTPHandler):
    """urllib's HTTP handler, with connections that a deadline can close."""

    def __init__(self, connections: _Connections):
        super().__init__()
        self.connections = connections

    def http_open(self, req):  # urllib's handler naming
        return self.do_open(self.connections.track(http.client.HTTPConnection), req)


class _TrackedHTTPSHandler(urllib.request.HTTPSHandler):
    """urllib's HTTPS handler, with connections that a deadline can close."""

    def __init__(self, connections: _Connections):
        super().__init__()
        self.connections = connections

    def https_open(self, req):  # urllib's handler naming
        return self.do_open(
            self.connections.track(http.client.HTTPSConnection), req, context=self._context
        )
