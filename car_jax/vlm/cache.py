"""Content-addressed response cache on disk: identical requests cost no backend calls."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from car_jax.errors import UserError
from car_jax.vlm.base import Answer, VLMBackend, VLMRequest

CACHE_VERSION = 1


def default_cache_dir(environ: Mapping[str, str] = os.environ) -> Path:
    """`$CAR_JAX_CACHE`, else `~/.cache/car-jax` (responses live under `vlm/` inside it, compiled
    programs under `xla/`, `car_jax.compile_cache`)."""
    env = environ.get("CAR_JAX_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "car-jax"


def request_key(backend: VLMBackend, request: VLMRequest) -> str:
    """SHA-256 over backend name, model, settings, schema, every message's text and image bytes."""
    h = hashlib.sha256()

    def feed(label: str, data: bytes) -> None:
        # NOTE: length-prefixed fields, so no two different requests hash the same stream.
        h.update(label.encode())
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)

    feed("version", str(CACHE_VERSION).encode())
    feed("backend", backend.name.encode())
    feed("model", backend.model.encode())
    feed("settings", json.dumps(backend.settings, sort_keys=True, default=str).encode())
    feed("schema", json.dumps(request.schema, sort_keys=True).encode())
    for m in request.messages:
        feed("role", m.role.encode())
        feed("text", m.text.encode())
        for img in m.images:
            feed("image", img)
    return h.hexdigest()


class ResponseCache:
    """Answers stored as `<root>/vlm/<key[:2]>/<key>.json`, written atomically."""

    def __init__(self, root: str | Path | None = None):
        self.root = Path(root).expanduser() if root is not None else default_cache_dir()
        self.dir = self.root / "vlm"

    def path(self, key: str) -> Path:
        """Where the entry for `key` lives."""
        return self.dir / key[:2] / f"{key}.json"

    def get(self, key: str) -> Answer | None:
        """The cached answer for `key`, or None (a missing, unreadable or empty entry is a miss)."""
        try:
            entry = json.loads(self.path(key).read_text())
        except (OSError, ValueError):
            return None
        text = entry.get("answer") if isinstance(entry, dict) else None
        if not isinstance(text, str):
            return None
        answer = Answer(text, str(entry.get("finish") or ""))
        # An empty answer stored by an older version is a miss: ask again.
        return answer if answer.cacheable else None

    def put(self, key: str, answer: Answer, meta: dict[str, Any] | None = None) -> None:
        """Store `answer` under `key`: temp file in the same folder, fsync, then os.replace."""
        path = self.path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            entry = {
                "answer": answer.text,
                "finish": answer.finish,
                "created": time.time(),
                **(meta or {}),
            }
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
            try:
                with os.fdopen(fd, "w") as f:
                    json.dump(entry, f)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as err:
            raise UserError(
                f"cannot write the VLM response cache at {str(self.dir)!r}: {err}; "
                "pass --cache-dir DIR or --no-cache"
            ) from None


class CachedBackend:
    """Wraps a backend: answers come from the cache when present, else from the backend."""

    def __init__(self, backend: VLMBackend, cache: ResponseCache | None):
        self.backend = backend
        self.cache = cache if backend.cacheable else None
        self.name = backend.name
        self.model = backend.model
        self.settings = backend.settings
        self.cacheable = backend.cacheable
        self.calls = 0  # requests that reached the backend
        self.hits = 0  # requests answered from the cache
        self.last_was_hit = False

    def complete(self, request: VLMRequest) -> Answer:
        """The cached answer, or the backend's (stored only when complete, non-empty, unblocked)."""
        key = request_key(self.backend, request) if self.cache is not None else None
        if key is not None:
            cached = self.cache.get(key)
            if cached is not None:
                self.hits += 1
                self.last_was_hit = True
                return cached
        self.last_was_hit = False
        self.calls += 1
        answer = self.backend.complete(request)
        if isinstance(answer, str):  # a plain-text backend (e.g. a user's own)
            answer = Answer(answer)
        if key is not None and answer.cacheable:
            self.cache.put(key, answer, {"backend": self.name, "model": self.model})
        return answer

    def __getattr__(self, item: str) -> Any:
        # Backend-specific attributes (e.g. replay labels) pass through.
        return getattr(self.backend, item)
