"""The env batch sharded over 4 (forced host) devices trains like the 1-device run."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from jobs import run_sharded

JOBS = str(Path(__file__).parent / "jobs.py")
ROOT = Path(__file__).parents[2]


def test_four_devices_match_one_device(tmp_path):
    path = tmp_path / "four.npz"
    # NOTE: the device count is fixed when jax initialises, hence a fresh process.
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4"}
    proc = subprocess.run(
        [sys.executable, JOBS, "sharded", str(path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    four = dict(np.load(path))
    one = run_sharded()  # the same run on this process's single device
    assert int(four["obs_devices"]) == 4 and int(four["obs_shard_rows"]) == 16 // 4
    assert int(one["obs_devices"]) == 1 and int(one["obs_shard_rows"]) == 16
    assert set(one) == set(four)
    for name in one:
        if not name.startswith("obs_"):
            np.testing.assert_allclose(four[name], one[name], rtol=1e-4, atol=1e-5, err_msg=name)
