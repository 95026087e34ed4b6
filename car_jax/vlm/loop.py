"""Stage 1: images -> task and sub-tasks -> DSL programs -> compile check -> verify -> feedback.

`generate_spec` runs the whole conversation for one task and writes every turn to a run folder;
`make_verifier` builds the stage-2 verifier it calls (rollouts collected once, on first use).
"""

from __future__ import annotations

import io
import json
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from car_jax.errors import UserError
from car_jax.verify import make_verifier  # noqa: F401  (moved to car_jax.verify; re-exported)
from car_jax.vlm.base import Message, VLMBackend, VLMRequest, sha256_hex
from car_jax.vlm.cache import CachedBackend, ResponseCache
from car_jax.vlm.prompts import (
    DESCRIBE_SCHEMA,
    PROGRAMS_SCHEMA,
    AnswerError,
    TaskDescription,
    format_constants,
    format_inputs,
    format_subtasks,
    parse_describe,
    parse_programs,
    render_template,
    schema_text,
)

Verifier = Callable[[Any], Any]  # RewardSpec -> verdict-like (.passed, .feedback())


@dataclass
class RoundRecord:
    """One answer of the model and what became of it."""

    step: str  # "describe" | "program" | "feedback"
    round: int  # 1-based within its step kind (describe attempts, program rounds)
    answer: str
    problems: list[str] = field(default_factory=list)  # what goes back to the model
    compile_errors: list[str] = field(default_factory=list)
    spec: Any = None  # RewardSpec parsed from the answer (program rounds)
    verdict: Any = None
    passed: bool = False
    cached: bool = False
    label: str | None = None  # e.g. "hand-written reference programs, not model output"
    folder: str | None = None

    @property
    def score(self) -> tuple[int, int, int]:
        """Ordering of rounds: (passed, stage reached, sub-tasks that passed verification)."""
        stage = 0 if self.spec is None else (1 if self.verdict is None else 2)
        subs = getattr(self.verdict, "subtasks", None) or []
        return (int(self.passed), stage, sum(bool(getattr(s, "passed", False)) for s in subs))


@dataclass
class GenerationResult:
    """What `generate_spec` reached: the best spec and verdict, and every round."""

    task_id: str
    mode: str
    backend: str
    model: str
    description: TaskDescription | None
    records: list[RoundRecord]
    best: RoundRecord | None
    run_dir: Path | None
    calls: int  # requests that reached the backend
    cache_hits: int

    @property
    def passed(self) -> bool:
        """True when some round's spec compiled and passed verification."""
        return self.best is not None and self.best.passed

    @property
    def spec(self) -> Any:
        """The verified spec, else the best failing one (None when no answer parsed)."""
        return None if self.best is None else self.best.spec

    @property
    def verdict(self) -> Any:
        """The verdict of the best round (None when nothing reached verification)."""
        return None if self.best is None else self.best.verdict

    @property
    def exit_code(self) -> int:
        """0 when verified, 1 otherwise."""
        return 0 if self.passed else 1

    @property
    def labels(self) -> list[str]:
        """Distinct source labels of the answers (replay marks its answers as not model output)."""
        return list(dict.fromkeys(r.label for r in self.records if r.label))

    def summary(self) -> str:
        """A few lines for the terminal."""
        rounds = [r for r in self.records if r.step != "describe"]
        lines = [
            f"{self.task_id} ({self.mode}): {'VERIFIED' if self.passed else 'NOT VERIFIED'} after "
            f"{len(rounds)} program round(s); backend {self.backend} ({self.model}), "
            f"{self.calls} call(s), {self.cache_hits} from cache"
        ]
        for label in self.labels:
            lines.append(f"answers: {label}")
        if self.best is not None and self.best.spec is not None:
            lines.append(
                f"best: round {self.best.round}, programs: "
                + ", ".join(p.name for p in self.best.spec.programs)
            )
        if not self.passed:
            last = self.best or (self.records[-1] if self.records else None)
            if last is not None and last.problems:
                lines.append("last problems:")
                lines += ["  " + line for p in last.problems for line in p.splitlines()]
        if self.run_dir is not None:
            lines.append(f"records: {self.run_dir}")
        return "\n".join(lines)


