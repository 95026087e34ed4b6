"""Gemini (real google-genai client) and OpenAI-compatible backends against loopback servers,
with injected faults: 429 + Retry-After, 500 then success, a hanging response, a garbage body."""

from __future__ import annotations

import base64
import json
import socket
import time

import pytest
from _vlm_loopback import Reply, b64decode_any, gemini_blocked, gemini_reply, openai_reply

from car_jax.errors import UserError
from car_jax.vlm.base import Message, VLMRequest
from car_jax.vlm.gemini import GeminiBackend
from car_jax.vlm.openai_compat import OpenAIBackend
from car_jax.vlm.retry import BackendError, RetryPolicy

PNG_A = b"\x89PNG\r\n\x1a\nfirst-image"
PNG_B = b"\x89PNG\r\n\x1a\nsecond-image"
SCHEMA = {"type": "object", "properties": {"x": {"type": "integer"}}, "required": ["x"]}


def request(text="describe the images") -> VLMRequest:
    return VLMRequest(
        messages=(Message("user", text, (PNG_A, PNG_B)),), schema=SCHEMA, schema_name="answer"
    )


class Sleeps:
    """Records the waits a RetryPolicy asks for instead of sleeping."""

    def __init__(self):
        self.waits: list[float] = []

    def __call__(self, s: float) -> None:
        self.waits.append(s)


def policy(sleeps=None, **kw) -> RetryPolicy:
    kw.setdefault("attempts", 3)
    kw.setdefault("timeout", 5.0)
    kw.setdefault("base_delay", 0.01)
    return RetryPolicy(sleep=sleeps or Sleeps(), **kw)


def gemini(server, **kw) -> GeminiBackend:
    return GeminiBackend("gemini-test-model", api_key="test-key", base_url=server.url, **kw)


def openai(server, **kw) -> OpenAIBackend:
    return OpenAIBackend("test-model", server.url + "/v1", **kw)


# --- Gemini -------------------------------------------------------------------------------------
def test_gemini_sends_both_images_inline_and_the_schema(server):
    server.script.append(gemini_reply('{"x": 7}'))
    answer = gemini(server, retry=policy()).complete(request("the prompt text"))
    assert json.loads(answer.text) == {"x": 7}
    (seen,) = server.seen
    assert seen.path.endswith("/models/gemini-test-model:generateContent")
    assert seen.headers.get("x-goog-api-key") == "test-key"
    body = seen.json()
    parts = body["contents"][0]["parts"]
    assert parts[0]["text"] == "the prompt text"
    inline = [p["inlineData"] for p in parts if "inlineData" in p]
    assert [b64decode_any(p["data"]) for p in inline] == [PNG_A, PNG_B]
    assert {p.get("mimeType", p.get("mime_type")) for p in inline} == {"image/png"}
    config = body["generationConfig"]
    assert config["responseMimeType"] == "application/json"
    assert config["responseJsonSchema"] == SCHEMA


def test_gemini_conversation_keeps_roles(server):
    server.script.append(gemini_reply("{}"))
    req = VLMRequest(
        messages=(Message("user", "a", (PNG_A,)), Message("model", "b"), Message("user", "c"))
    )
    gemini(server, retry=policy()).complete(req)
    contents = server.seen[0].json()["contents"]
    assert [c["role"] for c in contents] == ["user", "model", "user"]
    assert contents[2]["parts"][0]["text"] == "c"


def test_gemini_429_honours_retry_after(server):
    server.script.append(
        Reply(
            429,
            {"error": {"code": 429, "message": "quota", "status": "RESOURCE_EXHAUSTED"}},
            {"Retry-After": "2"},
        )  # fmt: skip
    )
    server.script.append(gemini_reply('{"x": 1}'))
    sleeps = Sleeps()
    assert json.loads(gemini(server, retry=policy(sleeps)).complete(request()).text) == {"x": 1}
    assert sleeps.waits == [2.0]
    assert len(server.seen) == 2


def test_gemini_500_then_success_backs_off(server):
    err = {"error": {"code": 500, "message": "boom", "status": "INTERNAL"}}
    server.script += [Reply(500, err), Reply(503, err), gemini_reply('{"x": 2}')]
    sleeps = Sleeps()
    b = gemini(server, retry=policy(sleeps, attempts=3, base_delay=0.5, jitter=0.5))
    assert json.loads(b.complete(request()).text) == {"x": 2}
    assert len(sleeps.waits) == 2
    assert 0.25 <= sleeps.waits[0] <= 0.5 and 0.5 <= sleeps.waits[1] <= 1.0  # exponential + jitter


def test_gemini_persistent_429_ends_with_clear_error(server):
    server.default = lambda _r: Reply(429, {"error": {"code": 429, "message": "quota exceeded"}})
    with pytest.raises(BackendError) as info:
        gemini(server, retry=policy(attempts=3)).complete(request())
    msg = str(info.value)
    assert "gemini" in msg and "3 attempt" in msg and "429" in msg and "quota exceeded" in msg
    assert len(server.seen) == 3
    assert isinstance(info.value, UserError)


