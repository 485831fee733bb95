"""The Aurora-M prompt format (the paper's Instruction/Response template), shared by CAT, SFT and eval."""

INSTRUCTION_PROMPT = "### Instruction:\n{instruction}\n### Response:\n"


def instruction_prompt(instruction: str) -> str:
    return INSTRUCTION_PROMPT.format(instruction=instruction.strip())


def instruction_text(instruction: str, response: str) -> str:
    """One training document: the prompt followed by the response (CAT mixes these in as plain text)."""
    return instruction_prompt(instruction) + response.strip()