# --- records ---------------------------------------------------------------------------------
class _Recorder:
    """Writes the run folder as the conversation goes (nothing when `root` is None)."""

    def __init__(self, root: Path | None):
        self.root = root
        if root is not None:
            try:
                root.mkdir(parents=True, exist_ok=True)
            except OSError as err:
                raise UserError(f"cannot create run folder {str(root)!r}: {err}") from None

    def write(self, rel: str, data: str | bytes | dict | list) -> None:
        if self.root is None:
            return
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(data, bytes):
            path.write_bytes(data)
        elif isinstance(data, dict | list):
            path.write_text(json.dumps(data, indent=2, default=str) + "\n")
        else:
            path.write_text(data)


def _verdict_json(verdict: Any) -> str | None:
    to_json = getattr(verdict, "to_json", None)
    if to_json is None:
        return None
    out = to_json()
    return out if isinstance(out, str) else json.dumps(out, indent=2, default=str)


def _spec_text(spec: Any) -> str:
    try:
        return spec.to_source()
    except Exception:  # a spec the DSL refuses may not render; keep its sources anyway
        body = "\n\n".join(p.source for p in spec.programs)
        return f'"""{spec.task}"""\n\n{body}\n'


def _feedback_text(verdict: Any) -> str:
    fb = getattr(verdict, "feedback", None)
    return fb() if callable(fb) else str(fb or "verification failed")


# --- images ----------------------------------------------------------------------------------
def png_bytes(image: np.ndarray) -> bytes:
    """A uint8 H x W x 3 array as PNG bytes."""
    from PIL import Image

    arr = np.asarray(image)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[-1] not in (3, 4):
        raise UserError(
            f"task render must be a uint8 H x W x 3 image, got {arr.dtype} {tuple(arr.shape)}"
        )
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def task_images(task: Any, seed: int = 0) -> tuple[bytes, bytes]:
    """PNGs of the task's initial state and of the goal state reached by its expert."""
    import jax

    key = jax.random.key(seed)
    initial = png_bytes(task.render(task.initial_state(key)))
    try:
        goal_state = task.goal_state(key)
    except Exception as err:
        raise UserError(f"cannot make a goal image for {task.id!r}: {err}") from None
    return initial, png_bytes(task.render(goal_state))


