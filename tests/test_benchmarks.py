"""The benchmark scripts run end to end on tiny sizes and write valid JSON (no timing asserted)."""

from __future__ import annotations

import json
import math

import pytest

pytest.importorskip("minigrid")

from benchmarks import farama_baseline, scaling, throughput  # noqa: E402


def _finite_rates(node):
    """Every 'median' figure in a nested JSON payload, to check they are positive numbers."""
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "median":
                yield v
            else:
                yield from _finite_rates(v)
    elif isinstance(node, list):
        for v in node:
            yield from _finite_rates(v)


def test_throughput_quick_writes_json(tmp_path):
    out = tmp_path / "throughput.json"
    argv = [
        "--quick",
        "--envs",
        "4",
        "--modes",
        "state",
        "--no-encoder",
        "--no-overhead",
        "--no-plot",
        "--no-compare",
        "--farama-vector",
        "0",
        "--out",
        str(out),
    ]
    assert throughput.main(argv) == 0
    data = json.loads(out.read_text())
    assert data["machine"]["cpu_cores"] >= 1 and data["machine"]["jax_version"]
    assert "throughput.py" in data["command"] and "--quick" in data["command"]
    (row,) = data["jax"]
    assert row["num_envs"] == 4
    fused = row["fused_state"]
    lo, hi = fused["ratio_to_env_range"]
    assert 0 < lo <= fused["ratio_to_env"] <= hi
    assert data["farama"]["loop"]["num_envs"] == 1
    assert row["fused_state"]["ratio_to_farama_loop"] > 0
    target = data["targets"]["fused_state_vs_env"]
    assert target["value"] == fused["ratio_to_env"]
    assert target["met"] is (target["value"] >= target["target"])
    rates = list(_finite_rates(data))
    assert len(rates) >= 4 and all(math.isfinite(r) and r > 0 for r in rates)


