"""The run folder of a generation: every prompt, answer, parsed spec and verdict, as it happens.

Layout (`generate --out DIR`): `initial.png`, `goal.png`, one folder per model turn
(`01-describe/`, `02-program/`, `03-feedback/`, ...), `conversation.md`, and at the end the
final `spec.py`, `verdict.json` and `generation.json` (see docs/vlm.md).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from car_jax.errors import UserError


class RunFolder:
    """Writes files under `root` (nothing at all when `root` is None)."""

    def __init__(self, root: Path | None):
        self.root = root
        if root is not None:
            try:
                root.mkdir(parents=True, exist_ok=True)
            except OSError as err:
                raise UserError(f"cannot create run folder {str(root)!r}: {err}") from None

    def write(self, rel: str, data: str | bytes | dict | list) -> None:
        """Write `data` (text, bytes, or JSON for a dict/list) to `root/rel`."""
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

    def write_problems(self, folder: str, problems: list[str]) -> None:
        """`folder/problems.md`: what goes back to the model, one bullet per problem."""
        body = "\n".join(
            p if p.lstrip().startswith("-") or "\n" in p else f"- {p}" for p in problems
        )
        self.write(f"{folder}/problems.md", body + "\n")

    def write_verdict(self, folder: str, verdict: Any) -> None:
        """`folder/verdict.json` and `folder/verdict.md` of a verdict (what it can render)."""
        prefix = f"{folder}/" if folder else ""
        vj = verdict_json(verdict)
        if vj is not None:
            self.write(f"{prefix}verdict.json", vj)
        md = getattr(verdict, "to_markdown", None)
        if callable(md):
            self.write(f"{prefix}verdict.md", md())


def verdict_json(verdict: Any) -> str | None:
    """A verdict's JSON text (None when it has no `to_json`)."""
    to_json = getattr(verdict, "to_json", None)
    if to_json is None:
        return None
    out = to_json()
    return out if isinstance(out, str) else json.dumps(out, indent=2, default=str)


def spec_text(spec: Any) -> str:
    """A spec file's text; a spec the DSL refuses to render keeps its program sources anyway."""
    try:
        return spec.to_source()
    except Exception:
        body = "\n\n".join(p.source for p in spec.programs)
        return f'"""{spec.task}"""\n\n{body}\n'


def generation_summary(result: Any, backend: Any) -> dict[str, Any]:
    """The `generation.json` of a finished GenerationResult."""
    best = result.best
    return {
        "task": result.task_id,
        "mode": result.mode,
        "backend": backend.name,
        "model": backend.model,
        "settings": backend.settings,
        "passed": result.passed,
        "final_error": result.final_error,
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
                "finish": r.finish,
                "blocked": r.blocked,
                "coverage": r.coverage.to_json() if r.coverage is not None else None,
                "problems": r.problems,
            }
            for r in result.records
        ],
    }
