"""The Aurora-M prompt format (the paper's Instruction/Response template), shared by CAT, SFT, eval and the card.

One turn renders the same three ways: CAT's plain-text document (``instruction_text``, the EOS comes from
packing), SFT's prompt/completion row (TRL appends the EOS to the completion) and the chat template
(``CHAT_TEMPLATE``, EOS inside the ``{% generation %}`` span so assistant-only loss trains the model to stop):
``### Instruction:\n{instruction}\n### Response:\n{response}<EOS>``.
"""

import re

INSTRUCTION_PROMPT = "### Instruction:\n{instruction}\n### Response:\n"
_INSTRUCTION = re.compile(r"### Instruction:\n(.*?)\n### Response:\n", re.DOTALL)

# The same format as a chat template (StarCoderPlus ships none). A system turn is prepended to the next
# instruction, as messages_text does; the user turn ends with the response header, so there is no separate
# generation prompt. TRL's assistant_only_loss reads the {% generation %} markers.
CHAT_TEMPLATE = (
    "{%- set ns = namespace(system='') -%}"
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'system' -%}{%- set ns.system = message['content'] | trim + '\n\n' -%}"
    "{%- elif message['role'] == 'user' -%}"
    "{{ '### Instruction:\n' + ns.system + message['content'] | trim + '\n### Response:\n' }}"
    "{%- set ns.system = '' -%}"
    "{%- elif message['role'] == 'assistant' -%}"
    "{% generation %}{{ message['content'] | trim + eos_token }}{% endgeneration %}"
    "{%- endif -%}"
    "{%- endfor -%}"
)
# Role names of the chat datasets in use (ShareGPT/SlimOrca: human/gpt) mapped to the template's three.
ROLE_NAMES = {"system": "system", "user": "user", "human": "user", "assistant": "assistant", "gpt": "assistant"}


def instruction_prompt(instruction: str) -> str:
    return INSTRUCTION_PROMPT.format(instruction=instruction.strip())


def instruction_text(instruction: str, response: str) -> str:
    """One training document: the prompt followed by the response (CAT mixes these in as plain text)."""
    return instruction_prompt(instruction) + response.strip()


def chat_turns(value, role_field: str = "role", content_field: str = "content"):
    """A chat as ``[{role, content}]`` with the template's role names; None when it holds no usable exchange
    (empty, blank, or no user turn answered), False when it is not a chat at all (not a list of turns with
    string roles and contents, or a role the template does not know)."""
    if not isinstance(value, list):
        return False
    turns = []
    for turn in value:
        if not isinstance(turn, dict):
            return False
        role, content = turn.get(role_field), turn.get(content_field)
        if not isinstance(role, str) or not isinstance(content, str) or role.lower() not in ROLE_NAMES:
            return False
        if content.strip():
            turns.append({"role": ROLE_NAMES[role.lower()], "content": content.strip()})
    roles = [t["role"] for t in turns]
    if "user" not in roles or "assistant" not in roles[roles.index("user") :]:
        return None
    return turns


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


def instructions_in(text: str) -> list[str]:
    """The instructions of a rendered document (one per turn), so a near duplicate of a test prompt is compared
    with the instruction alone rather than diluted by the response."""
    return _INSTRUCTION.findall(text)
