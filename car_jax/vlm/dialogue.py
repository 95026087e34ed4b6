"""The conversation with the model: each user turn, the answer, and its records in the run folder.

An answer with no text (blocked, or empty) is never sent back as a model turn (the Gemini API
refuses an empty one with HTTP 400): the unanswered user turn is taken out of the history and
sent again, images included, in front of the next turn's text.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from car_jax.vlm.base import Answer, Message, VLMRequest, sha256_hex
from car_jax.vlm.cache import CachedBackend
from car_jax.vlm.prompts import render_template, schema_text
from car_jax.vlm.record import RunFolder

IMAGE_FILES = ("../initial.png", "../goal.png")


class Dialogue:
    """One generation's conversation: `ask` sends a user turn and returns the model's Answer."""

    def __init__(
        self,
        client: CachedBackend,
        folder: RunFolder,
        *,
        task_id: str,
        mode: str,
        rounds: int,
        prompt_dir: Any = None,
    ):
        self.client = client
        self.folder = folder
        self.task_id = task_id
        self.mode = mode
        self.rounds = rounds
        self.prompt_dir = prompt_dir
        self.messages: list[Message] = []
        self.turns = 0  # model turns asked for so far (numbers the round folders)
        self._conversation: list[str] = []
        self._unanswered: Message | None = None

    def ask(
        self,
        text: str,
        *,
        step: str,
        round: int,
        schema: dict,
        schema_name: str,
        images: Sequence[bytes] = (),
    ) -> tuple[str, Answer]:
        """Send one user turn; return (its run-folder name, the answer). Writes the turn's files."""
        if self._unanswered is not None:
            # The previous turn got no text back: it goes again, in front of this one.
            text = f"{self._unanswered.text}\n\n---\n\n{text}"
            images = (*self._unanswered.images, *images)
            self._unanswered = None
        user = Message("user", text, tuple(images))
        self.messages.append(user)
        request = VLMRequest(
            messages=tuple(self.messages),
            schema=schema,
            schema_name=schema_name,
            task_id=self.task_id,
            mode=self.mode,
            step=step,
            round=round,
        )
        self.turns += 1
        name = f"{self.turns:02d}-{step}"
        self.folder.write(f"{name}/prompt.md", text)
        t0 = time.perf_counter()
        answer = self.client.complete(request)
        elapsed = time.perf_counter() - t0
        if answer.text.strip():
            self.messages.append(Message("model", answer.text))
        else:
            # NOTE: never an empty model turn in the history; re-send the user turn next time.
            self.messages.pop()
            self._unanswered = user
        self.folder.write(f"{name}/answer.txt", answer.text)
        self.folder.write(f"{name}/request.json", self._request_record(request, answer, elapsed))
        told = f"\n\n({answer.stop_reason})" if answer.stop_reason else ""
        self._conversation.append(
            f"## user ({name})\n\n{text}\n\n## model\n\n{answer.text}{told}\n"
        )
        self.folder.write("conversation.md", "\n".join(self._conversation))
        return name, answer

    def _request_record(self, request: VLMRequest, answer: Answer, seconds: float) -> dict:
        backend = self.client.backend
        replay = backend.name == "replay"
        return {
            "backend": backend.name,
            "model": backend.model,
            "settings": backend.settings,
            "step": request.step,
            "round": request.round,
            "schema_name": request.schema_name,
            "images": [
                {"sha256": sha256_hex(i), "file": n}
                for i, n in zip(request.messages[-1].images, IMAGE_FILES)
            ],
            "messages_in_conversation": len(request.messages),
            "cached": self.client.last_was_hit,
            "seconds": round(seconds, 3),
            "finish": answer.finish,
            "blocked": answer.blocked,
            "answer_status": answer.stop_reason or "complete",
            "label": self.last_label,
            "replay_file": getattr(self.client, "last_file", None) if replay else None,
        }

    @property
    def last_label(self) -> str | None:
        """The replay backend's label of its last answer (None for model backends)."""
        if self.client.backend.name != "replay":
            return None
        return getattr(self.client, "last_label", None)

    def feedback_prompt(self, problems: list[str], attempt: int, schema: dict) -> str:
        """The feedback template filled with `problems` (what was wrong with answer `attempt`)."""
        body = "\n".join(
            p if p.lstrip().startswith("-") or "\n" in p else f"- {p}" for p in problems
        )
        return render_template(
            "feedback",
            {
                "round": attempt,
                "rounds_left": self.rounds - attempt,
                "problems": body,
                "answer_schema": schema_text(schema),
            },
            self.prompt_dir,
        )
