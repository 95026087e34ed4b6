"""Suite-wide setup: the CLI's persistent compilation cache stays off in tests.

`car-jax` commands cache compiled programs in ~/.cache/car-jax/xla by default; the suite must
neither write to the home folder nor get faster (or different) because an earlier run left a
warm cache. tests/test_compile_cache.py turns it on, in a temporary folder, where it is tested.

NOTE: a persistent cache per pytest session, shared by the xdist workers, was tried: it saved
about 25 s of an 8.5-minute suite, and `make test-all` then had a worker die of a segmentation
fault inside an XLA compile. Not understood, so not kept.
"""

import os

os.environ["CAR_JAX_COMPILE_CACHE"] = "off"
