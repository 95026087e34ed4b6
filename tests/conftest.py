"""Suite-wide setup: the CLI's persistent compilation cache stays off in tests.

`car-jax` commands cache compiled programs in ~/.cache/car-jax/xla by default; the suite must
neither write to the home folder nor get faster (or different) because an earlier run left a
warm cache. tests/test_compile_cache.py turns it on, in a temporary folder, where it is tested.
"""

import os

os.environ["CAR_JAX_COMPILE_CACHE"] = "off"
