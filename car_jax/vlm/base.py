"""What every VLM backend receives and returns: a conversation in, answer text out."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable


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


@runtime_checkable
class VLMBackend(Protocol):
    """A vision-language model: `complete(request) -> answer text`.

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

    def complete(self, request: VLMRequest) -> str:
        """The model's answer text for the request."""
        ...


def sha256_hex(data: bytes) -> str:
    """Hex SHA-256 of `data`."""
    return hashlib.sha256(data).hexdigest()