def test_gemini_hanging_response_times_out(server):
    server.default = lambda _r: Reply(200, {"candidates": []}, delay=5)
    t0 = time.perf_counter()
    with pytest.raises(BackendError) as info:
        gemini(server, retry=policy(attempts=2, timeout=0.5)).complete(request())
    assert time.perf_counter() - t0 < 4
    assert "timed out" in str(info.value) and "2 attempt" in str(info.value)


def test_gemini_garbage_body_is_retried_then_reported(server):
    server.default = lambda _r: Reply(200, b"<html>not json</html>")
    with pytest.raises(BackendError) as info:
        gemini(server, retry=policy(attempts=2)).complete(request())
    assert "malformed response" in str(info.value)
    assert len(server.seen) == 2


def test_gemini_unknown_model_is_one_clear_line_without_retry(server):
    server.default = lambda _r: Reply(
        404, {"error": {"code": 404, "message": "models/nope is not found", "status": "NOT_FOUND"}}
    )
    with pytest.raises(BackendError) as info:
        gemini(server, retry=policy()).complete(request())
    msg = str(info.value)
    assert "\n" not in msg and "404" in msg and "unknown model" in msg
    assert len(server.seen) == 1


def test_gemini_missing_key_is_a_user_error():
    with pytest.raises(UserError, match="GEMINI_API_KEY or GOOGLE_API_KEY"):
        GeminiBackend()


def test_gemini_key_from_google_api_key(monkeypatch, server):
    monkeypatch.setenv("GOOGLE_API_KEY", "from-env")
    server.script.append(gemini_reply("{}"))
    GeminiBackend(base_url=server.url, retry=policy()).complete(request())
    assert server.seen[0].headers.get("x-goog-api-key") == "from-env"


# --- OpenAI-compatible --------------------------------------------------------------------------
def test_openai_sends_images_as_data_urls_and_json_schema(server):
    server.script.append(openai_reply('{"x": 3}'))
    b = OpenAIBackend("test-model", server.url + "/v1", api_key="sk-test", retry=policy())
    assert json.loads(b.complete(request("look")).text) == {"x": 3}
    (seen,) = server.seen
    assert seen.path == "/v1/chat/completions"
    assert seen.headers.get("Authorization") == "Bearer sk-test"
    body = seen.json()
    assert body["model"] == "test-model"
    content = body["messages"][0]["content"]
    assert content[0] == {"type": "text", "text": "look"}
    urls = [c["image_url"]["url"] for c in content[1:]]
    prefix = "data:image/png;base64,"
    assert all(u.startswith(prefix) for u in urls)
    assert [base64.b64decode(u[len(prefix) :]) for u in urls] == [PNG_A, PNG_B]
    assert body["response_format"]["type"] == "json_schema"
    assert body["response_format"]["json_schema"]["schema"] == SCHEMA


def test_openai_local_server_needs_no_key_and_model_turns_are_assistant(server):
    server.script.append(openai_reply("{}"))
    req = VLMRequest(messages=(Message("user", "a"), Message("model", "b"), Message("user", "c")))
    openai(server, retry=policy()).complete(req)
    seen = server.seen[0]
    assert "Authorization" not in seen.headers
    assert [m["role"] for m in seen.json()["messages"]] == ["user", "assistant", "user"]


def test_openai_server_without_response_format_is_asked_plainly(server):
    server.script.append(Reply(400, {"error": {"message": "response_format is not supported"}}))
    server.default = lambda _r: openai_reply('{"x": 4}')
    b = openai(server, retry=policy())
    assert json.loads(b.complete(request()).text) == {"x": 4}
    assert "response_format" in server.seen[0].json()
    assert "response_format" not in server.seen[1].json()
    b.complete(request())  # remembered: not asked with response_format again
    assert "response_format" not in server.seen[2].json()


def test_openai_429_with_retry_after_then_success(server):
    server.script.append(Reply(429, {"error": {"message": "rate limited"}}, {"Retry-After": "1"}))
    server.script.append(openai_reply('{"x": 5}'))
    t0 = time.perf_counter()
    b = openai(server, retry=RetryPolicy(attempts=3, timeout=5))  # real sleep
    assert json.loads(b.complete(request()).text) == {"x": 5}
    assert time.perf_counter() - t0 >= 0.95


def test_openai_500_then_success(server):
    server.script.append(Reply(500, {"error": {"message": "internal"}}))
    server.script.append(openai_reply('{"x": 6}'))
    sleeps = Sleeps()
    assert json.loads(openai(server, retry=policy(sleeps)).complete(request()).text) == {"x": 6}
    assert len(sleeps.waits) == 1


