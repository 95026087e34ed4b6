"""Reward search: ask a VLM for K candidate specs, verify them, train the accepted ones side by
side in one compiled program, rank them, tell the model the results, and repeat.

One conversation per search: iteration 1 sends `prompts/search.md` (with the initial and goal
images), every later iteration `prompts/reflect.md` carrying the training summary of the previous
one. Each answer is `{"candidates": [{"task", "idea", "programs": [...]}, ...]}` (schema
`CANDIDATES_SCHEMA`, K = its `maxItems`). Candidates that do not parse, compile or verify (held-out
verdict; all K in one batched `Verifier.final_many`) are left out with their reason; the others are
trained together with `car_jax.multi.train_specs` and ranked by final greedy eval success (IQM over seeds), ties broken
by fewer env steps to sustained 90% (then by the sampling policy's success).

Run directory: the conversation (`NN-search/`, `NN-reflect/`: prompt, answer, request record;
`conversation.md`), `iter<r>/candidates/<name>/` (spec.py, verdict, problems), `iter<r>/train/`
(per-candidate logs, comparison table and plot), `iter<r>/results.json` (what marks an iteration
complete), and `leaderboard.json|md|png`, `best_spec.py`, `search.json`. `resume=True` replays
completed iterations from their records (never asks or trains them again) and resumes a partly
trained one from its checkpoints.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from car_jax.errors import UserError
from car_jax.jsonutil import json_safe
from car_jax.vlm.base import Message
from car_jax.vlm.cache import CachedBackend, ResponseCache
from car_jax.vlm.dialogue import Dialogue
from car_jax.vlm.images import task_images
from car_jax.vlm.prompts import (
    PROGRAMS_SCHEMA,
    AnswerError,
    format_constants,
    format_inputs,
    parse_json_answer,
    parse_programs,
    render_template,
    schema_text,
)
from car_jax.vlm.record import RunFolder

THRESHOLD = 0.9


def candidates_schema(k: int) -> dict[str, Any]:
    """The answer schema of a search/reflect request for `k` candidates (`maxItems` = k)."""
    return {
        "type": "object",
        "properties": {
            "candidates": {
                "type": "array",
                "minItems": 1,
                "maxItems": int(k),
                "description": f"{k} different reward specs",
                "items": {
                    "type": "object",
                    "properties": {
                        "task": {"type": "string", "description": "One sentence: the task."},
                        "idea": {"type": "string", "description": "What sets this spec apart."},
                        "programs": PROGRAMS_SCHEMA["properties"]["programs"],
                    },
                    "required": ["task", "idea", "programs"],
                },
            }
        },
        "required": ["candidates"],
    }


@dataclass
class Candidate:
    """One candidate spec: where it came from, its verdict, and (if trained) its results."""

    name: str  # i<iteration>c<index>, also its folder name
    iteration: int
    idea: str = ""
    source: str | None = None  # the spec's DSL source (None when it did not parse)
    subtasks: list[str] = field(default_factory=list)
    status: str = "rejected"  # "trained" or "rejected"
    reason: str = ""  # why it was rejected (parse, compile or verification problems)
    final_success: float | None = None  # IQM over seeds of the final greedy eval success
    final_success_ci95: list[float] | None = None
    final_success_per_seed: list[float] | None = None
    steps_to_90pct: float | None = None
    seeds_reaching_90pct: int | None = None
    final_stochastic_success: float | None = None
    final_subtask_rates: dict[str, float] | None = None  # greedy eval, last evaluation
    train_subtask_rates: dict[str, float] | None = None  # training episodes, whole run

    def rank_key(self) -> tuple[float, float, float]:
        """Sort key: higher greedy success first, then fewer steps to 90% (never: last), then
        higher sampling-policy success (tells apart candidates whose greedy policies all fail)."""
        steps = self.steps_to_90pct
        steps = math.inf if steps is None or steps != steps else steps
        return (-(self.final_success or 0.0), steps, -(self.final_stochastic_success or 0.0))


def parse_candidates(text: str, cut_off: str, k: int) -> list[tuple[str, Any, list[str]]]:
    """The answer -> up to k (idea, RewardSpec or None, problems); AnswerError if unusable."""
    data = parse_json_answer(text, cut_off)
    items = data.get("candidates") if isinstance(data, dict) else None
    if not isinstance(items, list) or not items:
        raise AnswerError(
            [
                'the answer holds no candidates: `candidates` must be a non-empty list of {"task", '
                '"idea", "programs"}'
            ]  # fmt: skip
        )
    out = []
    for item in items[:k]:
        if not isinstance(item, dict):
            out.append(("", None, ["a candidate must be an object with task, idea, programs"]))
            continue
        idea = str(item.get("idea") or "").strip()
        task = str(item.get("task") or "").strip()
        try:
            spec = parse_programs(json.dumps({"programs": item.get("programs")}), task)
            out.append((idea, spec, []))
        except AnswerError as err:
            out.append((idea, None, err.problems))
    return out


def judge(candidates: list[Candidate], specs: list[Any], task: Any, mode: str,
          verifier: Any) -> list[Any]:  # fmt: skip
    """Compile every candidate, then verify all that compile in ONE batched call (held-out
    verdicts, `Verifier.final_many`); returns each one's CompiledSpec, or None with its reason.

    A verifier without `final_many` judges them one by one with `final` (or by calling it).
    """
    from car_jax.dsl import DSLCompileError
    from car_jax.verify import compile_for_verification

    compiled: list[Any] = []
    for c, spec in zip(candidates, specs):
        try:
            compiled.append(compile_for_verification(spec, task, mode))
        except DSLCompileError as err:
            c.reason = "does not compile: " + "; ".join(str(e) for e in err.errors[:5])
            compiled.append(None)
    ready = [i for i, x in enumerate(compiled) if x is not None]
    if hasattr(verifier, "final_many"):
        verdicts = verifier.final_many([compiled[i] for i in ready])
    else:
        final = getattr(verifier, "final", verifier)
        verdicts = [final(compiled[i]) for i in ready]
    for i, verdict in zip(ready, verdicts):
        c = candidates[i]
        c.verdict = verdict
        if not verdict.passed:
            reasons = verdict.all_reasons() or ["rejected by verification"]
            c.reason = "verification: " + "; ".join(reasons[:4])
            compiled[i] = None
    return compiled


def _mean_over_run(metrics: dict, name: str) -> np.ndarray | None:
    v = np.asarray(metrics.get(name, np.zeros((0,))), float)
    if v.ndim < 3 or not np.isfinite(v).any():
        return None
    with np.errstate(all="ignore"):
        return np.nanmean(v.reshape(-1, v.shape[-1]), axis=0)


def fill_results(candidate: Candidate, summary: dict, metrics: dict) -> None:
    """Copy a trained candidate's summary (car_jax.multi.summarize_specs entry) onto it."""
    candidate.status = "trained"
    candidate.final_success = summary["final_success"]
    candidate.final_success_ci95 = summary["final_success_ci95"]
    candidate.final_success_per_seed = summary["final_success_per_seed"]
    steps = summary["steps_to_90pct"]
    candidate.steps_to_90pct = None if steps is None or steps != steps else float(steps)
    candidate.seeds_reaching_90pct = summary["seeds_reaching_90pct"]
    candidate.final_stochastic_success = summary.get("final_eval_stochastic_success")
    candidate.final_subtask_rates = summary["final_subtask_rates"]
    rates = _mean_over_run(metrics, "train_subtask_rate")
    if rates is not None:
        names = candidate.subtasks
        candidate.train_subtask_rates = dict(zip(names, np.round(rates, 3).tolist()))