def test_scaling_quick_writes_json_and_plot(tmp_path):
    out = tmp_path / "scaling.json"
    assert scaling.main(["--quick", "--no-ppo", "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    pts = data["tasks"]["CartPole-v1"]["points"]
    assert [p["num_envs"] for p in pts] == [1, 8]
    assert all(p["median"] > 0 and p["compile_s"] > 0 for p in pts)
    assert (tmp_path / "scaling_envs.png").stat().st_size > 1000


def test_python_checks_match_farama_episode():
    """The Farama-side sub-task checks see the real env state: a fresh DoorKey has none done."""
    env = farama_baseline.make_farama_env()
    env.reset(seed=3)
    assert [c(env.unwrapped) for c in farama_baseline.PY_CHECKS] == [False, False, False]
    env.unwrapped.agent_pos = tuple(
        (x, y)
        for x in range(8)
        for y in range(8)
        if (c := env.unwrapped.grid.get(x, y)) and c.type == "goal"
    )[0]
    assert farama_baseline.PY_CHECKS[2](env.unwrapped)


def test_sample_efficiency_merge_keeps_each_tasks_settings():
    from benchmarks.sample_efficiency import merge_runs, render_markdown

    def run(task_id, progress_obs, final):
        side = {
            "seeds": [0, 1],
            "final_success": final,
            "final_success_ci95": [final, final],
            "steps_to_90pct": None,
            "seeds_reaching_90pct": 0,
        }
        return {
            "benchmark": "sample_efficiency",
            "protocol": "p",
            "threshold": 0.9,
            "seeds": 2,
            "progress_obs": progress_obs,
            "rewards": ["car", "sparse"],
            "command": f"run {task_id}",
            "not_run": ["Acrobot-v1", task_id],
            "tasks": {
                task_id: {
                    "budget_per_seed": 1e6,
                    "num_envs": 8,
                    "num_steps": 4,
                    "updates": 3,
                    "car": side,
                    "sparse": dict(side, final_success=0.0),
                }  # fmt: skip
            },
        }

    old = run("A", False, 0.25)
    merged = merge_runs([old, run("B", True, 1.0), run("A", False, 0.75)])
    assert sorted(merged["tasks"]) == ["A", "B"]
    assert merged["tasks"]["A"]["car"]["final_success"] == 0.75  # the later run wins
    assert (
        merged["tasks"]["B"]["progress_obs"] is True
        and merged["tasks"]["A"]["progress_obs"] is False
    )
    assert merged["tasks"]["B"]["command"] == "run B"
    assert merged["not_run"] == ["Acrobot-v1"]  # measured tasks leave the not-run list
    table = render_markdown(merged)
    assert "| A |" in table and "75% [75%, 75%]" in table and "100% [100%, 100%]" in table
    car_only = run("C", True, 0.5)
    del car_only["tasks"]["C"]["sparse"]
    row = render_markdown(car_only).splitlines()[-1]  # a reward not trained is said, not dropped
    assert row.startswith("| C |") and "50% [50%, 50%] | not run |" in row
    with pytest.raises(SystemExit, match="not a sample_efficiency"):
        merge_runs([{"benchmark": "throughput"}])


@pytest.mark.parametrize("stage12", ["verification 27.3 s", "stage 1 + verification 31.0 s"])
def test_headline_reads_the_wall_clock_split_run_prints(stage12):
    from benchmarks.headline import parse_wall_clock

    out = f"wrote report.md\nwall clock 167.8 s: {stage12}, training compile 44.2 s, training 79.7 s\n"
    split = parse_wall_clock(out)
    assert split["total_seconds"] == 167.8 and split["training_seconds"] == 79.7
    assert split["training_compile_seconds"] == 44.2
    assert split["stage1_and_verification_seconds"] == float(stage12.split()[-2])
    with pytest.raises(SystemExit, match="no wall-clock line"):
        parse_wall_clock("training ...\n")


def test_field_reference_reads_returns_from_the_json_or_the_training_log(tmp_path):
    from benchmarks.field_reference import compare, render

    work = tmp_path / "work"
    log = work / "Breakout-MinAtar" / "sparse" / "metrics.jsonl"
    log.parent.mkdir(parents=True)
    rows = [  # two seeds, evaluations at updates 2 and 4; update 3 logged no evaluation
        dict(seed=s, update=u, eval_greedy_return=g, eval_stochastic_return=g and g - 5)
        for s, base in ((0, 10.0), (1, 40.0))
        for u, g in ((2, base), (3, None), (4, base + 20))
    ]
    log.write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"seed": 0, "upd')  # crash
    side = {"final_success_per_seed": [0.0, 1.0]}
    car = dict(side, final_eval_greedy_return_per_seed=[31.0, 20.0],
               final_eval_stochastic_return_per_seed=[28.0, 19.0])  # fmt: skip
    payload = {"tasks": {
        "Breakout-MinAtar": {"budget_per_seed": 5e6, "command": f"x --work-dir {work}",
                             "car": car, "sparse": side},
        "MiniGrid-Empty-8x8": {"budget_per_seed": 1e5, "car": car},  # no published return
    }}  # fmt: skip
    out = compare([("run.json", payload)])
    assert [(r["task"], r["reward"]) for r in out] == [
        ("Breakout-MinAtar", "car"),
        ("Breakout-MinAtar", "sparse"),
    ]
    code, sparse = out
    assert code["stochastic_return_per_seed"] == [28.0, 19.0]  # from the JSON
    assert code["seeds_at_or_above_published_stochastic"] == 1  # 28 >= 28, 19 < 28
    assert sparse["greedy_return_per_seed"] == [30.0, 60.0]  # the last evaluation, from the log
    assert sparse["stochastic_return_per_seed"] == [25.0, 55.0]
    assert "| Breakout-MinAtar | sparse | 28 (10M) | 5.00M | 25, 55 | 30, 60 | 1/2 |" in render(out)
    payload["tasks"]["Breakout-MinAtar"]["budget_per_seed"] = 1e6  # below the 5M run default
    assert compare([("run.json", payload)]) == []
    assert len(compare([("run.json", payload)], cut=True)) == 2
    # --base: an earlier output's rows stay unless a result file holds the same key
    payload["tasks"]["Breakout-MinAtar"]["budget_per_seed"] = 5e6
    old_row = dict(code, greedy_return_per_seed=[1.0, 2.0], **{"from": "old.json"})
    other = dict(code, task="Freeway-MinAtar", **{"from": "old.json"})
    merged = compare([("run.json", payload)], base=[old_row, other])
    assert [(r["task"], r["reward"], r["from"]) for r in merged] == [
        ("Breakout-MinAtar", "car", "run.json"),
        ("Freeway-MinAtar", "car", "old.json"),
        ("Breakout-MinAtar", "sparse", "run.json"),
    ]
    assert merged[0]["greedy_return_per_seed"] == [31.0, 20.0]
    del payload["tasks"]["Breakout-MinAtar"]["command"]
    with pytest.raises(SystemExit, match="training log is gone"):
        compare([("run.json", payload)], cut=True)


def test_field_reference_refuses_a_base_that_is_not_its_output(tmp_path, monkeypatch):
    from benchmarks import field_reference

    bad = tmp_path / "not_rows.json"
    bad.write_text(json.dumps({"tasks": {}}))
    monkeypatch.setattr(
        "sys.argv",
        ["field_reference.py", str(bad), "--base", str(bad), "--out", str(tmp_path / "o")],
    )
    with pytest.raises(SystemExit, match=r"--base .*not_rows.json is not an output of this script"):
        field_reference.main()
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_run_breakdown_projects_updates_and_evaluations(tmp_path):
    # Seven programs to compile per reward: slow-marked.
    from benchmarks import run_breakdown

    out = tmp_path / "breakdown.json"
    argv = ["--task", "MiniGrid-DoorKey-5x5", "--updates", "1", "--repeats", "1", "--out", str(out)]
    assert run_breakdown.main(argv) == 0
    rows = {r["reward"]: r for r in json.loads(out.read_text())["rows"]}
    assert set(rows) == {"car", "sparse"}
    for r in rows.values():
        cfg = r["config"]
        assert r["updates"] == cfg["num_updates"] == 36 and r["evaluations"] == 12
        # the untrained policy runs every evaluation episode to the 5x5 time limit (250 steps)
        assert r["evaluation_episode_length_untrained"] == 250
        total = r["projected_update_seconds"] + r["projected_evaluation_seconds_at_most"]
        assert r["evaluation_share_at_most"] == pytest.approx(
            r["projected_evaluation_seconds_at_most"] / total
        )
        assert r["seconds_per_update"] > 0 and r["seconds_per_evaluation_untrained"] > 0
        # the run's own path: driver-length chunks (1 update here, ending at every evaluation
        # point, so the driver evaluates between them), with the in-scan evaluation beside it
        x = r["in_run"]
        assert x["chunk_updates"] == 1 and x["driver_evaluates_between_chunks"] is True
        assert x["projected_seconds_between_chunks"] > 0 and x["projected_seconds_in_scan"] > 0
        assert set(x["timing"]) == {"chunk", "evaluation_between_chunks",
                                    "chunk_in_scan_none_due", "chunk_in_scan_one_due"}  # fmt: skip
    # the code reward's policy sees the progress plane; the sparse one does not
    assert rows["car"]["obs_shape"] == [7, 7, 3] and rows["sparse"]["obs_shape"] == [7, 7, 2]
    # dense FLOPs from the kernels: 7x7 cells x channels x 4-wide embeddings -> 64 -> 64 -> 6
    # actions (forward, right, left, pick up, put down, toggle), the same -> 1 value; 2 seeds x
    # 8192 samples x (2 + 3 x 4 epochs) passes
    for reward, width in (("car", 7 * 7 * 3 * 4), ("sparse", 7 * 7 * 2 * 4)):
        macs = 2 * (width * 64 + 64 * 64) + 64 * 6 + 64
        flops = 2 * 2 * macs * 8192 * 14
        assert rows[reward]["dense_gflop_per_update_all_seeds"] == pytest.approx(flops / 1e9)


@pytest.mark.slow
def test_ppo_throughput_times_the_progress_embeddings_side_by_side(tmp_path):
    from benchmarks import ppo_throughput

    out = tmp_path / "ppo.json"
    argv = ["--env", "MiniGrid-DoorKey-5x5", "--num-envs", "16", "--updates", "1", "--repeats",
            "1", "--reset-modes", "pool", "--progress-obs", "--eval-episodes", "0",
            "--out", str(out)]  # fmt: skip
    assert ppo_throughput.main(argv) == 0
    rows = {r["reward"]: r for r in json.loads(out.read_text())["rows"]}
    assert set(rows) == {"sparse", "code_reward", "progress_per_cell", "progress_once"}
    assert rows["sparse"]["ratio_to_sparse"] == 1.0
    assert not rows["progress_per_cell"]["config"]["embed_constant_once"]
    assert rows["progress_once"]["config"]["embed_constant_once"]
    low, high = rows["progress_once"]["ratio_to_per_cell_range"]
    assert low <= rows["progress_once"]["ratio_to_per_cell"] <= high
    assert all(r["config"]["eval_episodes"] == 0 and r["median"] > 0 for r in rows.values())


@pytest.mark.slow
def test_sample_efficiency_resume_reads_a_finished_reward_back(tmp_path):
    # One reward trained, then --resume with both: the finished one is read back as recorded,
    # the other trains; the JSON and its plot hold both.
    import subprocess
    import sys
    from pathlib import Path

    script = str(Path(__file__).parents[1] / "benchmarks" / "sample_efficiency.py")
    work, out = tmp_path / "work", tmp_path / "se.json"
    base = [sys.executable, script, "--tasks", "CartPole-v1", "--seeds", "1", "--scale", "0.01",
            "--work-dir", str(work), "--out", str(out)]  # fmt: skip
    first = subprocess.run([*base, "--rewards", "car"], capture_output=True, text=True)
    assert first.returncode == 0, first.stderr[-2000:]
    car = json.loads(out.read_text())["tasks"]["CartPole-v1"]["car"]
    both = subprocess.run([*base, "--rewards", "car", "sparse", "--resume"],
                          capture_output=True, text=True)  # fmt: skip
    assert both.returncode == 0, both.stderr[-2000:]
    task = json.loads(out.read_text())["tasks"]["CartPole-v1"]
    assert set(task) >= {"car", "sparse"}
    for name in ("final_success_per_seed", "train_seconds", "compile_seconds"):
        assert task["car"][name] == pytest.approx(car[name], abs=1e-3), name
    assert task["sparse"]["train_seconds"] > 0
    refused = subprocess.run([*base[:-4], "--out", str(out), "--resume"],
                             capture_output=True, text=True)  # fmt: skip
    assert refused.returncode != 0 and "--resume needs the --work-dir" in refused.stderr
