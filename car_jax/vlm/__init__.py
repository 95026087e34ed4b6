"""Stage 1: a vision-language model turns two images into reward programs in the DSL.

Backends (`gemini`, `openai`, `replay`) share one interface, `complete(VLMRequest) -> Answer`;
`generate_spec` runs describe -> programs -> compile check -> verify -> feedback rounds and keeps
every record; `choose_backend` picks a backend from CLI options (replay, with a note, when no
key is set).
"""

from car_jax.vlm.base import Answer, Message, VLMBackend, VLMRequest
from car_jax.vlm.cache import CachedBackend, ResponseCache, default_cache_dir, request_key
from car_jax.vlm.coverage import Coverage, fit_to_subtasks
from car_jax.vlm.loop import GenerationResult, RoundRecord, generate_spec
from car_jax.vlm.prompts import AnswerError, TaskDescription, parse_describe, parse_programs
from car_jax.vlm.retry import BackendError, RetryPolicy
from car_jax.vlm.select import add_vlm_arguments, choose_backend, make_backend, make_cache

__all__ = [
    "Answer",
    "AnswerError",
    "BackendError",
    "CachedBackend",
    "Coverage",
    "GenerationResult",
    "Message",
    "ResponseCache",
    "RetryPolicy",
    "RoundRecord",
    "TaskDescription",
    "VLMBackend",
    "VLMRequest",
    "add_vlm_arguments",
    "choose_backend",
    "default_cache_dir",
    "fit_to_subtasks",
    "generate_spec",
    "make_backend",
    "make_cache",
    "parse_describe",
    "parse_programs",
    "request_key",
]
