"""The reward-search loop against a loopback OpenAI-compatible server: K candidates asked for,
rejected ones left out with their reason, the reflection prompt carries the training summary,
iterations bounded, cache hits on a rerun, resume asks and trains nothing again; and the replay
backend serves K candidates per request."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "vlm"))
from _vlm_loopback import LoopbackServer, openai_reply  # noqa: E402

from car_jax.search import candidates_schema, search  # noqa: E402
from car_jax.vlm.base import VLMRequest  # noqa: E402
from car_jax.vlm.cache import ResponseCache  # noqa: E402
from car_jax.vlm.openai_compat import OpenAIBackend  # noqa: E402
from car_jax.vlm.replay import ReplayBackend  # noqa: E402
from car_jax.vlm.retry import RetryPolicy  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from test_search_multi import Walk  # noqa: E402

K = 3


def _program(name: str, body: str) -> dict:
    return {"name": name, "description": name,
            "source": f'def {name}(obs):\n    """{name}."""\n    return {body}'}  # fmt: skip


def _candidate(idea: str, *thresholds: int, last: str | None = None) -> dict:
    progs = [_program(f"at_{t}", f"obs.t >= {t}") for t in thresholds]
    if last is not None:
        progs.append(_program("done", last))
    return {"task": "Walk to the end.", "idea": idea, "programs": progs}


ITER1 = {"candidates": [
    _candidate("one step", 5),
    _candidate("two steps", 2, 5),
    _candidate("fires at the start", last="obs.t >= 0"),  # verification rejects it
    _candidate("a fourth, beyond K", 1, 5),
]}  # fmt: skip
ITER2 = {"candidates": [_candidate("three steps", 1, 3, 5), _candidate("one step again", 5)]}
ITER3 = {"candidates": [_candidate("never asked", 5)]}


class WalkVerdict:
    """A verdict: passed, and the reasons (what the search reads)."""

    def __init__(self, reasons: list[str]):
        self.passed = not reasons
        self.reasons = reasons

    def all_reasons(self) -> list[str]:
        return list(self.reasons)


class WalkVerifier:
    """Verifies Walk specs on the two states that matter: the start (t=0) and the end (t=5):
    no program may fire at the start, the last must fire at the end."""

    def __init__(self):
        self.calls = 0

    def final(self, compiled):
        import jax.numpy as jnp

        self.calls += 1
        start = compiled.completion({"t": jnp.int32(0)})
        end = compiled.completion({"t": jnp.int32(5)})
        reasons = [f"`{n}` fires at the start" for n, s in zip(compiled.names, start) if bool(s)]
        if not bool(end[-1]):
            reasons.append("the last program does not fire at the end")
        return WalkVerdict(reasons)


class RecordingTrainer:
    """Stands in for PPO (tested in test_search_multi.py): a candidate's success is 1/(number of
    sub-tasks), so more sub-tasks rank lower; records what it was asked to train."""

    def __init__(self):
        self.calls: list[list[str]] = []

    def __call__(self, compiled, names, out: Path) -> dict:
        self.calls.append(list(names))
        out.mkdir(parents=True, exist_ok=True)
        results = {}
        for c, name in zip(compiled, names):
            k = len(c.names)
            success = 1.0 / k
            summary = {
                "final_success": success, "final_success_ci95": [success, success],
                "final_success_per_seed": [success, success],
                "steps_to_90pct": 1000.0 if success >= 0.9 else None,
                "seeds_reaching_90pct": 2 if success >= 0.9 else 0,
                "final_eval_stochastic_success": success / 2,
                "final_subtask_rates": {n: (1.0 if i == 0 else 0.25) for i, n in enumerate(c.names)},
            }  # fmt: skip
            results[name] = (summary, {})
        return results


def _run(server, tmp_path, run_dir, trainer, verifier, resume=False, iterations=2):
    backend = OpenAIBackend("m", server.url + "/v1", retry=RetryPolicy(attempts=1))
    return search(
        Walk(), "state", backend, verifier, trainer, candidates=K, iterations=iterations,
        run_dir=run_dir, cache=ResponseCache(tmp_path / "cache"), resume=resume,
        images=(b"initial", b"goal"), dsl_reference="(the DSL)",
    )  # fmt: skip


def test_search_loop_asks_k_verifies_trains_ranks_and_reflects(tmp_path):
    answers = [ITER1, ITER2, ITER3]
    server = LoopbackServer(lambda _r: openai_reply(json.dumps(answers[len(server.seen) - 1])))
    try:
        trainer, verifier = RecordingTrainer(), WalkVerifier()
        result = _run(server, tmp_path, tmp_path / "run", trainer, verifier)
        # Iterations bounded: two requests for two iterations.
        assert len(server.seen) == 2 and result.iterations_done == 2
        first, second = (s.json() for s in server.seen)
        schema = first["response_format"]["json_schema"]["schema"]
        assert schema["properties"]["candidates"]["maxItems"] == K
        assert (
            f"Propose **{K} different reward specs**" in first["messages"][0]["content"][0]["text"]
        )
        # Only K of the four candidates were taken; the one firing at the start was left out.
        assert [c.name for c in result.candidates] == ["i1c1", "i1c2", "i1c3", "i2c1", "i2c2"]
        assert trainer.calls == [["i1c1", "i1c2"], ["i2c1", "i2c2"]]
        rejected = next(c for c in result.candidates if c.name == "i1c3")
        assert rejected.status == "rejected" and "`done` fires at the start" in rejected.reason
        # The reflection prompt carries the training summary of iteration 1.
        reflect = second["messages"][-1]["content"]
        reflect = reflect if isinstance(reflect, str) else reflect[0]["text"]
        assert "iteration 1; 1 more iteration(s)" in reflect
        assert "i1c1: one step" in reflect and "greedy success at the end: 100%" in reflect
        assert "i1c2: two steps" in reflect and "agents get stuck at: `at_5` (25%" in reflect
        assert "not trained: verification: `done` fires at the start" in reflect
        assert "Winner of this iteration: i1c1" in reflect
        # The conversation goes on: the model sees its own first answer.
        assert [m["role"] for m in second["messages"]] == ["user", "assistant", "user"]
        # Leaderboard: ranked trained candidates, then the rejected one with its reason.
        board = json.loads((tmp_path / "run" / "leaderboard.json").read_text())
        assert [c["name"] for c in board] == ["i1c1", "i2c2", "i1c2", "i2c1", "i1c3"]
        assert board[-1]["status"] == "rejected"
        md = (tmp_path / "run" / "leaderboard.md").read_text()
        assert "left out: verification: `done` fires at the start" in md
        assert (tmp_path / "run" / "best_spec.py").read_text().count("def ") == 1
        assert (tmp_path / "run" / "leaderboard.png").stat().st_size > 1000
        assert (tmp_path / "run" / "iter1" / "candidates" / "i1c2" / "spec.py").is_file()

        # Rerun in a new folder: every answer from the cache, nothing sent.
        again = _run(server, tmp_path, tmp_path / "run2", RecordingTrainer(), WalkVerifier())
        assert len(server.seen) == 2 and again.cache_hits == 2 and again.calls == 0
        assert [c.name for c in again.leaderboard()] == [c["name"] for c in board]

        # Resume the first folder with one more iteration: the two done are neither asked
        # nor trained again; the third is asked with the same conversation before it.
        trainer3, verifier3 = RecordingTrainer(), WalkVerifier()
        more = _run(server, tmp_path, tmp_path / "run", trainer3, verifier3, resume=True,
                    iterations=3)  # fmt: skip
        assert len(server.seen) == 3 and trainer3.calls == [["i3c1"]] and verifier3.calls == 1
        assert more.iterations_done == 3
        assert len(server.seen[-1].json()["messages"]) == 5
    finally:
        server.close()


def test_search_refuses_a_used_folder_without_resume(tmp_path):
    (tmp_path / "run" / "iter1").mkdir(parents=True)
    server = LoopbackServer()
    try:
        from car_jax.errors import UserError

        with pytest.raises(UserError, match="already holds a search"):
            _run(server, tmp_path, tmp_path / "run", RecordingTrainer(), WalkVerifier())
    finally:
        server.close()


def test_replay_serves_k_candidates_from_the_shipped_doorkey_script():
    backend = ReplayBackend([Path("prompts/replay/search")])

    def ask(step, rnd, k):
        req = VLMRequest(messages=(), schema=candidates_schema(k), task_id="MiniGrid-DoorKey-8x8",
                         mode="state", step=step, round=rnd)  # fmt: skip
        return json.loads(backend.complete(req).text)["candidates"]

    four = ask("search", 1, 4)
    assert len(four) == 4 and len(ask("search", 1, 2)) == 2
    counts = [len(c["programs"]) for c in four]
    assert counts == [3, 2, 4, 3]  # reference, missing sub-task, finer, wrong door test
    assert len({json.dumps(c["programs"]) for c in four}) == 4
    assert len(ask("reflect", 2, 4)) == 3
    # A task without a search script: the reference spec is the one candidate.
    req = VLMRequest(messages=(), schema=candidates_schema(4), task_id="MiniGrid-DoorKey-5x5",
                     mode="state", step="search", round=1)  # fmt: skip
    only = json.loads(backend.complete(req).text)["candidates"]
    assert len(only) == 1 and only[0]["programs"][-1]["name"] == "reached_goal"


@pytest.mark.slow
def test_search_cli_offline_doorkey(tmp_path, capsys):
    """`car-jax search` end to end with the shipped replay script, at a tiny budget."""
    from car_jax.cli import main

    out = tmp_path / "run"
    argv = ["search", "MiniGrid-DoorKey-8x8", "--candidates", "4", "--iterations", "1",
            "--steps", "4096", "--num-envs", "16", "--seeds", "1", "--eval-episodes", "4",
            "-n", "8", "--no-progress", "--no-cache", "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    board = json.loads((out / "leaderboard.json").read_text())
    assert [c["status"] for c in board].count("trained") == 3
    left_out = [c for c in board if c["status"] == "rejected"]
    assert [c["name"] for c in left_out] == ["i1c4"] and "verification" in left_out[0]["reason"]
    assert (out / "iter1" / "train" / "comparison.png").is_file()
    assert (out / "best_spec.py").is_file()
    assert "| 1 | i1c" in capsys.readouterr().out