def _pct(x: float | None) -> str:
    return "n/a" if x is None or x != x else f"{x:.0%}"


def _steps(x: float | None) -> str:
    return "not reached" if x is None or x != x else f"{x:,.0f}"


def stuck_at(c: Candidate) -> str:
    """Where a trained candidate's greedy agents stall: the first sub-task done in < 50% of the
    final evaluation's episodes (or "nowhere")."""
    for name, rate in (c.final_subtask_rates or {}).items():
        if rate is None or rate < 0.5:
            return f"`{name}` ({_pct(rate)} of evaluation episodes get there)"
    return "nowhere (every sub-task is reached in most evaluation episodes)"


def training_summary(cands: list[Candidate], best_so_far: Candidate | None) -> str:
    """The reflection prompt's `${summary}`: per candidate its results or why it was left out,
    the winner and why. Deterministic for the same results (numbers rounded)."""
    trained = sorted((c for c in cands if c.status == "trained"), key=Candidate.rank_key)
    lines = []
    for c in cands:
        lines.append(f"### {c.name}: {c.idea or '(no idea given)'}")
        if c.status != "trained":
            lines.append(f"- not trained: {c.reason}")
            lines.append("")
            continue
        low, high = c.final_success_ci95 or (None, None)
        lines.append(
            f"- greedy success at the end: {_pct(c.final_success)} (IQM over seeds, 95% CI "
            f"{_pct(low)}-{_pct(high)}; per seed "
            + " ".join(_pct(x) for x in c.final_success_per_seed or [])
            + f"); sampling policy {_pct(c.final_stochastic_success)}"
        )
        lines.append(
            f"- env steps to sustained 90% greedy success: {_steps(c.steps_to_90pct)} "
            f"({c.seeds_reaching_90pct} seed(s) got there)"
        )
        train_rates = c.train_subtask_rates or {}
        rates = ", ".join(
            f"`{n}` {_pct(train_rates.get(n))} in training / {_pct(r)} at the end (greedy)"
            for n, r in (c.final_subtask_rates or {}).items()
        )
        lines.append(f"- sub-task completion per episode: {rates}")
        lines.append(f"- agents get stuck at: {stuck_at(c)}")
        lines.append("")
    if trained:
        win = trained[0]
        why = f"highest greedy success ({_pct(win.final_success)})"
        if len(trained) > 1 and trained[1].final_success == win.final_success:
            why += f", tied, and fewest steps to 90% ({_steps(win.steps_to_90pct)})"
        lines.append(f"Winner of this iteration: {win.name} ({why}).")
    else:
        lines.append("No candidate of this iteration could be trained.")
    if best_so_far is not None:
        lines.append(
            f"Best spec so far: {best_so_far.name} at {_pct(best_so_far.final_success)} greedy "
            f"success; its programs:\n\n```python\n{(best_so_far.source or '').rstrip()}\n```"
        )
    return "\n".join(lines).rstrip() + "\n"


