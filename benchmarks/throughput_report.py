"""The throughput run's report: target checks, the plain-text table, the markdown table, the plot."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from typing import Any

from benchmarks._bench_util import fmt_rate  # noqa: E402
from benchmarks.encoder_baseline import NOTE_ENCODER  # noqa: E402

TARGETS = {
    "fused_state_vs_env_at_4096": 0.95,
    "fused_pixels_vs_env_at_4096": 0.5,
    "fused_vs_farama_loop": 200.0,
    "fused_vs_encoder": 10_000.0,
}


def check_targets(rows: list[dict[str, Any]], farama: dict, encoder: dict) -> dict[str, Any]:
    """The three stated targets, measured at 4096 envs (or the largest size run)."""
    if not rows or "fused_state" not in rows[0]:
        return {}
    at = next((r for r in rows if r["num_envs"] == 4096), rows[-1])
    fused = at["fused_state"]
    out: dict[str, Any] = {"at_num_envs": at["num_envs"]}
    out["fused_state_vs_env"] = {
        "value": fused["ratio_to_env"],
        "target": TARGETS["fused_state_vs_env_at_4096"],
    }
    if "fused_pixels" in at:
        out["fused_pixels_vs_env"] = {
            "value": at["fused_pixels"]["ratio_to_env"],
            "target": TARGETS["fused_pixels_vs_env_at_4096"],
        }
    if farama:
        out["fused_state_vs_farama_loop"] = {
            "value": fused["ratio_to_farama_loop"],
            "target": TARGETS["fused_vs_farama_loop"],
        }
    if encoder:
        out["fused_state_vs_encoder"] = {
            "value": fused["ratio_to_encoder"],
            "target": TARGETS["fused_vs_encoder"],
        }
    for v in out.values():
        if isinstance(v, dict):
            v["met"] = bool(v["value"] >= v["target"])
    return out


def print_table(payload: dict[str, Any], modes: list[str]) -> None:
    """A plain-text table of the run."""
    m = payload["machine"]
    print(
        f"\n{payload['task']} on {m['cpu_model']} ({m['cpu_cores']} cores), jax {m['jax_version']} {m['backend']}"
    )
    head = f"{'envs':>6} | {'env alone':>10}"
    for mode in modes:
        head += f" | {'+code ' + mode:>14} {'ratio':>6}"
    print(head)
    print("-" * len(head))
    for row in payload["jax"]:
        line = f"{row['num_envs']:>6} | {fmt_rate(row['env']['median']):>10}"
        for mode in modes:
            r = row[f"fused_{mode}"]
            line += f" | {fmt_rate(r['median']):>14} {r['ratio_to_env']:>6.2f}"
        print(line)
    for row in payload["jax"]:
        for name in ("env_step_reset", "fused_pixels_drawn"):
            if name in row:
                r = row[name]
                print(
                    f"{row['num_envs']:>6} envs: {name} {fmt_rate(r['median'])} steps/s "
                    f"(ratio to env {r['ratio_to_env']:.2f}, compile {r['compile_s']:.1f}s)"
                )
    for k, v in payload["farama"].items():
        print(f"Farama MiniGrid {k} (n={v['num_envs']}): {fmt_rate(v['median'])} steps/s")
    if payload["encoder"]:
        print(f"ViT-B/32-sized encoder per step: {fmt_rate(payload['encoder']['median'])} images/s")
        print(NOTE_ENCODER)
    if payload["overhead"]:
        o = payload["overhead"]
        print(
            f"Overhead at {o['num_envs']} envs (state mode): env step without auto-reset "
            f"{fmt_rate(o['env_no_reset']['median'])} steps/s, with the fused reward "
            f"{fmt_rate(o['fused_state_no_reset']['median'])} "
            f"(ratio {o['fused_state_no_reset']['ratio_to_env_no_reset']:.2f}); auto-reset takes "
            f"{o['summary']['auto_reset_share_of_env_time']:.0%} of the env rows' time; observe + programs "
            f"alone {fmt_rate(o['completion_only']['median'])} states/s"
        )
    for name, t in payload["targets"].items():
        if isinstance(t, dict):
            verdict = "met" if t["met"] else "MISSED"
            print(
                f"target {name} at {payload['targets']['at_num_envs']} envs: {t['value']:.3g} (>= {t['target']:g}) {verdict}"
            )


def render_markdown(payload: dict[str, Any]) -> str:
    """The README table of a run: steps/s per env count and the ratios, plus the reference rows."""
    m = payload["machine"]
    modes = [k[len("fused_") :] for k in payload["jax"][0] if k.startswith("fused_")]
    lines = [
        f"MiniGrid DoorKey-8x8, {m['cpu_model']} ({m['cpu_cores']} cores), JAX {m['jax_version']} "
        f"({m['backend']}); median of repeats, steps/s.",
        "",
        "| parallel envs | env alone | "
        + " | ".join(f"+ code reward ({md}) | ratio" for md in modes)
        + " |",
        "|---:|---:|" + "---:|---:|" * len(modes),
    ]
    for row in payload["jax"]:
        cells = [str(row["num_envs"]), fmt_rate(row["env"]["median"])]
        for md in modes:
            r = row[f"fused_{md}"]
            cells += [fmt_rate(r["median"]), f"{r['ratio_to_env']:.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    at = payload["targets"].get("at_num_envs")
    fused = next((r["fused_state"] for r in payload["jax"] if r["num_envs"] == at), None)
    ref = []
    names = {
        "loop": "Farama MiniGrid + Python checks, Python loop",
        "loop_no_reward": "Farama MiniGrid alone, Python loop",
        "sync_vector": "Farama MiniGrid + Python checks, SyncVectorEnv",
        "async_vector_2": "Farama MiniGrid + Python checks, AsyncVectorEnv",
    }
    for k, v in payload["farama"].items():
        ratio = f"{fused['median'] / v['median']:,.0f}x" if fused else "-"
        ref.append(
            f"| {names.get(k, k)} ({v['num_envs']} env(s)) | {fmt_rate(v['median'])} | {ratio} |"
        )
    if payload["encoder"]:
        e = payload["encoder"]
        ratio = f"{fused['median'] / e['median']:,.0f}x" if fused else "-"
        ref.append(
            f"| ViT-B/32-sized image encoder on every frame (cost only) | {fmt_rate(e['median'])} | {ratio} |"
        )
    if ref:
        lines += [
            f"| alternative | steps/s | fused code reward (state, {at} envs) is |",
            "|---|---:|---:|",
            *ref,
            "",
        ]
    return "\n".join(lines)


def plot_throughput(payload: dict[str, Any], path: Path) -> Path:
    """steps/s vs parallel envs for the JAX rows, with the Farama loop and the encoder as lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = payload["jax"]
    xs = [r["num_envs"] for r in rows]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    labels = {
        "env": "env alone",
        "fused_state": "+ code reward (state)",
        "fused_pixels": "+ code reward (pixels)",
    }
    for key, label in labels.items():
        if key in rows[0]:
            ys = [r[key]["median"] for r in rows]
            err = [
                [r[key]["median"] - r[key]["min"] for r in rows],
                [r[key]["max"] - r[key]["median"] for r in rows],
            ]
            ax.errorbar(xs, ys, yerr=err, marker="o", ms=4, capsize=2, label=label)
    if payload["farama"]:
        ax.axhline(
            payload["farama"]["loop"]["median"],
            color="grey",
            ls="--",
            label="Farama MiniGrid, Python loop",
        )
    if payload["encoder"]:
        ax.axhline(
            payload["encoder"]["median"],
            color="black",
            ls=":",
            label="ViT-B/32 encoder per step (cost)",
        )
    m = payload["machine"]
    ax.set(xscale="log", yscale="log", xlabel="parallel envs", ylabel="steps / s")
    ax.set_title(
        f"MiniGrid DoorKey-8x8 throughput\n{m['cpu_model']}, {m['cpu_cores']} cores, JAX {m['jax_version']}",
        fontsize=9,
    )
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="center right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