# --- the loop --------------------------------------------------------------------------------
def generate_spec(
    task: Any,
    mode: str,
    backend: VLMBackend,
    verifier: Verifier,
    *,
    rounds: int = 3,
    run_dir: str | Path | None = None,
    cache: ResponseCache | None = None,
    images: tuple[bytes, bytes] | None = None,
    seed: int = 0,
    prompt_dir: str | Path | None = None,
    dsl_reference: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> GenerationResult:
    """Ask `backend` for a task description, then programs, until they verify or rounds run out.

    Args:
      task: an `envs` Task (its `id`, `inputs(mode)`, `constants(mode)`, `describe()`, and, unless
        `images` is given, `render`, `initial_state`, `goal_state`).
      mode: the program input mode.
      backend: a `VLMBackend`.
      verifier: `spec -> verdict` with `.passed` and `.feedback()`; called only on specs that
        compile (see `make_verifier`).
      rounds: program answers at most (the first plus `rounds - 1` revisions); the describe step
        gets as many attempts.
      run_dir: where every prompt, image, answer, parsed spec, compile error and verdict is
        written (nothing written when None).
      cache: response cache (None: no cache).
      images: (initial PNG, goal PNG); rendered from the task when None.
      prompt_dir: a folder of replacement templates.
      dsl_reference: the DSL reference text (default `car_jax.dsl.reference_markdown()`).
      progress: called with one line per step, for the terminal.
    Returns:
      A GenerationResult; `.passed` tells whether a spec verified. Bad answers never raise: they
      become the next feedback round. Backend failures raise `BackendError` (a UserError).
    """
    from car_jax.spec import check_spec

    if rounds < 1:
        raise UserError(f"--rounds must be at least 1, got {rounds}")
    say = progress or (lambda _msg: None)
    rec = _Recorder(Path(run_dir) if run_dir is not None else None)
    client = CachedBackend(backend, cache)
    inputs = task.inputs(mode)
    constants = task.constants(mode)
    environment = task.describe() or "(no description given)"
    if dsl_reference is None:
        from car_jax.dsl import reference_markdown

        dsl_reference = reference_markdown()
    if images is None:
        images = task_images(task, seed)
    rec.write("initial.png", images[0])
    rec.write("goal.png", images[1])

    records: list[RoundRecord] = []
    messages: list[Message] = []
    conversation: list[str] = []

    def ask(text: str, step: str, rnd: int, schema: dict, schema_name: str, imgs=()) -> RoundRecord:
        messages.append(Message("user", text, tuple(imgs)))
        request = VLMRequest(
            messages=tuple(messages),
            schema=schema,
            schema_name=schema_name,
            task_id=task.id,
            mode=mode,
            step=step,
            round=rnd,
        )
        folder = f"{len(records) + 1:02d}-{step}"
        rec.write(f"{folder}/prompt.md", text)
        t0 = time.perf_counter()
        answer = client.complete(request)
        elapsed = time.perf_counter() - t0
        messages.append(Message("model", answer))
        label = getattr(client, "last_label", None) if backend.name == "replay" else None
        r = RoundRecord(step, rnd, answer, cached=client.last_was_hit, label=label, folder=folder)
        records.append(r)
        rec.write(f"{folder}/answer.txt", answer)
        rec.write(
            f"{folder}/request.json",
            {
                "backend": backend.name,
                "model": backend.model,
                "settings": backend.settings,
                "step": step,
                "round": rnd,
                "schema_name": schema_name,
                "images": [
                    {"sha256": sha256_hex(i), "file": n}
                    for i, n in zip(imgs, ("../initial.png", "../goal.png"))
                ],
                "messages_in_conversation": len(messages) - 1,
                "cached": r.cached,
                "seconds": round(elapsed, 3),
                "label": label,
                "replay_file": getattr(client, "last_file", None)
                if backend.name == "replay"
                else None,
            },
        )
        conversation.append(f"## user ({folder})\n\n{text}\n\n## model\n\n{answer}\n")
        rec.write("conversation.md", "\n".join(conversation))
        return r

    def feedback_prompt(problems: list[str], attempt: int, schema: dict) -> str:
        body = "\n".join(
            p if p.lstrip().startswith("-") or "\n" in p else f"- {p}" for p in problems
        )
        return render_template(
            "feedback",
            {
                "round": attempt,
                "rounds_left": rounds - attempt,
                "problems": body,
                "answer_schema": schema_text(schema),
            },
            prompt_dir,
        )

    # 1. DESCRIBE: both images -> task sentence and ordered sub-tasks
    description: TaskDescription | None = None
    text = render_template(
        "describe",
        {"environment": environment, "answer_schema": schema_text(DESCRIBE_SCHEMA)},
        prompt_dir,
    )
    for attempt in range(1, rounds + 1):
        imgs = images if attempt == 1 else ()
        r = ask(text, "describe", attempt, DESCRIBE_SCHEMA, "task_description", imgs)
        try:
            description = parse_describe(r.answer)
        except AnswerError as err:
            r.problems = err.problems
            rec.write(f"{r.folder}/problems.md", "\n".join(f"- {p}" for p in err.problems) + "\n")
            say(f"describe {attempt}/{rounds}: unusable answer: {err.problems[0]}")
            text = feedback_prompt(err.problems, attempt, DESCRIBE_SCHEMA)
            continue
        rec.write(f"{r.folder}/description.json", description.to_json())
        r.passed = True
        say(f"describe: {description.task} ({len(description.subtasks)} sub-tasks)")
        break

    best: RoundRecord | None = None
    if description is not None:
        # 2. PROGRAMS, then 3. FEEDBACK rounds
        text = render_template(
            "program",
            {
                "task": description.task,
                "subtasks": format_subtasks(description),
                "environment": environment,
                "mode": mode,
                "inputs": format_inputs(inputs),
                "constants": format_constants(constants),
                "dsl_reference": dsl_reference,
                "answer_schema": schema_text(PROGRAMS_SCHEMA),
            },
            prompt_dir,
        )
        for rnd in range(1, rounds + 1):
            step = "program" if rnd == 1 else "feedback"
            r = ask(text, step, rnd, PROGRAMS_SCHEMA, "reward_programs")
            _judge_round(r, description, check_spec, inputs, constants, verifier, rec)
            if best is None or r.score >= best.score:
                best = r
            if r.passed:
                say(f"round {rnd}/{rounds}: verified")
                break
            say(f"round {rnd}/{rounds}: {_one_line(r)}")
            text = feedback_prompt(r.problems, rnd, PROGRAMS_SCHEMA)

    final = getattr(verifier, "final", None)
    if best is not None and best.passed and callable(final):  # accept on held-out rollouts only
        best.verdict = final(best.spec)
        best.passed = bool(best.verdict.passed)
        say(f"held-out verification: {'passed' if best.passed else 'FAILED'}")
    result = GenerationResult(
        task_id=task.id,
        mode=mode,
        backend=backend.name,
        model=backend.model,
        description=description,
        records=records,
        best=best,
        run_dir=rec.root,
        calls=client.calls,
        cache_hits=client.hits,
    )
    if best is not None and best.spec is not None:
        rec.write("spec.py", _spec_text(best.spec))
        vj = _verdict_json(best.verdict) if best.verdict is not None else None
        if vj is not None:
            rec.write("verdict.json", vj)
    rec.write(
        "generation.json",
        {
            "task": task.id,
            "mode": mode,
            "backend": backend.name,
            "model": backend.model,
            "settings": backend.settings,
            "passed": result.passed,
            "best_round": best.round if best is not None else None,
            "best_folder": best.folder if best is not None else None,
            "calls": result.calls,
            "cache_hits": result.cache_hits,
            "labels": result.labels,
            "rounds": [
                {
                    "folder": r.folder,
                    "step": r.step,
                    "round": r.round,
                    "passed": r.passed,
                    "cached": r.cached,
                    "problems": r.problems,
                }
                for r in records
            ],
        },
    )
    return result


def _compile_problem(errors: list[str]) -> str:
    return "The DSL compiler refused these programs:\n" + "\n".join(f"- {e}" for e in errors)


def _one_line(r: RoundRecord) -> str:
    if r.spec is None:
        return f"unusable answer: {r.problems[0] if r.problems else '?'}"
    if r.compile_errors:
        return f"{len(r.compile_errors)} compile error(s), first: {r.compile_errors[0]}"
    subs = getattr(r.verdict, "subtasks", None) or []
    failed = [getattr(s, "name", "?") for s in subs if not getattr(s, "passed", False)]
    return "verification failed" + (f" for {', '.join(failed)}" if failed else "")


def _judge_round(r, description, check_spec, inputs, constants, verifier, rec) -> None:
    """Parse, compile-check and verify one program answer; fill `r` and write its records."""
    from car_jax.dsl import DSLCompileError

    try:
        r.spec = parse_programs(r.answer, description.task)
    except AnswerError as err:
        r.problems = err.problems
        rec.write(f"{r.folder}/problems.md", "\n".join(f"- {p}" for p in r.problems) + "\n")
        return
    rec.write(f"{r.folder}/spec.py", _spec_text(r.spec))
    try:
        errors = check_spec(r.spec, inputs, constants)
    except DSLCompileError as err:
        errors = list(err.errors)
    if errors:
        r.compile_errors = [str(e) for e in errors]
        r.problems = [_compile_problem(r.compile_errors)]
        rec.write(f"{r.folder}/compile_errors.txt", "\n".join(r.compile_errors) + "\n")
        rec.write(f"{r.folder}/problems.md", "\n".join(r.problems) + "\n")
        return
    try:
        verdict = verifier(r.spec)
    except DSLCompileError as err:
        r.compile_errors = [str(e) for e in err.errors]
        r.problems = [_compile_problem(r.compile_errors)]
        rec.write(f"{r.folder}/compile_errors.txt", "\n".join(r.compile_errors) + "\n")
        rec.write(f"{r.folder}/problems.md", "\n".join(r.problems) + "\n")
        return
    except UserError:
        raise  # bad rollout settings etc.: the user's to fix, not the model's
    except Exception as err:
        # A program that compiles but breaks evaluation must not end the run: tell the model.
        rec.write(f"{r.folder}/verifier_error.txt", traceback.format_exc())
        r.problems = [f"evaluating the programs failed: {type(err).__name__}: {err}"]
        rec.write(f"{r.folder}/problems.md", "\n".join(f"- {p}" for p in r.problems) + "\n")
        return
    r.verdict = verdict
    r.passed = bool(getattr(verdict, "passed", False))
    vj = _verdict_json(verdict)
    if vj is not None:
        rec.write(f"{r.folder}/verdict.json", vj)
    md = getattr(verdict, "to_markdown", None)
    if callable(md):
        rec.write(f"{r.folder}/verdict.md", md())
    if not r.passed:
        r.problems = [_feedback_text(verdict)]
        rec.write(f"{r.folder}/problems.md", r.problems[0] + "\n")
