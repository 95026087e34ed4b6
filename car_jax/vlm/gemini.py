"""Google Gemini through the google-genai SDK (or, failing that, google-generativeai)."""

from __future__ import annotations

import os
from typing import Any

from car_jax.vlm.base import VLMRequest
from car_jax.vlm.retry import (
    RETRY_STATUSES,
    BackendError,
    RetryPolicy,
    TransientError,
    call_with_retries,
    parse_retry_after,
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

    def _once(self, request: VLMRequest) -> str:
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
        try:
            return response.text or ""
        except (ValueError, AttributeError):
            return ""

    def complete(self, request: VLMRequest) -> str:
        """The model's answer text; transient faults retried per `self.retry`."""
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


def _legacy_once(backend: GeminiBackend, request: VLMRequest) -> str:
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
    try:
        return response.text or ""
    except (ValueError, AttributeError):
        return ""
