"""Prompt templates (prompts/*.md), the answer JSON schemas, and parsing of the answers.

Templates are markdown files filled with `string.Template`: placeholders are `${name}` (a
literal dollar sign is `$$`), so JSON and code braces in a template need no escaping. A
template that names a placeholder the step does not provide is refused with the list of the
names it may use. `prompt_dir` (or `--prompt-dir`) replaces the built-in folder, file by file:
a template missing there is taken from the built-in folder.
"""

from __future__ import annotations

import json
import re
import string
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from car_jax.errors import UserError

PROMPTS_DIR = Path(__file__).resolve().parents[2] / "prompts"
TEMPLATES = ("describe", "program", "feedback", "search", "reflect")

# What each template may use; see prompts/README.md for their meaning.
PLACEHOLDERS: dict[str, tuple[str, ...]] = {
    "describe": ("environment", "answer_schema"),
    "program": (
        "task",
        "subtasks",
        "environment",
        "mode",
        "inputs",
        "constants",
        "dsl_reference",
        "answer_schema",
    ),
    "feedback": ("round", "rounds_left", "problems", "answer_schema"),
    # car-jax search (car_jax/search.py): K candidate specs per request, then reflection.
    "search": (
        "candidates",
        "environment",
        "mode",
        "inputs",
        "constants",
        "dsl_reference",
        "answer_schema",
    ),  # fmt: skip
    "reflect": ("iteration", "iterations_left", "summary", "candidates", "answer_schema"),
}

_SNAKE = re.compile(r"^[a-z_][a-z0-9_]*$")
_DEF = re.compile(r"^\s*def\s+([A-Za-z_]\w*)\s*\(", re.MULTILINE)

DESCRIBE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "task": {"type": "string", "description": "One sentence: the whole task."},
        "subtasks": {
            "type": "array",
            "minItems": 1,
            "description": "Ordered sub-tasks; the last one is the whole task.",
            "items": {
                "type": "object",
                "properties": {
                    "name": {"type": "string", "description": "snake_case identifier"},
                    "description": {"type": "string"},
                },
                "required": ["name", "description"],
            },
        },
    },
    "required": ["task", "subtasks"],
}

PROGRAMS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "programs": {
            "type": "array",
            "minItems": 1,
            "description": "One program per sub-task, in order; the last one is the whole task.",
            "items": {
                "type": "object",
                "properties": {
                    "name": {"type": "string", "description": "snake_case; the function name"},
                    "description": {"type": "string"},
                    "source": {
                        "type": "string",
                        "description": "one DSL function `def name(obs):`",
                    },
                },
                "required": ["name", "description", "source"],
            },
        }
    },
    "required": ["programs"],
}


class AnswerError(Exception):
    """An answer the loop cannot use; `problems` are sentences the VLM is told next round."""

    def __init__(self, problems: list[str]):
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class TaskDescription:
    """The describe step's answer: the task sentence and ordered (name, description) sub-tasks."""

    task: str
    subtasks: tuple[tuple[str, str], ...]

    def to_json(self) -> dict[str, Any]:
        """As the answer JSON."""
        return {
            "task": self.task,
            "subtasks": [{"name": n, "description": d} for n, d in self.subtasks],
        }


# --- templates -------------------------------------------------------------------------------
def template_path(name: str, prompt_dir: str | Path | None = None) -> Path:
    """The file of template `name`: `prompt_dir/<name>.md` when it exists, else the built-in."""
    if name not in TEMPLATES:
        raise UserError(f"unknown prompt template {name!r}; templates: {', '.join(TEMPLATES)}")
    if prompt_dir is not None:
        d = Path(prompt_dir)
        if not d.is_dir():
            raise UserError(f"prompt folder {str(d)!r} does not exist")
        if (d / f"{name}.md").is_file():
            return d / f"{name}.md"
    return PROMPTS_DIR / f"{name}.md"


def render_template(
    name: str, values: Mapping[str, Any], prompt_dir: str | Path | None = None
) -> str:
    """Fill template `name` with `values`; a placeholder it may not use is a UserError."""
    path = template_path(name, prompt_dir)
    try:
        text = path.read_text()
    except OSError as err:
        raise UserError(f"cannot read prompt template {str(path)!r}: {err}") from None
    tpl = string.Template(text)
    allowed = PLACEHOLDERS[name]
    used = {m.group("named") or m.group("braced") for m in tpl.pattern.finditer(text)} - {None}
    unknown = sorted(used - set(allowed))
    if unknown:
        raise UserError(
            f"prompt template {str(path)!r} uses ${{{unknown[0]}}}, which the {name} step does "
            f"not provide; it may use: {', '.join('${' + a + '}' for a in allowed)}"
        )
    try:
        return tpl.substitute({k: str(v) for k, v in values.items()})
    except ValueError as err:
        raise UserError(
            f"prompt template {str(path)!r} is malformed: {err} (write $$ for $)"
        ) from None


