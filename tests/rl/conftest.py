"""Make the probe envs importable as `probe_envs` (tests/rl is not a package)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
