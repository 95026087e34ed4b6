"""benchmarks/reacher_policy.py: refuses folders it cannot read, before loading anything."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def test_reacher_policy_refuses_a_folder_it_cannot_read(tmp_path):
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "reacher_policy.py"
    (tmp_path / "doorkey").mkdir()
    (tmp_path / "doorkey" / "run.json").write_text(
        json.dumps({"env": "MiniGrid-DoorKey-5x5", "observation": {"progress": True}})
    )
    for folder, words in [
        (tmp_path, "has no run.json (not a training folder)"),
        (tmp_path / "doorkey", "trained 'MiniGrid-DoorKey-5x5'"),
    ]:
        done = subprocess.run(
            [sys.executable, str(script), str(folder), "--out", str(tmp_path / "x.json")],
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert done.returncode == 1 and words in done.stderr
        assert not (tmp_path / "x.json").exists()
