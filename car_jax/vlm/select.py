"""Choosing a backend from CLI options: `add_vlm_arguments`, `make_backend`, `choose_backend`."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from car_jax.errors import UserError
from car_jax.vlm.base import VLMBackend
from car_jax.vlm.cache import ResponseCache
from car_jax.vlm.gemini import KEY_VARS, gemini_api_key
from car_jax.vlm.replay import REFERENCE_LABEL
from car_jax.vlm.retry import RetryPolicy

BACKENDS = ("gemini", "openai", "replay")


def add_vlm_arguments(p: argparse.ArgumentParser, search: bool = False) -> None:
    """The VLM options shared by `car-jax generate`, `run` and (`search=True`) `search`."""
    g = p.add_argument_group("vision-language model")
    g.add_argument(
        "--vlm",
        choices=BACKENDS,
        default=None,
        help="backend (default: gemini when GEMINI_API_KEY or GOOGLE_API_KEY is set, else openai "
        "when --vlm-base-url is given, else replay)",
    )
    g.add_argument("--vlm-model", default=None, help="model name (gemini: gemini-2.5-flash)")
    g.add_argument(
        "--vlm-base-url",
        default=None,
        help="endpoint: gemini API base URL, or an OpenAI-compatible base ending in /v1",
    )
    g.add_argument(
        "--vlm-replay-dir",
        action="append",
        default=[],
        metavar="DIR",
        help="replay candidates from DIR (<Task>.<mode>/candidates<k>.json scripts, else the "
        "<Task>.<mode>.py spec); repeatable (default prompts/replay/search)"
        if search
        else "replay answers from DIR (<Task>.<mode>/roundN.json scripts or <Task>.<mode>.py "
        "specs) before prompts/reference/; repeatable (e.g. prompts/replay)",
    )
    g.add_argument(
        "--vlm-timeout",
        type=float,
        default=120.0,
        help="deadline in seconds for each whole request (120)",
    )
    g.add_argument("--vlm-attempts", type=int, default=5, help="tries per request (5)")
    g.add_argument("--vlm-temperature", type=float, default=0.2, help="sampling temperature (0.2)")
    if not search:  # a search's rounds are its --iterations
        g.add_argument(
            "--rounds", type=int, default=3, help="program rounds, feedback included (3)"
        )
    g.add_argument("--prompt-dir", default=None, help="folder of replacement prompt templates")
    g.add_argument("--no-cache", action="store_true", help="do not read or write the cache")
    g.add_argument(
        "--cache-dir",
        default=None,
        help="response cache folder (default $CAR_JAX_CACHE or ~/.cache/car-jax)",
    )


def make_backend(
    name: str,
    *,
    model: str | None = None,
    base_url: str | None = None,
    replay_dirs: list[str | Path] | None = None,
    timeout: float = 120.0,
    attempts: int = 5,
    temperature: float = 0.2,
) -> VLMBackend:
    """Build the backend called `name` ("gemini", "openai" or "replay")."""
    retry = RetryPolicy(attempts=attempts, timeout=timeout)
    if name == "gemini":
        from car_jax.vlm.gemini import GeminiBackend

        return GeminiBackend(model, base_url=base_url, temperature=temperature, retry=retry)
    if name == "openai":
        from car_jax.vlm.openai_compat import OpenAIBackend

        return OpenAIBackend(model, base_url, temperature=temperature, retry=retry)
    if name == "replay":
        from car_jax.vlm.replay import ReplayBackend

        return ReplayBackend(replay_dirs)
    raise UserError(f"unknown VLM backend {name!r}; choose one of {', '.join(BACKENDS)}")


def choose_backend(options: Any) -> tuple[VLMBackend, str | None]:
    """(backend, note) from parsed options; with no `--vlm` and no key, replay plus a one-line note.

    Reads `vlm`, `vlm_model`, `vlm_base_url`, `vlm_replay_dir`, `vlm_timeout`, `vlm_attempts`,
    `vlm_temperature` where present (attribute or mapping key); absent ones take defaults.
    """
    get = options.get if isinstance(options, dict) else lambda k, d=None: getattr(options, k, d)
    name = get("vlm", None)
    note = None
    if name is None:
        if gemini_api_key():
            name = "gemini"
        elif get("vlm_base_url", None):
            name = "openai"  # a local OpenAI-compatible server usually needs no key
        else:
            name = "replay"
            note = (
                f"no {' or '.join(KEY_VARS)} set: using the replay backend "
                f"({REFERENCE_LABEL}); pass --vlm gemini|openai to ask a model"
            )
    backend = make_backend(
        name,
        model=get("vlm_model", None),
        base_url=get("vlm_base_url", None),
        replay_dirs=get("vlm_replay_dir", None) or [],
        timeout=get("vlm_timeout", 120.0),
        attempts=get("vlm_attempts", 5),
        temperature=get("vlm_temperature", 0.2),
    )
    return backend, note


def make_cache(options: Any) -> ResponseCache | None:
    """The response cache the options ask for (`no_cache`, `cache_dir`), or None."""
    get = options.get if isinstance(options, dict) else lambda k, d=None: getattr(options, k, d)
    if get("no_cache", False):
        return None
    return ResponseCache(get("cache_dir", None))
