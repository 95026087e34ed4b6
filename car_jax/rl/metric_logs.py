"""The metric logs of a run: one row per (seed, update) in `metrics.jsonl` and `metrics.csv`.

Rows are appended after every compiled chunk, flushed and fsynced, so a crash loses nothing
already computed; on resume the rows logged after the last checkpoint are dropped and redone.
NaN (an update without an evaluation, a rollout where no episode ended) is written as null / "".
"""

from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

FIXED_COLUMNS = ("seed", "update", "env_steps", "time")


def metric_rows(
    seeds: tuple[int, ...], metrics: dict, steps_per_update: int, wall: float
) -> list[dict]:
    """One row per (seed, update) of a chunk's metrics [S, n, ...]."""
    rows = []
    n = next(iter(metrics.values())).shape[1]
    for s, seed in enumerate(seeds):
        for u in range(n):
            row = {"seed": seed, "update": int(metrics["update"][s, u])}
            row["env_steps"] = row["update"] * steps_per_update
            row["time"] = round(wall, 3)
            for name, value in sorted(metrics.items()):
                if name in ("update", "env_steps"):
                    continue
                v = np.asarray(value[s, u])
                row[name] = [_num(x) for x in v.tolist()] if v.ndim else _num(v.item())
            rows.append(row)
    return rows


def _num(x: Any) -> Any:
    """JSON-safe number: NaN and inf become None."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def _flat(row: dict) -> dict:
    """Row for the CSV: vector metrics spread over name_0, name_1, ... columns."""
    out = {}
    for k, v in row.items():
        if isinstance(v, list):
            out.update({f"{k}_{i}": x for i, x in enumerate(v)})
        else:
            out[k] = v
    return out


def read_rows(path: Path, max_update: int) -> list[dict]:
    """Rows of an existing metrics.jsonl up to `max_update` (later ones were not checkpointed)."""
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut short by a crash
        if row["update"] <= max_update:
            rows.append(row)
    return rows


def rewrite_logs(jsonl_path: Path, csv_path: Path, rows: list[dict]) -> list[str] | None:
    """Write both logs afresh from `rows` (atomically); returns the CSV columns (None if no rows)."""
    columns = _columns(rows[0]) if rows else None
    for path in (jsonl_path, csv_path):
        tmp = path.with_suffix(path.suffix + ".tmp")
        with open(tmp, "w", newline="") as f:
            if path is jsonl_path:
                f.writelines(json.dumps(r) + "\n" for r in rows)
            elif columns is not None:
                writer = csv.DictWriter(f, fieldnames=columns)
                writer.writeheader()
                writer.writerows(_flat(r) for r in rows)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    return columns


def _columns(row: dict) -> list[str]:
    flat = _flat(row)
    return list(FIXED_COLUMNS) + [k for k in flat if k not in FIXED_COLUMNS]


def append_rows(
    jsonl_path: Path, csv_path: Path, rows: list[dict], columns: list[str] | None
) -> list[str]:
    """Append rows to both logs, flushed and fsynced; writes the CSV header on first use."""
    with open(jsonl_path, "a") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
        f.flush()
        os.fsync(f.fileno())
    new_header = columns is None
    columns = columns or _columns(rows[0])
    with open(csv_path, "a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, restval="", extrasaction="ignore")
        if new_header:
            writer.writeheader()
        writer.writerows(_flat(r) for r in rows)
        f.flush()
        os.fsync(f.fileno())
    return columns


def stack_rows(rows: list[dict], seeds: tuple[int, ...]) -> dict[str, np.ndarray]:
    """Metric rows back to arrays [S, U, ...] (None -> NaN), ordered by seed then update."""
    by_seed = {
        s: sorted((r for r in rows if r["seed"] == s), key=lambda r: r["update"]) for s in seeds
    }
    names = [k for k in rows[0] if k != "seed"] if rows else []

    def value(v):
        if isinstance(v, list):
            return [np.nan if x is None else x for x in v]
        return np.nan if v is None else v

    return {
        name: np.asarray([[value(r[name]) for r in by_seed[s]] for s in seeds], dtype=np.float64)
        for name in names
    }
