"""benchmarks/search_throughput.py runs end to end at a tiny size and writes valid JSON (slow:
two PPO compiles on MiniGrid; no timing asserted)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("minigrid")

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_search_throughput_tiny_writes_json(tmp_path):
    # Run as the command it is, in a process of its own: in `make test-all`, after a worker had
    # compiled the slow suite's other programs, XLA's CPU compiler segfaulted twice while
    # compiling this benchmark's K-spec program; the same compile in a fresh process passes.
    out = tmp_path / "st.json"
    argv = ["--specs", "2", "--seeds", "1", "--envs-per-unit", "4", "--updates", "1",
            "--repeats", "1", "--compile-ks", "--out", str(out)]  # fmt: skip
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "search_throughput.py"), *argv],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    data = json.loads(out.read_text())
    assert data["total_envs"] == 8 and data["k_specs"]["units"] == 2
    assert data["one_spec"]["envs_per_unit"] == 8 and data["k_specs"]["envs_per_unit"] == 4
    assert data["spec_subtask_counts"] == [3, 2]  # the reference, then the no-key candidate
    assert data["distinct_specs"] == 2
    control = data["control_one_spec_k_units"]  # the K-spec shape with one spec's programs
    assert control["units"] == 2 and control["envs_per_unit"] == 4 and control["specs"] == 1
    for row in (data["one_spec"], data["k_specs"], control):
        assert math.isfinite(row["median"]) and row["median"] > 0 and row["compile_s"] > 0
    for ratio in data["paired_ratios"].values():
        assert 0 < ratio["min"] <= ratio["median"] <= ratio["max"]
    assert data["ratio_k_specs_to_one_spec"] == pytest.approx(
        data["k_specs"]["median"] / data["one_spec"]["median"]
    )
    assert "busy" in data["note"] and set(data["compile_seconds_by_k"]) == {"2"}


def test_search_throughput_refuses_bad_sizes(capsys):
    from benchmarks import search_throughput

    with pytest.raises(SystemExit):
        search_throughput.main(["--specs", "0"])
    assert "--specs must be at least 1, got 0" in capsys.readouterr().err
