"""Retry policy, response cache, prompt templates and answer parsing (no network, no JAX)."""

from __future__ import annotations

import email.utils
import json
import os
import random
import time

import pytest

from car_jax.errors import UserError
from car_jax.vlm.base import Message, VLMRequest
from car_jax.vlm.cache import CachedBackend, ResponseCache, request_key
from car_jax.vlm.prompts import (
    AnswerError,
    format_inputs,
    parse_describe,
    parse_json_answer,
    parse_programs,
    render_template,
)
from car_jax.vlm.retry import (
    BackendError,
    RetryPolicy,
    TransientError,
    call_with_retries,
    parse_retry_after,
)


# --- retries -------------------------------------------------------------------------------------
def test_parse_retry_after_seconds_and_http_date():
    assert parse_retry_after("7") == 7.0
    now = time.time()
    date = email.utils.formatdate(now + 30, usegmt=True)
    assert 28 <= parse_retry_after(date, now=now) <= 31
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None


def test_backoff_is_exponential_jittered_and_capped():
    p = RetryPolicy(base_delay=1.0, max_delay=8.0, jitter=0.5, max_wait=5.0)
    rng = random.Random(0)
    for attempt, full in enumerate([1, 2, 4]):
        d = p.delay(attempt, None, rng)
        assert full * 0.5 <= d <= full
    assert p.delay(10, None, rng) <= 5.0  # capped by max_wait
    assert p.delay(0, 3.0, rng) == 3.0  # Retry-After wins
    assert p.delay(0, 3600.0, rng) == 5.0  # but a huge one is capped


def test_call_with_retries_is_bounded_and_names_the_backend():
    calls, waits = [], []

    def fn():
        calls.append(1)
        raise TransientError("HTTP 502 Bad Gateway")

    p = RetryPolicy(attempts=4, base_delay=0.01, sleep=waits.append)
    with pytest.raises(BackendError, match=r"^mybackend: request failed after 4 attempt\(s\); "
                       r"last status: HTTP 502 Bad Gateway$"):  # fmt: skip
        call_with_retries(fn, backend="mybackend", policy=p)
    assert len(calls) == 4 and len(waits) == 3


def test_non_transient_errors_are_not_retried():
    calls = []

    def fn():
        calls.append(1)
        raise BackendError("bad key")

    with pytest.raises(BackendError, match="bad key"):
        call_with_retries(fn, backend="b", policy=RetryPolicy(sleep=lambda s: None))
    assert len(calls) == 1


# --- cache ---------------------------------------------------------------------------------------
class CountingBackend:
    name, model, cacheable = "fake", "m1", True

    def __init__(self, temperature=0.2):
        self.settings = {"temperature": temperature}
        self.calls = 0

    def complete(self, request):
        self.calls += 1
        return f"answer {self.calls}"


def req(text="hi", image=b"img") -> VLMRequest:
    return VLMRequest(messages=(Message("user", text, (image,)),), schema={"type": "object"})


def test_cache_key_covers_backend_model_prompt_images_and_settings():
    b = CountingBackend()
    base = request_key(b, req())
    assert base == request_key(b, req())
    assert base != request_key(b, req(text="hi!"))
    assert base != request_key(b, req(image=b"img2"))
    assert base != request_key(CountingBackend(temperature=0.7), req())
    other = CountingBackend()
    other.model = "m2"
    assert base != request_key(other, req())


def test_cached_backend_second_identical_request_is_free(tmp_path):
    b = CountingBackend()
    cache = ResponseCache(tmp_path)
    first = CachedBackend(b, cache).complete(req())
    again = CachedBackend(b, cache)
    assert again.complete(req()) == first and b.calls == 1 and again.hits == 1
    assert again.complete(req(text="other")).text == "answer 2" and b.calls == 2
    # No temporary files are left beside the entries.
    leftovers = [f for _, _, fs in os.walk(tmp_path) for f in fs if f.startswith(".tmp-")]
    assert leftovers == []


def test_a_half_written_entry_is_a_miss_not_a_crash(tmp_path):
    b = CountingBackend()
    cache = ResponseCache(tmp_path)
    key = request_key(b, req())
    cache.path(key).parent.mkdir(parents=True)
    cache.path(key).write_text('{"answer": "trunc')  # as if a writer died mid-way
    assert CachedBackend(b, cache).complete(req()).text == "answer 1"
    assert json.loads(cache.path(key).read_text())["answer"] == "answer 1"


def test_cache_dir_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("CAR_JAX_CACHE", str(tmp_path / "c"))
    assert ResponseCache().dir == tmp_path / "c" / "vlm"


def test_uncacheable_backends_skip_the_cache(tmp_path):
    b = CountingBackend()
    b.cacheable = False
    cb = CachedBackend(b, ResponseCache(tmp_path))
    cb.complete(req())
    cb.complete(req())
    assert b.calls == 2 and not any(tmp_path.iterdir())


# --- templates -----------------------------------------------------------------------------------
def test_templates_fill_every_placeholder():
    text = render_template("feedback", {"round": 1, "rounds_left": 2, "problems": "- P",
                                        "answer_schema": "SCHEMA"})  # fmt: skip
    assert "- P" in text and "SCHEMA" in text and "${" not in text


def test_user_template_with_unknown_placeholder_is_refused(tmp_path):
    (tmp_path / "describe.md").write_text("Look: ${images_please}\n${answer_schema}")
    with pytest.raises(UserError, match=r"\$\{images_please\}.*may use: \$\{environment\}"):
        render_template("describe", {"environment": "e", "answer_schema": "s"}, tmp_path)
    # Templates missing from the user folder come from the built-in one.
    assert "${" not in render_template(
        "feedback", {"round": 1, "rounds_left": 0, "problems": "p", "answer_schema": "s"}, tmp_path
    )


