"""The offline backend: answers read from files, keyed by task, mode, step and round.

Two kinds of source, searched in order (user folders first, then `prompts/reference/`):

- a reference spec `<dir>/<TaskId>.<mode>.py` (or `<TaskId>.py`), a RewardSpec file of
  hand-written programs: the describe answer is its task and program names and descriptions,
  every program round answers with its programs. Labelled "hand-written reference programs, not
  model output".
- a replay script `<dir>/<TaskId>.<mode>/` holding `describe.json` (optional: else taken from
  the reference spec) and `round1.json`, `round2.json`, ...; round n uses the highest
  `round<k>.json` with k <= n. Each file is `{"label": "...", "answer": <JSON object or raw
  text>}`, optionally with `"finish"` (e.g. "MAX_TOKENS") and `"blocked"` (a block reason);
  raw text is replayed verbatim, so a script can hold broken answers too.
- for `car-jax search` (steps "search" and "reflect"), `<dir>/<TaskId>.<mode>/candidates<k>.json`:
  iteration n uses the highest k <= n; the answer holds `{"candidates": [...]}` and the first K
  (the request schema's `maxItems`) are served. Without one, the reference spec is the only
  candidate.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from car_jax.errors import UserError
from car_jax.vlm.base import Answer, VLMRequest
from car_jax.vlm.prompts import PROMPTS_DIR, spec_answers

REFERENCE_DIR = PROMPTS_DIR / "reference"
SCRIPTS_DIR = PROMPTS_DIR / "replay"
REFERENCE_LABEL = "hand-written reference programs, not model output"


class ReplayBackend:
    """Answers from reference specs and replay scripts instead of a model (no network, no cost)."""

    name = "replay"
    model = "replay"
    cacheable = False

    def __init__(self, sources: list[str | Path] | None = None, reference_dir: Path | None = None):
        self.sources = [Path(s) for s in (sources or [])]
        for s in self.sources:
            if not s.is_dir():
                raise UserError(f"replay: folder {str(s)!r} does not exist")
        self.reference_dir = Path(reference_dir) if reference_dir is not None else REFERENCE_DIR
        self.settings: dict[str, Any] = {"sources": [str(s) for s in self.sources]}
        self.last_label: str | None = None
        self.last_file: str | None = None

    # --- lookup ----------------------------------------------------------------------------
    def _dirs(self) -> list[Path]:
        from car_jax.plugins import reference_dirs  # plugin tasks ship their reference specs

        return [*self.sources, self.reference_dir, *reference_dirs()]

    def _script_dir(self, task_id: str, mode: str) -> Path | None:
        for d in self.sources:
            if (d / f"{task_id}.{mode}").is_dir():
                return d / f"{task_id}.{mode}"
        return None

    def _reference_file(self, task_id: str, mode: str) -> Path | None:
        for d in self._dirs():
            for name in (f"{task_id}.{mode}.py", f"{task_id}.py"):
                if (d / name).is_file():
                    return d / name
        return None

    def _looked_in(self, task_id: str, mode: str) -> str:
        places = [str(d / f"{task_id}.{mode}") + "/" for d in self.sources]
        places += [str(d / f"{task_id}.{mode}.py") for d in self._dirs()]
        return ", ".join(places)

    def _reference_answer(self, request: VLMRequest) -> str:
        path = self._reference_file(request.task_id, request.mode)
        if path is None:
            raise UserError(
                f"replay: no answers for task {request.task_id!r} in {request.mode} mode; looked "
                f"in {self._looked_in(request.task_id, request.mode)}. Write a reference spec or "
                "a replay script there, or use --vlm gemini / --vlm openai"
            )
        from car_jax.spec import RewardSpec

        try:
            spec = RewardSpec.load(path)
        except Exception as err:  # a broken reference file is the user's to fix
            raise UserError(f"replay: cannot read reference spec {str(path)!r}: {err}") from None
        describe, programs = spec_answers(spec)
        self.last_label = REFERENCE_LABEL
        self.last_file = str(path)
        return json.dumps(describe if request.step == "describe" else programs, indent=2)

    def _script_answer(self, script: Path, request: VLMRequest) -> Answer | None:
        """A describe/program answer: `describe.json`, or the round's `round<k>.json`."""
        if request.step == "describe":
            path = script / "describe.json"
            if not path.is_file():
                return None
        else:
            found, usable = _numbered(script, "round", request.round)
            if not usable:
                raise UserError(
                    f"replay: script {str(script)!r} has no round1.json (rounds found: "
                    f"{', '.join(p.name for p in found) or 'none'})"
                )
            path = usable[-1]
        entry = self._read_entry(path)
        return _answer(entry, entry["answer"])

    def _candidates_answer(self, script: Path | None, request: VLMRequest) -> Answer:
        """A search/reflect answer: the first K candidates of `candidates<k>.json`."""
        _, usable = _numbered(script, "candidates", request.round)
        k = (request.schema or {}).get("properties", {}).get("candidates", {}).get("maxItems")
        if not usable:  # the reference spec, as the one candidate
            programs = json.loads(self._reference_answer(request))
            answer = {"candidates": [{"task": "", "idea": "the reference spec", **programs}]}
            return Answer(json.dumps(answer, indent=2), "STOP")
        entry = self._read_entry(usable[-1])
        answer = entry["answer"]
        if isinstance(answer, dict) and isinstance(answer.get("candidates"), list) and k:
            answer = {**answer, "candidates": answer["candidates"][: int(k)]}
        return _answer(entry, answer)

    def _read_entry(self, path: Path) -> dict:
        """A script file's `{"label": ..., "answer": ...}`; remembers its label and path."""
        try:
            entry = json.loads(path.read_text())
        except (OSError, ValueError) as err:
            raise UserError(f"replay: cannot read script file {str(path)!r}: {err}") from None
        if not isinstance(entry, dict) or "answer" not in entry:
            raise UserError(
                f'replay: script file {str(path)!r} must be {{"label": ..., "answer": ...}}'
            )
        self.last_label = str(entry.get("label") or f"replay script {path}")
        self.last_file = str(path)
        return entry

    def complete(self, request: VLMRequest) -> Answer:
        """The stored answer for (task, mode, step, round)."""
        script = self._script_dir(request.task_id, request.mode)
        if request.step in ("search", "reflect"):
            return self._candidates_answer(script, request)
        if script is not None:
            answer = self._script_answer(script, request)
            if answer is not None:
                return answer
        return Answer(self._reference_answer(request), "STOP")


def _numbered(script: Path | None, stem: str, round_: int) -> tuple[list[Path], list[Path]]:
    """A script's `<stem><k>.json` files by k, and those usable in round `round_` (k <= it)."""
    files = sorted(
        (int(m.group(1)), p)
        for p in (script.glob(f"{stem}*.json") if script is not None else ())
        if (m := re.fullmatch(rf"{stem}(\d+)\.json", p.name))
    )
    return [p for _, p in files], [p for k, p in files if k <= max(round_, 1)]


def _answer(entry: dict, answer: Any) -> Answer:
    """The Answer of a script entry: `answer` as text (JSON unless a string), finish, blocked."""
    text = answer if isinstance(answer, str) else json.dumps(answer, indent=2)
    return Answer(text, str(entry.get("finish", "STOP")), str(entry.get("blocked", "")))
