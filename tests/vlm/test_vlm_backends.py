"""Gemini (real google-genai client) and OpenAI-compatible backends against loopback servers,
with injected faults: 429 + Retry-After, 500 then success, a hanging response, a garbage body."""

from __future__ import annotations

import base64
import json
import socket
import time

import pytest
from _vlm_loopback import Reply, b64decode_any, gemini_reply, openai_reply

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
    assert json.loads(answer) == {"x": 7}
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
    assert json.loads(gemini(server, retry=policy(sleeps)).complete(request())) == {"x": 1}
    assert sleeps.waits == [2.0]
    assert len(server.seen) == 2


def test_gemini_500_then_success_backs_off(server):
    err = {"error": {"code": 500, "message": "boom", "status": "INTERNAL"}}
    server.script += [Reply(500, err), Reply(503, err), gemini_reply('{"x": 2}')]
    sleeps = Sleeps()
    b = gemini(server, retry=policy(sleeps, attempts=3, base_delay=0.5, jitter=0.5))
    assert json.loads(b.complete(request())) == {"x": 2}
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
    assert json.loads(b.complete(request("look"))) == {"x": 3}
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
    assert json.loads(b.complete(request())) == {"x": 4}
    assert "response_format" in server.seen[0].json()
    assert "response_format" not in server.seen[1].json()
    b.complete(request())  # remembered: not asked with response_format again
    assert "response_format" not in server.seen[2].json()


def test_openai_429_with_retry_after_then_success(server):
    server.script.append(Reply(429, {"error": {"message": "rate limited"}}, {"Retry-After": "1"}))
    server.script.append(openai_reply('{"x": 5}'))
    t0 = time.perf_counter()
    b = openai(server, retry=RetryPolicy(attempts=3, timeout=5))  # real sleep
    assert json.loads(b.complete(request())) == {"x": 5}
    assert time.perf_counter() - t0 >= 0.95


def test_openai_500_then_success(server):
    server.script.append(Reply(500, {"error": {"message": "internal"}}))
    server.script.append(openai_reply('{"x": 6}'))
    sleeps = Sleeps()
    assert json.loads(openai(server, retry=policy(sleeps)).complete(request())) == {"x": 6}
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
