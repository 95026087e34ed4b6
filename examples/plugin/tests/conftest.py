"""Make `switchroom` importable when the plugin is not installed (tests run from a checkout)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