@dataclass
class SearchResult:
    """What `search` returns: every candidate, the best one, and the run directory."""

    candidates: list[Candidate]
    best: Candidate | None
    run_dir: Path
    calls: int
    cache_hits: int
    iterations_done: int

    def leaderboard(self) -> list[Candidate]:
        """Trained candidates ranked (best first), then the rejected ones."""
        trained = sorted(
            (c for c in self.candidates if c.status == "trained"), key=Candidate.rank_key
        )
        return trained + [c for c in self.candidates if c.status != "trained"]


def search(
    task: Any,
    mode: str,
    backend: Any,
    verifier: Any,
    train_fn: Callable[[list[Any], list[str], Path], dict],
    *,
    candidates: int = 4,
    iterations: int = 2,
    run_dir: str | Path,
    cache: ResponseCache | None = None,
    resume: bool = False,
    images: tuple[bytes, bytes] | None = None,
    prompt_dir: str | Path | None = None,
    dsl_reference: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> SearchResult:
    """Run the reward search (see the module docstring).

    Args:
      task, mode: the task and program input mode.
      backend: a VLM backend; verifier: a `car_jax.verify.Verifier` (`final_many`: held-out
        verdicts of all K candidates in one batched call), or any object with `.final`.
      train_fn: `(compiled_specs, names, out_dir) -> {name: (summary entry, metrics)}`; trains
        the accepted candidates side by side (see `car_jax.commands.search`).
      candidates, iterations: K candidates per request, R requests at most.
      run_dir: the run directory; `resume=True` continues one.
      cache: response cache; images: (initial, goal) PNGs (rendered when None).
    """
    if candidates < 1 or iterations < 1:
        raise UserError(
            f"--candidates and --iterations must be >= 1, got {candidates}, {iterations}"
        )
    say = progress or (lambda _msg: None)
    root = Path(run_dir)
    if not resume and (root / "iter1").exists():
        raise UserError(f"{root} already holds a search; pass --resume to continue it")
    folder = RunFolder(root)
    client = CachedBackend(backend, cache)
    dialogue = Dialogue(client, folder, task_id=task.id, mode=mode, rounds=iterations,
                        prompt_dir=prompt_dir)  # fmt: skip
    if images is None:
        images = task_images(task)
    folder.write("initial.png", images[0])
    folder.write("goal.png", images[1])
    schema = candidates_schema(candidates)
    if dsl_reference is None:
        from car_jax.dsl import reference_markdown

        dsl_reference = reference_markdown()
    text = render_template(
        "search",
        {
            "candidates": candidates,
            "environment": task.describe() or "(no description given)",
            "mode": mode,
            "inputs": format_inputs(task.inputs(mode)),
            "constants": format_constants(task.constants(mode)),
            "dsl_reference": dsl_reference,
            "answer_schema": schema_text(schema),
        },
        prompt_dir,
    )
    everyone: list[Candidate] = []
    best: Candidate | None = None
    done = 0
    for it in range(1, iterations + 1):
        step = "search" if it == 1 else "reflect"
        imgs = images if it == 1 else ()
        it_dir = root / f"iter{it}"
        record = it_dir / "results.json"
        if resume and record.is_file():
            # A completed iteration: rebuild the conversation from its records, ask nothing.
            saved = json.loads(record.read_text())
            dialogue.messages += [Message("user", saved["prompt"], tuple(imgs)),
                                  Message("model", saved["answer"])]  # fmt: skip
            dialogue.turns += 1
            cands = [Candidate(**c) for c in saved["candidates"]]
            say(f"iteration {it}/{iterations}: done before (from {record})")
        else:
            _, answer = dialogue.ask(text, step=step, round=it, schema=schema,
                                     schema_name="reward_candidates", images=imgs)  # fmt: skip
            cands = _run_iteration(it, answer, candidates, task, mode, verifier, train_fn,
                                   it_dir, say)  # fmt: skip
            it_dir.mkdir(parents=True, exist_ok=True)
            payload = {"prompt": text, "answer": answer.text,
                       "candidates": [_candidate_json(c) for c in cands]}  # fmt: skip
            record.write_text(json.dumps(json_safe(payload), indent=2) + "\n")
        everyone += cands
        done = it
        trained = sorted((c for c in everyone if c.status == "trained"), key=Candidate.rank_key)
        best = trained[0] if trained else None
        result = SearchResult(everyone, best, root, client.calls, client.hits, done)
        write_leaderboard(result, task.id)
        if it < iterations:
            text = render_template(
                "reflect",
                {
                    "iteration": it,
                    "iterations_left": iterations - it,
                    "summary": training_summary(cands, best),
                    "candidates": candidates,
                    "answer_schema": schema_text(schema),
                },
                prompt_dir,
            )
    return SearchResult(everyone, best, root, client.calls, client.hits, done)


def _candidate_json(c: Candidate) -> dict:
    d = asdict(c)
    d.pop("verdict", None)
    return d


def _run_iteration(it, answer, k, task, mode, verifier, train_fn, it_dir: Path, say) -> list:
    """Parse, verify and train one iteration's candidates; returns them with their results."""
    folder = RunFolder(it_dir / "candidates")
    try:
        parsed = parse_candidates(answer.text, answer.stop_reason, k)
    except AnswerError as err:
        say(f"iteration {it}: unusable answer: {err.problems[0]}")
        c = Candidate(name=f"i{it}c0", iteration=it, reason="answer: " + "; ".join(err.problems))
        return [c]
    if len(parsed) < k:
        say(f"iteration {it}: asked for {k} candidates, got {len(parsed)}")
    cands, accepted, names = [], [], []
    to_judge: list[tuple[Candidate, Any]] = []
    for j, (idea, spec, problems) in enumerate(parsed, start=1):
        c = Candidate(name=f"i{it}c{j}", iteration=it, idea=idea)
        cands.append(c)
        if spec is None:
            c.reason = "answer: " + "; ".join(problems)
            folder.write_problems(c.name, problems)
            continue
        c.source = spec.to_source()
        c.subtasks = spec.names
        folder.write(f"{c.name}/spec.py", c.source)
        to_judge.append((c, spec))
    # All K candidates verified in one batched evaluation on the shared rollouts.
    judged = judge([c for c, _ in to_judge], [s for _, s in to_judge], task, mode, verifier)
    for (c, _), compiled in zip(to_judge, judged):
        if getattr(c, "verdict", None) is not None:
            folder.write_verdict(c.name, c.verdict)
        if compiled is None:
            folder.write_problems(c.name, [c.reason])
            say(f"  {c.name}: left out ({c.reason[:120]})")
            continue
        say(f"  {c.name}: verified ({len(c.subtasks)} sub-tasks)")
        accepted.append(compiled)
        names.append(c.name)
    if accepted:
        say(f"iteration {it}: training {len(accepted)} candidate(s) side by side")
        results = train_fn(accepted, names, it_dir / "train")
        for c in cands:
            if c.name in results:
                fill_results(c, *results[c.name])
    return cands


# --- leaderboard ---------------------------------------------------------------------------------
def leaderboard_markdown(result: SearchResult, task_id: str) -> str:
    """The leaderboard table: trained candidates ranked, then the rejected ones with reasons."""
    rows = [
        f"# Reward search: {task_id}",
        "",
        "Ranked by final greedy eval success (IQM over seeds, 95% CI), ties by fewer env steps to "
        "sustained 90%, then by the sampling policy's success.",
        "",
        "| rank | candidate | idea | sub-tasks | greedy success [95% CI] | steps to 90% | verdict |",
        "|---|---|---|---|---|---|---|",
    ]
    rank = 0
    for c in result.leaderboard():
        idea = c.idea.replace("|", "/")[:80]
        if c.status == "trained":
            rank += 1
            low, high = c.final_success_ci95 or (None, None)
            rows.append(
                f"| {rank} | {c.name} | {idea} | {len(c.subtasks)} | {_pct(c.final_success)} "
                f"[{_pct(low)}, {_pct(high)}] | {_steps(c.steps_to_90pct)} | verified |"
            )
        else:
            reason = c.reason.replace("|", "/").replace("\n", " ")[:200]
            rows.append(
                f"| - | {c.name} | {idea} | {len(c.subtasks)} | - | - | left out: {reason} |"
            )
    if result.best is not None:
        rows += ["", f"Best spec: **{result.best.name}** (`best_spec.py`)."]
    rows += ["", "![leaderboard](leaderboard.png)", ""]
    return "\n".join(rows)


def write_leaderboard(result: SearchResult, task_id: str) -> None:
    """leaderboard.json/.md/.png, best_spec.py and search.json in the run directory."""
    root = result.run_dir
    board = [_candidate_json(c) for c in result.leaderboard()]
    (root / "leaderboard.json").write_text(json.dumps(json_safe(board), indent=2) + "\n")
    (root / "leaderboard.md").write_text(leaderboard_markdown(result, task_id))
    if result.best is not None and result.best.source:
        (root / "best_spec.py").write_text(result.best.source)
    meta = {"task": task_id, "iterations_done": result.iterations_done,
            "best": result.best.name if result.best else None,
            "vlm_calls": result.calls, "cache_hits": result.cache_hits}  # fmt: skip
    (root / "search.json").write_text(json.dumps(meta, indent=2) + "\n")
    _plot_leaderboard(result, root / "leaderboard.png", task_id)


def _plot_leaderboard(result: SearchResult, path: Path, task_id: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=120)
    iters = sorted({c.iteration for c in result.candidates})
    best_so_far, best = [], -1.0
    for it in iters:
        cs = [c for c in result.candidates if c.iteration == it]
        for j, c in enumerate(cs):
            x = it + (j - (len(cs) - 1) / 2) * 0.08
            if c.status != "trained":
                ax.scatter([x], [0.0], marker="x", color="grey", s=20)
                continue
            low, high = c.final_success_ci95 or (c.final_success, c.final_success)
            y = c.final_success
            ax.errorbar([x], [y], yerr=[[y - low], [high - y]], fmt="o", ms=4, capsize=2)
            ax.annotate(c.name, (x, y), fontsize=6, xytext=(3, 3), textcoords="offset points")
            best = max(best, y)
        best_so_far.append(best if best >= 0 else np.nan)
    ax.plot(iters, best_so_far, "k--", lw=1, label="best so far")
    ax.set_xticks(iters)
    ax.set_xlabel("iteration")
    ax.set_ylabel("final greedy eval success (IQM, 95% CI)")
    ax.set_ylim(-0.05, 1.05)
    ax.set_title(f"Reward search: {task_id} (x: left out by verification)", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