def test_openai_hanging_response_times_out(server):
    server.default = lambda _r: Reply(200, openai_reply("{}").body, delay=5)
    t0 = time.perf_counter()
    with pytest.raises(BackendError) as info:
        openai(server, retry=policy(attempts=2, timeout=0.5)).complete(request())
    assert time.perf_counter() - t0 < 4
    msg = str(info.value)
    assert "openai" in msg and "timed out after 0.5 s" in msg and "2 attempt" in msg


def test_openai_garbage_body_is_retried_then_reported(server):
    server.default = lambda _r: Reply(200, b"\x00\x01 garbage")
    with pytest.raises(BackendError) as info:
        openai(server, retry=policy(attempts=2)).complete(request())
    assert "not JSON" in str(info.value) and len(server.seen) == 2


def test_openai_bad_key_is_one_clear_line(server):
    server.default = lambda _r: Reply(401, {"error": {"message": "Incorrect API key provided"}})
    with pytest.raises(BackendError) as info:
        openai(server, retry=policy()).complete(request())
    msg = str(info.value)
    assert "401" in msg and "Incorrect API key" in msg and "OPENAI_API_KEY" in msg
    assert "\n" not in msg and len(server.seen) == 1


def test_openai_unreachable_endpoint_is_one_clear_line():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    b = OpenAIBackend("m", f"http://127.0.0.1:{port}/v1", retry=policy(attempts=2))
    with pytest.raises(BackendError) as info:
        b.complete(request())
    msg = str(info.value)
    assert "cannot reach" in msg and str(port) in msg and "\n" not in msg


def test_openai_default_endpoint_needs_a_key():
    with pytest.raises(UserError, match="OPENAI_API_KEY is not set"):
        OpenAIBackend()


# --- finish and block reasons, whole-request deadline, base URLs, retry lines ----------------
def test_finish_and_block_reasons_are_kept(server):
    server.script += [gemini_reply('{"x": ', finish="MAX_TOKENS"), gemini_blocked("SAFETY")]
    b = gemini(server, retry=policy())
    cut = b.complete(request())
    assert (cut.text, cut.finish, cut.truncated) == ('{"x": ', "MAX_TOKENS", True)
    assert "cut off by the output token limit (finish reason MAX_TOKENS)" in cut.stop_reason
    blocked = b.complete(request())
    assert (blocked.text, blocked.blocked) == ("", "SAFETY") and not blocked.cacheable
    server.script += [openai_reply("", finish="content_filter"), openai_reply('{"x": 1}')]
    o = openai(server, retry=policy())
    filtered = o.complete(request())
    assert filtered.finish == "content_filter" and "finish reason content_filter" in (
        filtered.stop_reason
    )
    ok = o.complete(request())
    assert ok.finish == "stop" and ok.stop_reason == "" and ok.cacheable


@pytest.mark.parametrize("backend", ["gemini", "openai"])
def test_timeout_is_a_deadline_for_the_whole_request(server, backend):
    # One byte every 0.2 s never trips a per-read timeout of 1 s; the whole answer takes ~40 s.
    body = gemini_reply('{"x": 1}').body if backend == "gemini" else openai_reply('{"x": 1}').body
    server.default = lambda _r: Reply(200, body, drip=0.2)
    make = gemini if backend == "gemini" else openai
    t0 = time.perf_counter()
    with pytest.raises(BackendError) as info:
        make(server, retry=policy(attempts=1, timeout=1.0)).complete(request())
    elapsed = time.perf_counter() - t0
    assert elapsed < 5.0, f"{backend} took {elapsed:.1f} s for a 1 s deadline (~40 s without)"
    assert "timed out after 1 s (deadline for the whole request)" in str(info.value)


@pytest.mark.parametrize("backend", ["gemini", "openai"])
def test_base_url_without_scheme_is_bad_input(backend):
    with pytest.raises(UserError) as info:
        if backend == "gemini":
            GeminiBackend("m", api_key="k", base_url="localhost:8000")
        else:
            OpenAIBackend("m", "localhost:8000/v1")
    assert not isinstance(info.value, BackendError) and info.value.exit_code == 2
    assert "'localhost:8000" in str(info.value) and "http://" in str(info.value)


def test_each_retry_is_one_line_naming_backend_status_and_wait(server, capsys):
    server.script += [
        Reply(429, {"error": {"message": "rate\nlimited"}}, {"Retry-After": "3"}),
        Reply(503, {"error": {"message": "overloaded"}}),
        openai_reply('{"x": 1}'),
    ]
    b = openai(server, retry=RetryPolicy(attempts=3, timeout=5, base_delay=0.01, sleep=Sleeps()))
    assert json.loads(b.complete(request()).text) == {"x": 1}
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("openai (") and "HTTP 429" in lines[0] and "rate limited" in lines[0]
    assert "retrying in 3.0 s (Retry-After) (attempt 2 of 3)" in lines[0]
    assert "HTTP 503" in lines[1] and "(attempt 3 of 3)" in lines[1]
