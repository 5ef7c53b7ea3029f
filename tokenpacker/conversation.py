"""LLaVA's conversation templates, shared by training (label masking) and evaluation (prompts).

`plain` is stage 1: the image followed by its caption, no system text. `vicuna_v1` is
stage 2 and inference: a system line, `USER: ... ASSISTANT: ...</s>` turns.
Both render a conversation as segments flagged trainable or not, so training masks
labels segment by segment and the prompt at inference is the same text minus the answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

IMAGE_PLACEHOLDER = "<image>"
HUMAN, ASSISTANT = "human", "gpt"
VICUNA_SYSTEM = (
    "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions."
)


@dataclass(frozen=True)
class Segment:
    """A piece of the rendered conversation; only `trainable` pieces carry loss."""

    text: str
    trainable: bool


@dataclass(frozen=True)
class ConversationTemplate:
    name: str
    system: str
    user_prefix: str
    assistant_prefix: str
    turn_separator: str  # after a user turn
    answer_end: str  # after an assistant answer (trainable: the model learns to stop)

    def render(self, turns: Sequence[tuple[str, str]]) -> list[Segment]:
        """Segments of a whole conversation: `turns` alternate (human, text), (gpt, text)."""
        check_turns(turns)
        segments = [Segment(self.system, False)] if self.system else []
        for role, text in turns:
            if role == HUMAN:
                segments.append(
                    Segment(f"{self.user_prefix}{self.user_text(text)}{self.turn_separator}", False)
                )
            else:
                segments.append(Segment(self.assistant_prefix, False))
                segments.append(Segment(f"{self.answer_text(text)}{self.answer_end}", True))
        return segments

    def user_text(self, text: str) -> str:
        # `plain` keeps only the image of the human turn, as LLaVA's pretraining does.
        return IMAGE_PLACEHOLDER if self.name == "plain" and IMAGE_PLACEHOLDER in text else text

    def answer_text(self, text: str) -> str:
        return text if self.name == "plain" else f" {text}"

    def prompt(self, question: str) -> str:
        """The inference prompt for one question: everything up to where the answer starts."""
        rendered = "".join(s.text for s in self.render([(HUMAN, question)]))
        return rendered + self.assistant_prefix.rstrip(" ") if self.assistant_prefix else rendered


TEMPLATES: dict[str, ConversationTemplate] = {
    "plain": ConversationTemplate(
        name="plain", system="", user_prefix="", assistant_prefix="", turn_separator="", answer_end="\n"
    ),
    "vicuna_v1": ConversationTemplate(
        name="vicuna_v1",
        system=VICUNA_SYSTEM + " ",
        user_prefix="USER: ",
        assistant_prefix="ASSISTANT:",
        turn_separator=" ",
        answer_end="</s>",
    ),
}


def get_template(name: str) -> ConversationTemplate:
    if name not in TEMPLATES:
        raise ValueError(f"unknown conversation template {name!r}; available: {', '.join(TEMPLATES)}")
    return TEMPLATES[name]


def check_turns(turns: Sequence[tuple[str, str]]) -> None:
    """LLaVA conversations alternate human/gpt starting with human; anything else is malformed data."""
    for index, (role, _) in enumerate(turns):
        expected = HUMAN if index % 2 == 0 else ASSISTANT
        if role != expected:
            raise ValueError(
                f"conversation turn {index} is from {role!r} but {expected!r} was expected; "
                "turns must alternate human, gpt, human, ..."
            )
