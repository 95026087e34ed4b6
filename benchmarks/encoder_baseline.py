"""A ViT-B/32-sized image encoder with random weights: the cost of asking a vision model every step."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks._bench_util import compile_jit, rate_stats, time_repeats  # noqa: E402

NOTE_ENCODER = (
    "The image-encoder rows measure COST ONLY (random weights): what it takes to run a "
    "ViT-B/32-sized vision model on every step's frame, not how good a reward it would give."
)


def vit_b32(patch: int = 32, width: int = 768, layers: int = 12, heads: int = 12, mlp: int = 3072):
    """A flax ViT image tower with CLIP ViT-B/32's layer sizes (pre-LN blocks, class token)."""
    import flax.linen as nn

    class Block(nn.Module):
        @nn.compact
        def __call__(self, x):
            y = nn.LayerNorm()(x)
            x = x + nn.MultiHeadDotProductAttention(num_heads=heads)(y, y)
            y = nn.LayerNorm()(x)
            y = nn.Dense(mlp)(y)
            return x + nn.Dense(width)(nn.gelu(y))

    class ViT(nn.Module):
        @nn.compact
        def __call__(self, images):  # [B, 224, 224, 3] float32
            x = nn.Conv(width, (patch, patch), strides=(patch, patch), use_bias=False)(images)
            b = x.shape[0]
            x = x.reshape(b, -1, width)
            cls = self.param("cls", nn.initializers.normal(0.02), (1, 1, width))
            x = jnp.concatenate([jnp.broadcast_to(cls, (b, 1, width)), x], axis=1)
            x = x + self.param("pos", nn.initializers.normal(0.02), (1, x.shape[1], width))
            x = nn.LayerNorm()(x)
            for _ in range(layers):
                x = Block()(x)
            return nn.Dense(512, use_bias=False)(nn.LayerNorm()(x[:, 0]))  # image embedding

    return ViT()


def bench_encoder(batch: int, repeats: int, size: int = 224) -> dict[str, Any]:
    """Images/s of the ViT-B/32-sized encoder on 224x224 frames (= steps/s if queried every step)."""
    model = vit_b32()
    images = jax.random.uniform(jax.random.key(0), (batch, size, size, 3), jnp.float32)
    params = jax.jit(model.init)(jax.random.key(1), images)
    compiled, compile_s = compile_jit(model.apply, params, images)
    times = time_repeats(lambda: compiled(params, images), repeats, warmup=1)
    out = rate_stats(batch, times)
    n_params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(params))
    out.update(compile_s=compile_s, batch=batch, image_size=size, params=n_params)
    return out
