"""The generate -> verify -> feedback loop on the real DoorKey-8x8 task and the real verifier:
the replay script converges, the real google-genai client drives a loopback server to a verified
spec, the cache makes a second run free, and bad answers become feedback rounds."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from _vlm_loopback import (
    LoopbackServer,
    Reply,
    b64decode_any,
    gemini_blocked,
    gemini_reply,
    openai_reply,
)

import envs
from car_jax import cli
from car_jax.dsl import reference_markdown
from car_jax.errors import UserError
from car_jax.spec import RewardSpec
from car_jax.verify import Verifier
from car_jax.vlm import (
    ResponseCache,
    RetryPolicy,
    choose_backend,
    generate_spec,
)
from car_jax.vlm.gemini import GeminiBackend
from car_jax.vlm.loop import task_images
from car_jax.vlm.openai_compat import OpenAIBackend
from car_jax.vlm.replay import REFERENCE_LABEL, ReplayBackend

TASK_ID = "MiniGrid-DoorKey-8x8"
SCRIPT_DIR = Path(__file__).resolve().parents[2] / "prompts" / "replay"
SCRIPT = SCRIPT_DIR / f"{TASK_ID}.state"


def answer(name: str) -> str:
    """The answer JSON text of one file of the DoorKey replay script."""
    return json.dumps(json.loads((SCRIPT / name).read_text())["answer"])


def with_source(name: str, source: str, base: str = "round1.json") -> str:
    """A replay-script program answer with program `name`'s source replaced."""
    data = json.loads(answer(base))
    for p in data["programs"]:
        if p["name"] == name:
            p["source"] = source
    return json.dumps(data)


@pytest.fixture(scope="module")
def task():
    return envs.make(TASK_ID)


@pytest.fixture(scope="module")
def verifier(task):
    # NOTE: one verifier for the module, so the rollouts are collected (and compiled) once.
    return Verifier(task, "state", n=16, seed=0)


@pytest.fixture(scope="module")
def images(task):
    return task_images(task, seed=0)


def test_replay_script_with_wrong_first_answer_converges(task, verifier, images, tmp_path):
    backend = ReplayBackend([SCRIPT_DIR])
    result = generate_spec(
        task, "state", backend, verifier, rounds=3, run_dir=tmp_path, images=images
    )
    assert result.passed and result.exit_code == 0
    rounds = [r for r in result.records if r.step != "describe"]
    assert len(rounds) == 2 and not rounds[0].passed and rounds[1].passed
    assert result.best is rounds[1]
    # Round 1's verdict names the wrong program; that text is what round 2's prompt carries.
    failed = {s.name for s in rounds[0].verdict.subtasks if not s.passed}
    assert "door_open" in failed
    feedback_prompt = (tmp_path / rounds[1].folder / "prompt.md").read_text()
    assert "`door_open`: never fires on any expert trajectory" in feedback_prompt
    assert rounds[0].verdict.feedback() in feedback_prompt
    # Records: every round's prompt, answer, parsed spec and verdict; the final spec loads back.
    for r in result.records:
        assert (tmp_path / r.folder / "prompt.md").is_file()
        assert (tmp_path / r.folder / "answer.txt").read_text() == r.answer
    for r in rounds:
        assert (tmp_path / r.folder / "spec.py").is_file()
        assert json.loads((tmp_path / r.folder / "verdict.json").read_text())["passed"] == r.passed
    assert RewardSpec.load(tmp_path / "spec.py") == rounds[1].spec
    assert (tmp_path / "initial.png").read_bytes() == images[0]
    summary = json.loads((tmp_path / "generation.json").read_text())
    assert summary["passed"] and summary["best_round"] == 2
    assert "not model output" in summary["labels"][0]


def _gemini_server() -> LoopbackServer:
    def reply(req):
        last = req.json()["contents"][-1]["parts"][0]["text"]
        if "Compare the two images" in last:
            return gemini_reply(answer("describe.json"))
        return gemini_reply(answer("round2.json"))

    return LoopbackServer(reply)


