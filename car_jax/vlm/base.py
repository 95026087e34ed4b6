"""What every VLM backend receives and returns: a conversation in, answer text out."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable
from urllib.parse import urlsplit

from car_jax.errors import UserError

# Finish reasons that mean "the answer ended normally" (Gemini, OpenAI-compatible, replay).
NORMAL_FINISH = frozenset({"", "STOP", "stop", "FINISH_REASON_UNSPECIFIED", "eos", "end_turn"})
# Finish reasons that mean "cut off by the output token limit".
TOKEN_LIMIT_FINISH = frozenset({"MAX_TOKENS", "length", "max_tokens"})


@dataclass(frozen=True)
class Message:
    """One turn of the conversation: `role` is "user" or "model"; images are PNG bytes."""

    role: str
    text: str
    images: tuple[bytes, ...] = ()

    def __post_init__(self):
        if self.role not in ("user", "model"):
            raise ValueError(f"message role must be 'user' or 'model', got {self.role!r}")


@dataclass(frozen=True)
class VLMRequest:
    """A request for the next model turn.

    `messages` is the whole conversation so far (ending with a user turn); `schema` is the JSON
    schema the answer must follow (sent through the backend's structured-output support where it
    has one). `task_id`, `mode`, `step` ("describe" | "program" | "feedback") and `round` say where
    the request sits in a generation; only the replay backend reads them (they are not part of
    the cache key, the conversation is).
    """

    messages: tuple[Message, ...]
    schema: dict[str, Any] | None = None
    schema_name: str = "answer"
    task_id: str = ""
    mode: str = ""
    step: str = ""
    round: int = 0
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def images(self) -> list[bytes]:
        """Every image in the conversation, in order."""
        return [img for m in self.messages for img in m.images]

    @property
    def prompt_text(self) -> str:
        """The conversation as plain text (for records and debugging)."""
        parts = []
        for m in self.messages:
            imgs = f" [+{len(m.images)} image(s)]" if m.images else ""
            parts.append(f"### {m.role}{imgs}\n\n{m.text}")
        return "\n\n".join(parts)


@dataclass(frozen=True)
class Answer:
    """One model turn as the backend returned it: the text and why the model stopped.

    `finish` is the backend's own finish reason ("STOP", "MAX_TOKENS", "SAFETY" for Gemini;
    "stop", "length", "content_filter" for OpenAI-compatible servers; "" when not told).
    `blocked` is why the request itself was refused (Gemini's prompt block reason, an OpenAI
    `refusal`), "" when it was not.
    """

    text: str
    finish: str = ""
    blocked: str = ""

    @property
    def truncated(self) -> bool:
        """True when the output token limit cut the answer off."""
        return self.finish in TOKEN_LIMIT_FINISH

    @property
    def stop_reason(self) -> str:
        """Why the answer is not a normal, complete one ("" when it is)."""
        if self.blocked:
            return f"the request was blocked ({self.blocked})"
        if self.truncated:
            return f"the answer was cut off by the output token limit (finish reason {self.finish})"
        if self.finish not in NORMAL_FINISH:
            return f"the model stopped early (finish reason {self.finish})"
        if not self.text.strip():
            return "the model returned no text" + (
                f" (finish reason {self.finish})" if self.finish else ""
            )
        return ""

    @property
    def cacheable(self) -> bool:
        """Only complete, non-empty, unblocked answers are worth storing."""
        return not self.stop_reason


@runtime_checkable
class VLMBackend(Protocol):
    """A vision-language model: `complete(request) -> Answer` (text and finish reason).

    Attributes: `name` ("gemini", "openai", "replay", ...), `model`, `settings` (sampling settings
    and endpoint: everything besides the conversation that changes the answer; part of the cache
    key), `cacheable` (False for backends whose answers cost nothing, e.g. replay).
    Errors: raise `car_jax.vlm.retry.BackendError` (a UserError) for failures that retrying will
    not fix; network and server faults are retried inside `complete`.
    """

    name: str
    model: str
    settings: dict[str, Any]
    cacheable: bool

    def complete(self, request: VLMRequest) -> Answer:
        """The model's answer for the request."""
        ...


def check_base_url(backend: str, url: str, example: str) -> str:
    """`url` when it has an http(s) scheme and a host, else a UserError (bad input, exit 2)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise UserError(
            f"{backend}: base URL {url!r} must start with http:// or https:// and name a host "
            f"(e.g. {example})"
        )
    return url


def sha256_hex(data: bytes) -> str:
    """Hex SHA-256 of `data`."""
    return hashlib.sha256(data).hexdigest()
