"""Google Gemini through the google-genai SDK (or, failing that, google-generativeai)."""

from __future__ import annotations

import os
import threading
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

DEFAULT_MODEL = "gemini-2.5-flash"
KEY_VARS = ("GEMINI_API_KEY", "GOOGLE_API_KEY")


def gemini_api_key() -> str | None:
    """The key from GEMINI_API_KEY or GOOGLE_API_KEY (first set wins), else None."""
    for var in KEY_VARS:
        if os.environ.get(var):
            return os.environ[var]
    return None


def _is_transport_error(err: BaseException) -> bool:
    """Timeouts and connection errors of httpx / httpx2 / requests, matched by class name."""
    names = {c.__name__ for c in type(err).__mro__}
    return bool(
        names
        & {
            "TimeoutException",
            "TransportError",
            "NetworkError",
            "ConnectError",
            "RemoteProtocolError",
            "ConnectionError",
            "TimeoutError",
            "Timeout",
        }
    )


def _header(response: Any, name: str) -> str | None:
    headers = getattr(response, "headers", None)
    if headers is None:
        return None
    try:
        return headers.get(name)
    except AttributeError:
        return None


class GeminiBackend:
    """`client.models.generate_content` with both images inline as PNG and a JSON response schema.

    The SDK's own retries are off (one attempt per call); `complete` retries 429, 5xx, timeouts
    and connection errors itself per `retry`, so every backend behaves the same way.
    `base_url` points the client at another endpoint (a proxy, or a test server).
    """

    name = "gemini"
    cacheable = True

    def __init__(
        self,
        model: str | None = None,
        api_key: str | None = None,
        base_url: str | None = None,
        *,
        temperature: float = 0.2,
        max_output_tokens: int = 8192,
        retry: RetryPolicy | None = None,
    ):
        self.model = model or DEFAULT_MODEL
        self.api_key = api_key or gemini_api_key()
        if not self.api_key:
            raise BackendError(
                "gemini: no API key; set GEMINI_API_KEY or GOOGLE_API_KEY, or use --vlm replay "
                "(offline reference answers) or --vlm openai"
            )
        if base_url:
            check_base_url("gemini", base_url, "https://generativelanguage.googleapis.com")
        self.base_url = base_url
        self.retry = retry or RetryPolicy()
        self.settings: dict[str, Any] = {
            "base_url": base_url or "",
            "temperature": temperature,
            "max_output_tokens": max_output_tokens,
        }
        self._client, self._types, self._legacy = _make_client(
            self.api_key, base_url, self.retry.timeout
        )

    def _config(self, request: VLMRequest) -> Any:
        types = self._types
        kw: dict[str, Any] = {
            "temperature": self.settings["temperature"],
            "max_output_tokens": self.settings["max_output_tokens"],
        }
        if request.schema is not None:
            kw["response_mime_type"] = "application/json"
            kw["response_json_schema"] = request.schema
        return types.GenerateContentConfig(**kw)

    def _contents(self, request: VLMRequest) -> list[Any]:
        types = self._types
        contents = []
        for m in request.messages:
            parts = [types.Part.from_text(text=m.text)]
            parts += [types.Part.from_bytes(data=img, mime_type="image/png") for img in m.images]
            contents.append(types.Content(role=m.role, parts=parts))
        return contents

    def _once(self, request: VLMRequest) -> Answer:
        """One call, bounded as a whole by `retry.timeout`."""
        return run_with_deadline(
            lambda: self._call(request), self.retry.timeout, abort=self._abandon_client
        )

    def _abandon_client(self) -> None:
        """After a deadline: a fresh client for the next attempt; the old one closes aside."""
        old = self._client
        self._client, self._types, self._legacy = _make_client(
            self.api_key, self.base_url, self.retry.timeout
        )
        close = getattr(old, "close", None)
        if callable(close):
            # NOTE: closing may wait for the blocked read it ends; do not make the caller wait.
            threading.Thread(target=close, name="car-jax-close-client", daemon=True).start()

    def _call(self, request: VLMRequest) -> Answer:
        if self._legacy:
            return _legacy_once(self, request)
        from google.genai import errors

        try:
            response = self._client.models.generate_content(
                model=self.model, contents=self._contents(request), config=self._config(request)
            )
        except errors.APIError as err:
            code = getattr(err, "code", None)
            status = f"HTTP {code} {getattr(err, 'status', '') or ''}".strip()
            message = getattr(err, "message", None) or str(err)
            if code in RETRY_STATUSES:
                retry_after = parse_retry_after(
                    _header(getattr(err, "response", None), "Retry-After")
                )
                raise TransientError(f"{status}: {message}", retry_after) from None
            hint = {
                400: "the request was refused",
                401: "check GEMINI_API_KEY / GOOGLE_API_KEY",
                403: "check GEMINI_API_KEY / GOOGLE_API_KEY and its permissions",
                404: f"unknown model {self.model!r}? pass --vlm-model",
            }.get(code, "")
            raise BackendError(
                f"gemini: {status}: {message}" + (f" ({hint})" if hint else "")
            ) from None
        except ValueError as err:
            # The SDK could not parse the body (e.g. not JSON): a broken answer, worth a retry.
            raise TransientError(f"malformed response: {str(err)[:200]}") from None
        except Exception as err:
            if _is_transport_error(err):
                kind = "timed out" if "Timeout" in type(err).__name__ else "connection error"
                raise TransientError(f"{kind} ({type(err).__name__}: {err})") from None
            raise
        return _answer(response)

    def complete(self, request: VLMRequest) -> Answer:
        """The model's answer; transient faults retried per `self.retry`."""
        where = f" at {self.base_url}" if self.base_url else ""
        return call_with_retries(
            lambda: self._once(request),
            backend=f"gemini (model {self.model}{where})",
            policy=self.retry,
        )


