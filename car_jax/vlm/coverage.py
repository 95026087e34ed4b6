"""Do a program answer's programs cover the described sub-tasks, by name and number?

The describe step fixes the sub-tasks (names, order). A program answer must hold one program per
sub-task, named after it. A later (feedback) answer may hold only the programs it changes: those
replace the same-named programs of the last round that had a full set, and the rest are kept.
A program named after no sub-task (a renamed one) is refused, and the model is asked again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from car_jax.vlm.prompts import AnswerError


@dataclass(frozen=True)
class Coverage:
    """How one program answer became the round's spec.

    `kind`: "complete" (the answer held every sub-task's program) or "merged" (it held some; the
    others were kept from round `kept_from`). `from_answer` and `kept` are program names.
    """

    kind: str
    spec: Any  # RewardSpec, programs in sub-task order
    from_answer: tuple[str, ...]
    kept: tuple[str, ...] = ()
    kept_from: str | None = None  # folder of the round the kept programs come from
    reordered: bool = False

    def sentence(self) -> str:
        """One line for the terminal and the round's records."""
        if self.kind == "merged":
            return (
                f"partial answer ({', '.join(self.from_answer)}) merged into the programs of "
                f"{self.kept_from} (kept {', '.join(self.kept)})"
            )
        order = "; reordered to the sub-task order" if self.reordered else ""
        return f"complete answer: one program per sub-task{order}"

    def to_json(self) -> dict[str, Any]:
        """As written to the round's `coverage.json`."""
        return {
            "kind": self.kind,
            "from_answer": list(self.from_answer),
            "kept": list(self.kept),
            "kept_from": self.kept_from,
            "reordered": self.reordered,
            "sentence": self.sentence(),
        }


def fit_to_subtasks(
    spec: Any,
    subtasks: list[str],
    previous: Any = None,
    previous_folder: str | None = None,
) -> Coverage:
    """Match `spec`'s programs to the sub-task names; merge into `previous` when some are missing.

    Raises AnswerError (the answer is refused and the model asked again) when a program is named
    after no sub-task, or when programs are missing and there is no previous full set to keep
    them from.
    """
    by_name = {p.name: p for p in spec.programs}
    names = [p.name for p in spec.programs]
    unknown = [n for n in names if n not in subtasks]
    missing = [n for n in subtasks if n not in by_name]
    wanted = ", ".join(f"{i}. `{n}`" for i, n in enumerate(subtasks, start=1))
    if unknown:
        guess = ""
        if len(unknown) == 1 and len(missing) == 1:
            guess = f" (is `{unknown[0]}` the program for `{missing[0]}`? keep its name)"
        raise AnswerError(
            [
                f"program name(s) {', '.join(f'`{n}`' for n in unknown)} match no sub-task"
                f"{guess}: name each program after its sub-task, one program per sub-task: "
                f"{wanted}. This answer was refused, not merged"
            ]
        )
    if missing and previous is None:
        raise AnswerError(
            [
                f"the answer has {len(names)} program(s) for {len(subtasks)} sub-tasks; missing: "
                f"{', '.join(f'`{n}`' for n in missing)}. Give one program per sub-task: {wanted}"
            ]
        )
    if missing:
        kept_by_name = {p.name: p for p in previous.programs}
        programs = tuple(by_name.get(n) or kept_by_name[n] for n in subtasks)
        return Coverage(
            kind="merged",
            spec=type(spec)(task=spec.task, programs=programs),
            from_answer=tuple(n for n in subtasks if n in by_name),
            kept=tuple(missing),
            kept_from=previous_folder,
        )
    programs = tuple(by_name[n] for n in subtasks)
    return Coverage(
        kind="complete",
        spec=type(spec)(task=spec.task, programs=programs),
        from_answer=tuple(subtasks),
        reordered=names != list(subtasks),
    )