def test_format_inputs_lists_shape_dtype_doc_and_range():
    from envs.base import InputField

    table = format_inputs({"pos": InputField((2,), "int32", "agent cell", 0, 7)})
    assert "| `obs.pos` | (2,) | int32 | agent cell (values in [0, 7]) |" in table


# --- answers -------------------------------------------------------------------------------------
def test_json_answer_in_a_fence_or_with_prose_is_found():
    assert parse_json_answer('Here:\n```json\n{"a": 1}\n```') == {"a": 1}
    assert parse_json_answer('Sure, {"a": 2} is it') == {"a": 2}
    with pytest.raises(AnswerError, match="not valid JSON"):
        parse_json_answer("{'a': 1}")


def test_describe_lists_every_problem():
    with pytest.raises(AnswerError) as info:
        parse_describe('{"task": "", "subtasks": [{"name": "Get Key"}, {"name": "x", '
                       '"description": "d"}, {"name": "x", "description": "e"}]}')  # fmt: skip
    text = "\n".join(info.value.problems)
    assert "`task` must be a non-empty string" in text
    assert "'Get Key' is not snake_case" in text
    assert "sub-task 1: `description`" in text and "repeated: x" in text


def test_programs_take_name_and_description_from_their_source():
    spec = parse_programs(
        json.dumps(
            {
                "programs": [
                    {
                        "name": "wrong_name",
                        "description": "ignored",
                        "source": 'def at_goal(obs):\n    """On the goal."""\n'
                        "    return obs.x == 1",
                    }
                ]
            }
        ),  # fmt: skip
        "Reach the goal.",
    )
    (p,) = spec.programs
    assert (spec.task, p.name, p.description) == ("Reach the goal.", "at_goal", "On the goal.")


def test_programs_answer_without_programs_is_a_problem():
    with pytest.raises(AnswerError, match="holds no programs"):
        parse_programs('{"programs": []}', "t")
    with pytest.raises(AnswerError, match="defines no function"):
        parse_programs('{"programs": [{"name": "a", "source": "return 1"}]}', "t")


def test_json_error_points_into_the_fenced_block():
    # A raw line break inside a JSON string (a common model mistake), inside a ```json fence.
    text = 'Here it is:\n\n```json\n{"programs": [\n  {"name": "a", "source": "def a(obs):\n'
    text += '    return 1"}\n]}\n```\n'
    with pytest.raises(AnswerError) as info:
        parse_json_answer(text)
    (problem,) = info.value.problems
    assert "Invalid control character at line 5, column 39 of the answer (the ```json block)" in (
        problem
    )
    assert "written as \\n" in problem and "line 1, column 1" not in problem
    assert text.splitlines()[4][:38].endswith("obs):")


def test_json_cut_off_by_the_token_limit_says_so():
    cut = '```json\n{"programs": [{"name": "a", "source": "def a(obs):\\n    ret'
    with pytest.raises(AnswerError) as info:
        parse_json_answer(cut, "the answer was cut off by the output token limit (finish "
                          "reason MAX_TOKENS)")  # fmt: skip
    assert info.value.problems[0].startswith(
        "the answer was cut off by the output token limit (finish reason MAX_TOKENS) after "
        f"{len(cut)} characters, so its JSON is incomplete"
    )
    with pytest.raises(AnswerError, match=r"the JSON ends before it is complete .*cut off\?"):
        parse_json_answer(cut)  # not told by the backend: still recognised as ending early


def _spec(*names):
    from car_jax.spec import Program, RewardSpec

    return RewardSpec(
        task="t",
        programs=tuple(Program(n, n, f"def {n}(obs):\n    return 1") for n in names),
    )


def test_programs_must_cover_the_subtasks_by_name_and_number():
    from car_jax.vlm.coverage import fit_to_subtasks

    subs = ["a", "b", "c"]
    full = fit_to_subtasks(_spec("c", "a", "b"), subs)
    assert full.kind == "complete" and full.spec.names == subs and full.reordered
    with pytest.raises(AnswerError, match=r"2 program\(s\) for 3 sub-tasks; missing: `c`"):
        fit_to_subtasks(_spec("a", "b"), subs)
    with pytest.raises(AnswerError, match=r"`x` match no sub-task \(is `x` the program for `b`"):
        fit_to_subtasks(_spec("a", "x", "c"), subs, previous=full.spec, previous_folder="02")
    merged = fit_to_subtasks(_spec("b"), subs, previous=full.spec, previous_folder="02-program")
    assert merged.kind == "merged" and merged.spec.names == subs
    assert merged.kept == ("a", "c") and merged.from_answer == ("b",)
    assert "merged into the programs of 02-program (kept a, c)" in merged.sentence()


def test_wording_of_statement_kinds_and_step_counts():
    from types import SimpleNamespace

    from car_jax.spec import RewardSpec
    from car_jax.verify import Criteria, _judge

    for body, words in (("x = 1", "not an assignment"), ("1 + 1", "not an expression statement")):
        with pytest.raises(Exception, match=words):
            RewardSpec.from_source(f'"""t"""\n\n{body}\n\ndef a(obs):\n    return 1\n')
    sv = SimpleNamespace(expert_rate=1.0, random_rate=0.5, start_rate=0.0, order_rate=1.0,
                         random_window=1, tie_rate=0.0, nan_runs=0, reasons=[])  # fmt: skip
    _judge(sv, 0, _spec("a"), Criteria(), 8)
    text = " ".join(sv.reasons)
    assert "within 1 step (" in text and "1 steps" not in text