def _make_client(api_key: str, base_url: str | None, timeout: float) -> tuple[Any, Any, bool]:
    """(client, types module, legacy?) from google-genai, else google-generativeai."""
    try:
        from google import genai
        from google.genai import types
    except ImportError:
        genai = None
    if genai is not None:
        http_options = types.HttpOptions(
            base_url=base_url, timeout=max(1, int(timeout * 1000)), retry_options=None
        )
        return genai.Client(api_key=api_key, http_options=http_options), types, False
    try:
        import google.generativeai as legacy  # type: ignore[import-not-found]
    except ImportError:
        raise BackendError(
            "gemini: neither google-genai nor google-generativeai is installed; "
            "pip install 'google-genai>=1.0' (or use --vlm openai / --vlm replay)"
        ) from None
    options = {"api_endpoint": base_url} if base_url else None
    legacy.configure(api_key=api_key, transport="rest", client_options=options)
    return legacy, None, True


def _reason(value: Any) -> str:
    """An SDK enum (FinishReason.MAX_TOKENS, BlockReason.SAFETY) or string as its bare name."""
    if value is None:
        return ""
    name = getattr(value, "name", None)
    text = name if isinstance(name, str) else str(value)
    return text.rsplit(".", 1)[-1]


def _answer(response: Any) -> Answer:
    """Text, finish reason and prompt block reason of a generate_content response."""
    candidates = getattr(response, "candidates", None) or []
    finish = _reason(getattr(candidates[0], "finish_reason", None)) if candidates else ""
    feedback = getattr(response, "prompt_feedback", None)
    blocked = _reason(getattr(feedback, "block_reason", None)) if feedback is not None else ""
    if blocked in ("BLOCK_REASON_UNSPECIFIED", "0"):
        blocked = ""
    message = getattr(feedback, "block_reason_message", None) if feedback is not None else None
    if blocked and message:
        blocked = f"{blocked}: {message}"
    text = ""
    if candidates:
        try:
            text = response.text or ""
        except (ValueError, AttributeError):  # no text part (blocked, empty candidate)
            text = ""
    return Answer(text=text, finish=finish, blocked=blocked)


def _legacy_once(backend: GeminiBackend, request: VLMRequest) -> Answer:
    """One call through google-generativeai (no JSON schema there: JSON mime type only)."""
    legacy = backend._client
    contents = []
    for m in request.messages:
        parts: list[Any] = [m.text]
        parts += [{"mime_type": "image/png", "data": img} for img in m.images]
        contents.append({"role": m.role, "parts": parts})
    config = {
        "temperature": backend.settings["temperature"],
        "max_output_tokens": backend.settings["max_output_tokens"],
    }
    if request.schema is not None:
        config["response_mime_type"] = "application/json"
    model = legacy.GenerativeModel(backend.model)
    try:
        response = model.generate_content(
            contents, generation_config=config, request_options={"timeout": backend.retry.timeout}
        )
    except Exception as err:
        code = getattr(err, "code", None)
        code = code() if callable(code) else code
        code = getattr(code, "value", code)
        if code in RETRY_STATUSES or _is_transport_error(err):
            raise TransientError(f"{type(err).__name__}: {err}") from None
        raise BackendError(f"gemini (google-generativeai): {type(err).__name__}: {err}") from None
    return _answer(response)