def test_gemini_loop_verifies_and_cache_makes_second_run_free(task, verifier, images, tmp_path):
    server = _gemini_server()
    try:
        cache = ResponseCache(tmp_path / "cache")

        def run(out):
            backend = GeminiBackend(
                "gemini-test", api_key="k", base_url=server.url, retry=RetryPolicy(attempts=2)
            )
            return generate_spec(
                task, "state", backend, verifier, run_dir=out, cache=cache, images=images
            )

        first = run(tmp_path / "run1")
        assert first.passed and first.calls == 2 and first.cache_hits == 0
        assert len(server.seen) == 2
        describe_req, program_req = (s.json() for s in server.seen)
        # Both images arrive inline in the first turn, in order (initial, goal).
        parts = describe_req["contents"][0]["parts"]
        sent = [b64decode_any(p["inlineData"]["data"]) for p in parts if "inlineData" in p]
        assert sent == list(images)
        # The program prompt embeds the DSL reference, the task's inputs and constants.
        program_text = program_req["contents"][-1]["parts"][0]["text"]
        assert reference_markdown() in program_text
        assert "`obs.carried_tile`" in program_text and "DOOR_OPEN = " in program_text
        assert [c["role"] for c in program_req["contents"]] == ["user", "model", "user"]
        assert program_req["generationConfig"]["responseJsonSchema"]["required"] == ["programs"]
        assert first.spec.names == ["key_at_door", "door_open", "reached_goal"]
        # The prompts hold no reference program and no ground-truth success function.
        sent_text = "\n".join(s.body.decode() for s in server.seen)
        references = list((SCRIPT_DIR.parent / "reference").glob(f"{TASK_ID}*.py"))
        forbidden = [p.source for p in first.spec.programs]
        forbidden += [p.source for f in references for p in RewardSpec.load(f).programs]
        assert not any(src.splitlines()[-1].strip() in sent_text for src in forbidden)
        assert "def success" not in sent_text and "goal_encoding" not in sent_text

        second = run(tmp_path / "run2")
        assert len(server.seen) == 2, "the second identical run must not reach the server"
        assert second.calls == 0 and second.cache_hits == 2 and second.passed
        assert second.spec == first.spec
        assert all(r.cached for r in second.records)
    finally:
        server.close()


def test_bad_answers_become_feedback_rounds_and_end_non_zero(task, verifier, images, tmp_path):
    server = LoopbackServer()
    server.script += [
        openai_reply("Sure! The agent should get the key."),  # describe: not JSON
        openai_reply('{"task": "Open the door.", "subtasks": []}'),  # describe: no sub-tasks
        openai_reply(answer("describe.json")),
        openai_reply('```json\n{"programs": [{"name": "x"}]}\n```'),  # schema mismatch
        openai_reply(with_source("door_open", "def door_open(obs):\n    import os\n    return 1")),
        # ^ DSL-refused code
        openai_reply(answer("round1.json")),  # compiles, fails verification
    ]
    try:
        backend = OpenAIBackend("m", server.url + "/v1", retry=RetryPolicy(attempts=1))
        result = generate_spec(
            task, "state", backend, verifier, rounds=3, run_dir=tmp_path, images=images
        )
    finally:
        server.close()
    assert not result.passed and result.exit_code == 1
    assert [r.step for r in result.records] == ["describe"] * 3 + [
        "program",
        "feedback",
        "feedback",
    ]
    d1, d2, _, p1, p2, p3 = result.records
    assert "not valid JSON" in d1.problems[0]
    assert "names no sub-tasks" in d2.problems[0]
    assert any("`source` must hold" in p for p in p1.problems)
    assert any("E-IMPORT" in e for e in p2.compile_errors)
    assert p3.verdict is not None and not p3.verdict.passed
    assert result.best is p3  # the best verdict reached, checked again at the end
    assert result.verdict.to_json() == p3.verdict.to_json()
    # What went wrong was sent back: each request after a bad answer carries its problems.
    texts = [s.json()["messages"][-1]["content"] for s in server.seen]
    assert "not valid JSON" in texts[1] and "names no sub-tasks" in texts[2]
    assert "E-IMPORT" in texts[5]
    # Every record kept, the best failing spec written.
    assert (tmp_path / p2.folder / "compile_errors.txt").read_text().count("E-IMPORT") >= 1
    assert RewardSpec.load(tmp_path / "spec.py") == p3.spec
    assert json.loads((tmp_path / "verdict.json").read_text())["passed"] is False