# --- prompt pieces ---------------------------------------------------------------------------
def format_inputs(inputs: Mapping[str, Any]) -> str:
    """A markdown table of the program inputs: name, shape, dtype, meaning, range."""
    lines = ["| input | shape | dtype | meaning |", "|---|---|---|---|"]
    for name, field in inputs.items():
        shape, dtype, doc = field[0], field[1], field[2]
        low = getattr(field, "low", None)
        high = getattr(field, "high", None)
        rng = ""
        if low is not None or high is not None:
            rng = f" (values in [{_num(low)}, {_num(high)}])"
        lines.append(f"| `obs.{name}` | {tuple(shape)} | {dtype} | {doc}{rng} |")
    return "\n".join(lines)


def _num(x: Any) -> str:
    if x is None:
        return "?"
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def format_constants(constants: Mapping[str, Any]) -> str:
    """The named constants as a Python-like block, one `NAME = value` a line."""
    if not constants:
        return "(this task defines no named constants)"
    body = "\n".join(f"{k} = {v!r}" for k, v in constants.items())
    return f"```python\n{body}\n```"


def format_subtasks(description: TaskDescription) -> str:
    """The ordered sub-tasks as a numbered markdown list."""
    return "\n".join(f"{i}. `{n}`: {d}" for i, (n, d) in enumerate(description.subtasks, start=1))


def schema_text(schema: Mapping[str, Any]) -> str:
    """A JSON schema as a fenced block for a prompt."""
    return "```json\n" + json.dumps(schema, indent=2) + "\n```"


# --- answers ---------------------------------------------------------------------------------
def parse_json_answer(text: str, cut_off: str = "") -> Any:
    """The JSON value in an answer: the whole text, a ```json fence, or the outermost {...}.

    `cut_off` says why the answer is incomplete when the backend told so (e.g. "the answer was
    cut off by the output token limit (finish reason MAX_TOKENS)"); a JSON error then says that
    rather than only where the JSON broke.
    """
    if not isinstance(text, str) or not text.strip():
        why = f" ({cut_off})" if cut_off else ""
        raise AnswerError([f"the answer was empty{why}; answer with one JSON object"])
    # (where the candidate starts in `text`, what the candidate is called, the candidate)
    candidates = [(len(text) - len(text.lstrip()), "the answer", text.strip())]
    fence = re.search(r"```(?:json)?[ \t]*\n(.*?)(?:```|\Z)", text, re.DOTALL)
    if fence:
        body = fence.group(1)
        start = fence.start(1) + len(body) - len(body.lstrip())
        candidates.append((start, "the ```json block", body.strip()))
    first, last = text.find("{"), text.rfind("}")
    if 0 <= first < last:
        candidates.append((first, "the {...} part", text[first : last + 1]))
    for _, _, c in candidates:
        try:
            return json.loads(c)
        except json.JSONDecodeError:
            pass
    # Report the most specific candidate: the fenced block, else the {...} span, else the text.
    start, where, body = candidates[1] if fence else candidates[-1]
    err = _decode_error(body)
    pos = start + err.pos
    line = text.count("\n", 0, pos) + 1
    col = pos - (text.rfind("\n", 0, pos) + 1) + 1
    near = text[max(0, pos - 40) : pos + 20]
    msg = err.msg.removesuffix(" at")  # "Invalid control character at"
    place = f"{msg} at line {line}, column {col} of the answer ({where})"
    if cut_off:
        return _raise(
            f"{cut_off} after {len(text)} characters, so its JSON is incomplete ({place}). "
            "Answer more briefly: shorter descriptions and programs, one JSON object only"
        )
    if err.pos >= len(body.rstrip()) - 1 or err.msg.startswith("Unterminated string"):
        return _raise(
            f"the JSON ends before it is complete ({place}); was the answer cut off? Answer "
            "with one complete JSON object and nothing else"
        )
    hint = ""
    if "control character" in err.msg:
        hint = " (a line break or tab inside a JSON string must be written as \\n or \\t)"
    return _raise(
        f"the answer is not valid JSON: {place}{hint}, near {near!r}. Answer with one JSON "
        "object and nothing else"
    )


def _decode_error(text: str) -> json.JSONDecodeError:
    try:
        json.loads(text)
    except json.JSONDecodeError as err:
        return err
    raise AssertionError("text parsed")  # callers pass text that failed to parse


def _raise(problem: str):
    raise AnswerError([problem])


def _need_str(obj: Mapping[str, Any], key: str, where: str, problems: list[str]) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value.strip():
        problems.append(f"{where}: `{key}` must be a non-empty string, got {_short(value)}")
        return ""
    return value.strip()


