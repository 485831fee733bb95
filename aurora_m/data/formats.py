"""The Aurora-M prompt format (the paper's Instruction/Response template), shared by CAT, SFT and eval."""

INSTRUCTION_PROMPT = "### Instruction:\n{instruction}\n### Response:\n"


def instruction_prompt(instruction: str) -> str:
    return INSTRUCTION_PROMPT.format(instruction=instruction.strip())


def instruction_text(instruction: str, response: str) -> str:
    """One training document: the prompt followed by the response (CAT mixes these in as plain text)."""
    return instruction_prompt(instruction) + response.strip()


def messages_text(messages) -> str | None:
    """A chat (``[{role, content}, ...]``) as repeated Instruction/Response blocks; None if it has no reply.

    A system turn is prepended to the next instruction; the paper's template has no place of its own for it.
    """
    parts, system = [], ""
    for turn in messages or []:
        if not isinstance(turn, dict) or not isinstance(turn.get("content"), str):
            return None
        role, content = turn.get("role"), turn["content"].strip()
        if role == "system":
            system = content + "\n\n"
        elif role == "user":
            parts.append(instruction_prompt(system + content))
            system = ""
        elif role == "assistant" and parts:
            parts[-1] += content + "\n"
    text = "".join(parts).strip()
    return text if text and any(t.get("role") == "assistant" for t in messages) else None