def test_describe_that_never_parses_ends_without_spec(task, verifier, images, tmp_path):
    server = LoopbackServer(lambda _r: openai_reply("no idea"))
    try:
        backend = OpenAIBackend("m", server.url + "/v1", retry=RetryPolicy(attempts=1))
        result = generate_spec(task, "state", backend, verifier, rounds=2, run_dir=tmp_path,
                               images=images)  # fmt: skip
    finally:
        server.close()
    assert not result.passed and result.spec is None and len(result.records) == 2
    assert (tmp_path / "generation.json").is_file() and not (tmp_path / "spec.py").exists()


def test_backend_failure_is_a_clear_error_not_a_traceback(task, verifier, images, tmp_path):
    server = LoopbackServer(lambda _r: Reply(503, {"error": {"message": "overloaded"}}))
    try:
        backend = OpenAIBackend("m", server.url + "/v1", retry=RetryPolicy(attempts=2,
                                                                           base_delay=0.01))  # fmt: skip
        with pytest.raises(UserError, match=r"openai .*2 attempt.*503.*overloaded"):
            generate_spec(task, "state", backend, verifier, run_dir=tmp_path, images=images)
    finally:
        server.close()
    assert (tmp_path / "01-describe" / "prompt.md").is_file()  # records up to the failure


def test_replay_reference_spec_is_labelled(task, verifier, images, tmp_path):
    ref = tmp_path / "refs"
    ref.mkdir()
    spec_source = json.loads(answer("round2.json"))["programs"]
    text = '"""Open the door and reach the goal."""\n\n\n' + "\n\n\n".join(
        p["source"] for p in spec_source
    )
    (ref / f"{TASK_ID}.state.py").write_text(text + "\n")
    result = generate_spec(task, "state", ReplayBackend(reference_dir=ref), verifier,
                           run_dir=tmp_path / "run", images=images)  # fmt: skip
    assert result.passed and result.labels == [REFERENCE_LABEL]
    assert result.spec == RewardSpec.load(ref / f"{TASK_ID}.state.py")


def test_replay_without_answers_names_where_it_looked(tmp_path, task, verifier, images):
    backend = ReplayBackend(reference_dir=tmp_path)
    with pytest.raises(UserError, match=r"no answers for task 'MiniGrid-DoorKey-8x8'.*\.state\.py"):
        generate_spec(task, "state", backend, verifier, images=images)


def test_choose_backend(monkeypatch):
    backend, note = choose_backend({})
    assert backend.name == "replay" and "GEMINI_API_KEY" in note and "not model output" in note
    assert "\n" not in note
    backend, note = choose_backend({"vlm_base_url": "http://127.0.0.1:9/v1"})
    assert backend.name == "openai" and note is None
    with pytest.raises(UserError, match="GEMINI_API_KEY"):
        choose_backend({"vlm": "gemini"})
    monkeypatch.setenv("GEMINI_API_KEY", "k")
    backend, note = choose_backend({"vlm_model": "gemini-x"})
    assert backend.name == "gemini" and backend.model == "gemini-x" and note is None


@pytest.fixture
def cheap_cli(monkeypatch, verifier, images):
    """`car-jax generate` with the module's verifier and images (no new rollouts to compile)."""
    import car_jax.vlm.loop as loop

    asked = {}

    import car_jax.verify

    def fake_verifier(task, mode, **kw):
        asked.update(kw, mode=mode, task=task.id)
        return verifier

    monkeypatch.setattr(car_jax.verify, "Verifier", fake_verifier)
    monkeypatch.setattr(loop, "task_images", lambda task, seed=0: images)
    return asked