def _short(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def parse_describe(text: str, cut_off: str = "") -> TaskDescription:
    """The describe answer -> TaskDescription; every problem found is listed in AnswerError."""
    data = parse_json_answer(text, cut_off)
    if not isinstance(data, dict):
        raise AnswerError([f"the answer must be a JSON object, got {type(data).__name__}"])
    problems: list[str] = []
    task = _need_str(data, "task", "the answer", problems)
    subs = data.get("subtasks")
    if not isinstance(subs, list) or not subs:
        problems.append(
            "the answer names no sub-tasks: `subtasks` must be a non-empty list of "
            '{"name": snake_case, "description": str}, in order, the last being the whole task'
        )
        subs = []
    pairs = []
    for i, s in enumerate(subs, start=1):
        where = f"sub-task {i}"
        if not isinstance(s, dict):
            problems.append(f"{where} must be an object with name and description, got {_short(s)}")
            continue
        name = _need_str(s, "name", where, problems)
        desc = _need_str(s, "description", where, problems)
        if name and not _SNAKE.match(name):
            problems.append(f"{where}: name {name!r} is not snake_case (lowercase, digits, _)")
        pairs.append((name, desc))
    names = [n for n, _ in pairs if n]
    dups = sorted({n for n in names if names.count(n) > 1})
    if dups:
        problems.append(f"sub-task names must be unique; repeated: {', '.join(dups)}")
    if problems:
        raise AnswerError(problems)
    return TaskDescription(task=task, subtasks=tuple(pairs))


def parse_programs(text: str, task: str, cut_off: str = ""):
    """The program answer -> RewardSpec (not yet compiled); problems listed in AnswerError.

    The programs are those the answer holds; whether they cover the described sub-tasks is
    `car_jax.vlm.coverage.fit_to_subtasks`'s question.
    """
    from car_jax.dsl import DSLCompileError
    from car_jax.spec import Program, RewardSpec

    data = parse_json_answer(text, cut_off)
    if not isinstance(data, dict):
        raise AnswerError([f"the answer must be a JSON object, got {type(data).__name__}"])
    items = data.get("programs")
    if not isinstance(items, list) or not items:
        raise AnswerError(
            [
                "the answer holds no programs: `programs` must be a non-empty list of "
                '{"name", "description", "source"}, one per sub-task, in order'
            ]
        )
    problems: list[str] = []
    programs = []
    for i, p in enumerate(items, start=1):
        where = f"program {i}"
        if not isinstance(p, dict):
            problems.append(f"{where} must be an object with name, description, source")
            continue
        name = _need_str(p, "name", where, problems)
        desc = p.get("description") if isinstance(p.get("description"), str) else ""
        desc = desc.strip()  # optional: the source's docstring is the description
        source = p.get("source")
        if not isinstance(source, str) or not source.strip():
            problems.append(
                f"{where} ({name or '?'}): `source` must hold one `def {name or 'name'}(obs):`"
            )
            continue
        defs = _DEF.findall(source)
        if not defs:
            problems.append(
                f"{where} ({name or '?'}): `source` defines no function `def {name or 'name'}(obs):`"
            )
            continue
        # The source is what the DSL compiles: its function name and docstring win over the
        # JSON fields (a source the parser refuses is kept as is; the compile check reports it).
        try:
            prog = Program.from_source(source, origin=defs[0])
        except DSLCompileError:
            prog = Program(name=defs[0], description=desc or defs[0], source=source)
        if not prog.description:
            prog = Program(name=prog.name, description=desc or prog.name, source=prog.source)
        programs.append(prog)
    names = [p.name for p in programs]
    dups = sorted({n for n in names if names.count(n) > 1})
    if dups:
        problems.append(f"program names must be unique; repeated: {', '.join(dups)}")
    if problems:
        raise AnswerError(problems)
    try:
        return RewardSpec(task=task, programs=tuple(programs))
    except (UserError, ValueError, TypeError) as err:
        raise AnswerError([f"the programs do not form a valid spec: {err}"]) from None


HAND_WRITTEN = "Reference programs written by hand, not model output."


def spec_answers(spec) -> tuple[dict[str, Any], dict[str, Any]]:
    """The (describe, programs) answer JSON that a RewardSpec corresponds to (for replay)."""
    # The reference specs label themselves as hand-written in their docstring; that label
    # belongs to the file (the replay backend reports it), not to the task sentence.
    task = spec.task.replace(f"({HAND_WRITTEN})", "").replace(HAND_WRITTEN, "")
    describe = {
        "task": " ".join(task.split()),
        "subtasks": [{"name": p.name, "description": p.description} for p in spec.programs],
    }
    programs = {
        "programs": [
            {"name": p.name, "description": p.description, "source": p.source}
            for p in spec.programs
        ]
    }
    return describe, programs
