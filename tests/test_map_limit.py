"""car_jax.map_limit: a long process drops JAX's compiled programs before the mapping limit."""

from __future__ import annotations

import sys

import jax
import jax.numpy as jnp
import pytest

from car_jax import map_limit

linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


@linux
def test_compiled_programs_hold_mappings_and_a_release_frees_them(capsys):
    fns = [jax.jit(lambda x, i=i: jnp.sin(x * i).sum() + i) for i in range(60)]
    before = map_limit.mapping_count()
    for i, f in enumerate(fns):
        f(jnp.ones((i + 1,))).block_until_ready()
    held = map_limit.mapping_count()
    assert held > before + 60  # every compiled program maps regions of its own
    limit = map_limit.mapping_limit()
    assert limit and limit > held
    assert not map_limit.release_if_near_limit(share=1.0)  # far below the limit: kept
    assert map_limit.mapping_count() >= held - 5
    # A share the process is over: released, said on stderr, and the functions still work.
    assert map_limit.release_if_near_limit(share=1 / limit)
    after = map_limit.mapping_count()
    assert after < held - 60
    err = capsys.readouterr().err
    assert "memory mappings" in err and "vm.max_map_count" in err and "dropped" in err
    assert float(fns[7](jnp.ones((8,)))) == pytest.approx(float(jnp.sin(jnp.ones(8) * 7).sum() + 7))


def test_without_proc_nothing_is_released(monkeypatch, tmp_path):
    monkeypatch.setattr(map_limit, "_MAPS", str(tmp_path / "no-such-file"))
    assert map_limit.mapping_count() is None
    assert not map_limit.release_if_near_limit(share=1e-9)
    monkeypatch.setattr(map_limit, "_LIMIT", str(tmp_path / "no-limit"))
    assert map_limit.mapping_limit() is None


@pytest.mark.parametrize("share", [0.0, -0.5, 1.5])
def test_a_share_outside_0_1_is_refused(share):
    with pytest.raises(ValueError, match=r"share must lie in \(0, 1\]"):
        map_limit.release_if_near_limit(share=share)