def test_cli_generate_with_replay_script(tmp_path, capsys, cheap_cli):
    out = tmp_path / "gen"
    code = cli.main(
        [
            "generate",
            TASK_ID,
            "--vlm",
            "replay",
            "--vlm-replay-dir",
            str(SCRIPT_DIR),
            "--out",
            str(out),
            "-n",
            "8",
            "--mode",
            "state",
        ]  # fmt: skip
    )
    assert code == 0
    assert RewardSpec.load(out / "spec.py").names == ["key_at_door", "door_open", "reached_goal"]
    assert "VERIFIED after 2 program round(s)" in capsys.readouterr().out
    assert cheap_cli == {"n": 8, "horizon": None, "seed": 0, "mode": "state", "task": TASK_ID}


def test_cli_generate_unreachable_endpoint_is_one_line(tmp_path, capsys, cheap_cli):
    code = cli.main(
        [
            "generate",
            TASK_ID,
            "--vlm",
            "openai",
            "--vlm-base-url",
            "http://127.0.0.1:9/v1",
            "--vlm-attempts",
            "1",
            "--out",
            str(tmp_path / "x"),
        ]  # fmt: skip
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 3
    assert err[-1].startswith("car-jax generate: error: openai") and "cannot reach" in err[-1]


def _programs(*names: str, base: str = "round2.json") -> str:
    """The answer of replay file `base` holding only the programs `names`."""
    data = json.loads(answer(base))
    data["programs"] = [p for p in data["programs"] if p["name"] in names]
    return json.dumps(data)


def _openai_run(task, verifier, images, out, replies, rounds=3, progress=None):
    server = LoopbackServer()
    server.script += [openai_reply(r) if isinstance(r, str) else r for r in replies]
    try:
        backend = OpenAIBackend("m", server.url + "/v1", retry=RetryPolicy(attempts=1))
        result = generate_spec(task, "state", backend, verifier, rounds=rounds, run_dir=out,
                               images=images, progress=progress)  # fmt: skip
    finally:
        server.close()
    return result, server


def test_partial_feedback_answer_is_merged_by_name(task, verifier, images, tmp_path):
    said = []
    # Round 1: all three programs, two wrong. Round 2: only the two corrected ones.
    result, _ = _openai_run(
        task, verifier, images, tmp_path,
        [answer("describe.json"), answer("round1.json"), _programs("key_at_door", "door_open")],
        progress=said.append,
    )  # fmt: skip
    assert result.passed
    r1, r2 = (r for r in result.records if r.step != "describe")
    assert r1.coverage.kind == "complete" and r2.coverage.kind == "merged"
    assert r2.coverage.kept == ("reached_goal",) and r2.coverage.kept_from == r1.folder
    full = json.loads(answer("round2.json"))["programs"]
    assert [p.source for p in r2.spec.programs] == [p["source"] for p in full]
    assert json.loads((tmp_path / r2.folder / "coverage.json").read_text())["kind"] == "merged"
    line = f"partial answer (key_at_door, door_open) merged into the programs of {r1.folder}"
    assert any(line in s for s in said) and line in result.summary()
    rounds = json.loads((tmp_path / "generation.json").read_text())["rounds"]
    assert rounds[-1]["coverage"]["kept"] == ["reached_goal"]


def test_renamed_or_missing_programs_are_refused_and_asked_again(task, verifier, images, tmp_path):
    renamed = json.loads(answer("round2.json"))
    renamed["programs"][2]["source"] = renamed["programs"][2]["source"].replace(
        "def reached_goal", "def at_goal"
    )
    result, server = _openai_run(
        task, verifier, images, tmp_path,
        [answer("describe.json"), _programs("door_open"), json.dumps(renamed),
         answer("round2.json")],
    )  # fmt: skip
    assert result.passed
    r1, r2, r3 = (r for r in result.records if r.step != "describe")
    assert r1.spec is None and "missing: `key_at_door`, `reached_goal`" in r1.problems[0]
    assert r2.spec is None and "`at_goal` match no sub-task" in r2.problems[0]
    assert "is `at_goal` the program for `reached_goal`?" in r2.problems[0]
    assert "refused, not merged" in r2.problems[0]
    assert "refused, not merged" in server.seen[3].json()["messages"][-1]["content"]
    assert r3.coverage.kind == "complete" and r3.spec.names == list(
        n for n, _ in result.description.subtasks
    )


def test_blocked_and_cut_off_answers_are_told_not_sent_back_and_not_cached(
    task, verifier, images, tmp_path
):
    server = LoopbackServer()
    server.script += [
        gemini_blocked("PROHIBITED_CONTENT"),  # describe: the prompt was blocked
        gemini_reply(answer("describe.json")),
        gemini_reply(answer("round2.json")[:150], finish="MAX_TOKENS"),  # cut off
        gemini_reply(answer("round2.json")),
    ]
    cache = ResponseCache(tmp_path / "cache")
    try:
        backend = GeminiBackend(
            "g", api_key="k", base_url=server.url, retry=RetryPolicy(attempts=1)
        )
        result = generate_spec(task, "state", backend, verifier, run_dir=tmp_path / "run",
                               images=images, cache=cache)  # fmt: skip
    finally:
        server.close()
    assert result.passed
    d1, d2, p1, p2 = result.records
    assert d1.blocked == "PROHIBITED_CONTENT" and "blocked (PROHIBITED_CONTENT)" in d1.problems[0]
    request1 = json.loads((tmp_path / "run" / d1.folder / "request.json").read_text())
    assert request1["blocked"] == "PROHIBITED_CONTENT"
    # No empty model turn: the blocked turn is sent again (with both images) before the feedback.
    second = server.seen[1].json()["contents"]
    assert [c["role"] for c in second] == ["user"]
    assert sum("inlineData" in p for p in second[0]["parts"]) == 2
    assert "blocked (PROHIBITED_CONTENT)" in second[0]["parts"][0]["text"]
    assert p1.finish == "MAX_TOKENS"
    assert "cut off by the output token limit (finish reason MAX_TOKENS)" in p1.problems[0]
    assert "MAX_TOKENS" in server.seen[3].json()["contents"][-1]["parts"][0]["text"]
    assert "finish reason MAX_TOKENS" in result.summary()
    # Only the two complete answers were cached.
    entries = [json.loads(f.read_text()) for f in (tmp_path / "cache").rglob("*.json")]
    assert len(entries) == 2 and all(e["answer"].strip() for e in entries)


def test_cli_scheme_less_base_url_is_bad_input(tmp_path, capsys, cheap_cli, monkeypatch):
    monkeypatch.setenv("GEMINI_API_KEY", "k")
    for backend in ("gemini", "openai"):
        code = cli.main(["generate", TASK_ID, "--vlm", backend, "--vlm-base-url",
                         "localhost:8000", "--out", str(tmp_path / backend)])  # fmt: skip
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1
        assert err[0].startswith(f"car-jax generate: error: {backend}: base URL 'localhost:8000'")


def test_importing_the_tasks_prints_nothing_on_stdout():
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", "import envs; envs.make('reacher')"],
                         capture_output=True, text=True, timeout=300)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert out.stdout == ""


def test_final_verdict_comes_from_the_verifiers_final_check(task, verifier, images, tmp_path):
    class HeldOut:
        """The module verifier per round; a final check that refuses (as held-out rollouts may)."""

        def __init__(self):
            self.final_specs = []

        def __call__(self, spec):
            return verifier(spec)

        def final(self, spec):
            self.final_specs.append(spec)
            if len(self.final_specs) == 1:
                return dataclasses.replace(verifier(spec), passed=False)
            raise RuntimeError("held-out rollouts broke")

    check = HeldOut()
    run = lambda out: generate_spec(task, "state", ReplayBackend(), check, run_dir=out,  # noqa: E731
                                    images=images)  # fmt: skip
    first = run(tmp_path / "a")
    assert first.best.passed and not first.passed and first.exit_code == 1
    assert check.final_specs == [first.best.spec] and first.verdict.passed is False
    assert json.loads((tmp_path / "a" / "verdict.json").read_text())["passed"] is False
    second = run(tmp_path / "b")  # a final check that crashes: records kept, not verified
    assert not second.passed and "held-out rollouts broke" in second.summary()
    assert (tmp_path / "b" / "final_verifier_error.txt").is_file()
    assert json.loads((tmp_path / "b" / "generation.json").read_text())["final_error"]
