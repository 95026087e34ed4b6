"""JSON helpers shared by the verdict and the reports (no heavy imports)."""

from __future__ import annotations


def json_safe(x):
    """`x` with every NaN float replaced by None (JSON has no NaN), through dicts and lists."""
    if isinstance(x, dict):
        return {k: json_safe(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [json_safe(v) for v in x]
    if isinstance(x, float) and x != x:
        return None
    return x
