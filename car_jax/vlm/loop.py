"""Stage 1: images -> task and sub-tasks -> DSL programs -> compile check -> verify -> feedback.

`generate_spec` runs the steps for one task: `_describe` (both images -> the task and its
ordered sub-tasks), then `_program_rounds` (programs, judged by `_judge_round`: parsed, matched
to the sub-tasks, compile-checked, verified; what failed goes back as feedback). The
conversation itself is `dialogue.Dialogue`, the run folder `record.RunFolder`, the images
`images.task_images`. `car_jax.verify.Verifier` is the stage-2 verifier it calls.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from car_jax.errors import UserError
from car_jax.vlm.base import VLMBackend
from car_jax.vlm.cache import CachedBackend, ResponseCache
from car_jax.vlm.coverage import Coverage, fit_to_subtasks
from car_jax.vlm.dialogue import Dialogue
from car_jax.vlm.images import png_bytes, task_images
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
from car_jax.vlm.record import RunFolder, generation_summary, spec_text

__all__ = [
    "GenerationResult",
    "RoundRecord",
    "generate_spec",
    "png_bytes",
    "task_images",
]

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
    finish: str = ""  # the backend's finish reason ("STOP", "MAX_TOKENS", "SAFETY", "length")
    blocked: str = ""  # why the request was blocked, if it was
    coverage: Coverage | None = None  # how the programs matched the sub-tasks (program rounds)
    cut_off: str = ""  # why the answer is incomplete (blocked, token limit), "" when it is not

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
    final_verdict: Any = None  # the best spec's verdict from the final check (see generate_spec)
    final_error: str | None = None  # why the final check could not run, if it could not

    @property
    def passed(self) -> bool:
        """True when the best spec compiled and passed the final verification."""
        if self.final_error:
            return False
        if self.final_verdict is not None:
            return bool(getattr(self.final_verdict, "passed", False))
        return self.best is not None and self.best.passed

    @property
    def spec(self) -> Any:
        """The verified spec, else the best failing one (None when no answer parsed)."""
        return None if self.best is None else self.best.spec

    @property
    def verdict(self) -> Any:
        """The final verdict of the best spec (None when nothing reached verification)."""
        if self.final_verdict is not None:
            return self.final_verdict
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
        for r in rounds:
            if r.coverage is not None and r.coverage.kind == "merged":
                lines.append(f"{r.folder}: {r.coverage.sentence()}")
        lines += [f"{r.folder}: {r.cut_off}" for r in self.records if r.cut_off]
        if self.final_error:
            lines.append(f"final verification failed: {self.final_error}")
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
        compile (see `car_jax.verify.Verifier`). When it has a `.final` method, that gives the reported
        verdict of the best spec (e.g. on held-out rollouts).
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
    if rounds < 1:
        raise UserError(f"--rounds must be at least 1, got {rounds}")
    say = progress or (lambda _msg: None)
    folder = RunFolder(Path(run_dir) if run_dir is not None else None)
    client = CachedBackend(backend, cache)
    dialogue = Dialogue(
        client, folder, task_id=task.id, mode=mode, rounds=rounds, prompt_dir=prompt_dir
    )
    environment = task.describe() or "(no description given)"
    if images is None:
        images = task_images(task, seed)
    folder.write("initial.png", images[0])
    folder.write("goal.png", images[1])

    records: list[RoundRecord] = []
    description = _describe(dialogue, records, environment, images, say)
    best = None
    if description is not None:
        best = _program_rounds(
            dialogue, records, task, mode, description, environment, verifier, dsl_reference, say
        )

    # FINAL VERDICT: the one place where the run's verdict is decided. A spec that passed its
    # rounds is accepted only if the verifier's `final` check (held-out rollouts the model never
    # saw in feedback; the verifier itself when it has no `final`) passes too.
    final_verdict, final_error = None, None
    if best is not None and best.passed:
        try:
            final_verdict = getattr(verifier, "final", verifier)(best.spec)
            held = "passed" if getattr(final_verdict, "passed", False) else "FAILED"
            say(f"held-out verification: {held}")
        except UserError:
            raise
        except Exception as err:  # keep every round's records; the run is just not verified
            folder.write("final_verifier_error.txt", traceback.format_exc())
            final_error = f"{type(err).__name__}: {err}"

    result = GenerationResult(
        task_id=task.id,
        mode=mode,
        backend=backend.name,
        model=backend.model,
        description=description,
        records=records,
        best=best,
        run_dir=folder.root,
        calls=client.calls,
        cache_hits=client.hits,
        final_verdict=final_verdict,
        final_error=final_error,
    )
    if best is not None and best.spec is not None:
        folder.write("spec.py", spec_text(best.spec))
        if result.verdict is not None:
            folder.write_verdict("", result.verdict)
    folder.write("generation.json", generation_summary(result, backend))
    return result


def _record(
    dialogue: Dialogue, records: list[RoundRecord], step: str, rnd: int, **ask
) -> RoundRecord:
    """Ask one turn and keep its RoundRecord."""
    name, answer = dialogue.ask(step=step, round=rnd, **ask)
    r = RoundRecord(
        step,
        rnd,
        answer.text,
        cached=dialogue.client.last_was_hit,
        label=dialogue.last_label,
        folder=name,
        finish=answer.finish,
        blocked=answer.blocked,
        cut_off=answer.stop_reason,
    )
    records.append(r)
    return r


def _describe(
    dialogue: Dialogue,
    records: list[RoundRecord],
    environment: str,
    images: tuple[bytes, bytes],
    say: Callable[[str], None],
) -> TaskDescription | None:
    """Step 1: both images -> the task sentence and its ordered sub-tasks (None if never parsed)."""
    text = render_template(
        "describe",
        {"environment": environment, "answer_schema": schema_text(DESCRIBE_SCHEMA)},
        dialogue.prompt_dir,
    )
    rounds = dialogue.rounds
    for attempt in range(1, rounds + 1):
        imgs = images if attempt == 1 else ()
        r = _record(
            dialogue, records, "describe", attempt, text=text, schema=DESCRIBE_SCHEMA,
            schema_name="task_description", images=imgs,
        )  # fmt: skip
        try:
            description = parse_describe(r.answer, r.cut_off)
        except AnswerError as err:
            r.problems = err.problems
            dialogue.folder.write_problems(r.folder, r.problems)
            say(f"describe {attempt}/{rounds}: unusable answer: {err.problems[0]}")
            text = dialogue.feedback_prompt(err.problems, attempt, DESCRIBE_SCHEMA)
            continue
        dialogue.folder.write(f"{r.folder}/description.json", description.to_json())
        r.passed = True
        say(f"describe: {description.task} ({len(description.subtasks)} sub-tasks)")
        return description
    return None


def _program_rounds(
    dialogue: Dialogue,
    records: list[RoundRecord],
    task: Any,
    mode: str,
    description: TaskDescription,
    environment: str,
    verifier: Verifier,
    dsl_reference: str | None,
    say: Callable[[str], None],
) -> RoundRecord | None:
    """Steps 2 and 3: programs, then feedback rounds until they verify; the best round."""
    if dsl_reference is None:
        from car_jax.dsl import reference_markdown

        dsl_reference = reference_markdown()
    inputs, constants = task.inputs(mode), task.constants(mode)
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
        dialogue.prompt_dir,
    )
    best: RoundRecord | None = None
    rounds = dialogue.rounds
    for rnd in range(1, rounds + 1):
        step = "program" if rnd == 1 else "feedback"
        r = _record(
            dialogue, records, step, rnd, text=text, schema=PROGRAMS_SCHEMA,
            schema_name="reward_programs",
        )  # fmt: skip
        previous = next((p for p in reversed(records[:-1]) if p.spec is not None), None)
        _judge_round(r, description, previous, inputs, constants, verifier, dialogue.folder)
        if best is None or r.score >= best.score:
            best = r
        if r.coverage is not None and r.coverage.kind == "merged":
            say(f"round {rnd}/{rounds}: {r.coverage.sentence()}")
        if r.passed:
            say(f"round {rnd}/{rounds}: verified")
            break
        say(f"round {rnd}/{rounds}: {_one_line(r)}")
        text = dialogue.feedback_prompt(r.problems, rnd, PROGRAMS_SCHEMA)
    return best


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


def _judge_round(
    r: RoundRecord,
    description: TaskDescription,
    previous: RoundRecord | None,
    inputs: Any,
    constants: Any,
    verifier: Verifier,
    folder: RunFolder,
) -> None:
    """Parse, match to the sub-tasks, compile-check and verify one program answer; fill `r`."""
    from car_jax.dsl import DSLCompileError
    from car_jax.spec import check_spec

    def refuse(problems: list[str]) -> None:
        r.problems = problems
        folder.write_problems(r.folder, problems)

    try:
        answered = parse_programs(r.answer, description.task, r.cut_off)
        r.coverage = fit_to_subtasks(
            answered,
            [name for name, _ in description.subtasks],
            previous.spec if previous is not None else None,
            previous.folder if previous is not None else None,
        )
    except AnswerError as err:
        return refuse(err.problems)
    r.spec = r.coverage.spec
    folder.write(f"{r.folder}/coverage.json", r.coverage.to_json())
    folder.write(f"{r.folder}/spec.py", spec_text(r.spec))
    try:
        errors = check_spec(r.spec, inputs, constants)
    except DSLCompileError as err:
        errors = list(err.errors)
    if not errors:
        try:
            verdict = verifier(r.spec)
        except DSLCompileError as err:
            errors = list(err.errors)
        except UserError:
            raise  # bad rollout settings etc.: the user's to fix, not the model's
        except Exception as err:
            # A program that compiles but breaks evaluation must not end the run: tell the model.
            folder.write(f"{r.folder}/verifier_error.txt", traceback.format_exc())
            return refuse([f"evaluating the programs failed: {type(err).__name__}: {err}"])
    if errors:
        r.compile_errors = [str(e) for e in errors]
        folder.write(f"{r.folder}/compile_errors.txt", "\n".join(r.compile_errors) + "\n")
        return refuse([_compile_problem(r.compile_errors)])
    r.verdict = verdict
    r.passed = bool(getattr(verdict, "passed", False))
    folder.write_verdict(r.folder, verdict)
    if not r.passed:
        refuse([_feedback_text(verdict)])


def _feedback_text(verdict: Any) -> str:
    fb = getattr(verdict, "feedback", None)
    return fb() if callable(fb) else str(fb or "verification failed")
