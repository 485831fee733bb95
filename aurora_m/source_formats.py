"""THE table of source formats: what a row of a source holds, and what it becomes.

A format names the columns a row must have (through the source's ``*_field`` keys), turns one row into a
*record* or says why it cannot (``missing_field``, ``not_text``, ``empty``), and offers *products* of a record:

- ``text``: one training document (pretraining mixtures, perplexity, the leakage check);
- ``chat``: ``[{role, content}]`` turns (SFT, the response loss);
- ``prompt``: the request alone (safety prompts, the leakage check's instructions);
- anything a new kind needs (``preference``: prompt/chosen/rejected for a DPO kind, ...).

A list of sources asks for one product (``source_spec.SOURCE_LISTS``), so a source whose format cannot give it is
refused when the recipe is validated. Adding a format is one :func:`register_format` call plus its functions:
readers (datatrove's intake, ``datasets`` reads, the leakage check, the safety prompts) go through this table
and never test a format's name. Options a new format reads (``chosen_field: chosen``) are declared here and
accepted in a source entry of that format only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from .prompt import ROLE_NAMES, chat_turns, instruction_text, messages_text

# why a row gives no record: counted per reason by every reader
MISSING_FIELD, NOT_TEXT, EMPTY = "missing_field", "not_text", "empty"


@dataclass(frozen=True)
class SourceFormat:
    name: str
    columns: Callable[[object], dict[str, list[str]]]  # spec -> {spec key: the columns it names}
    read: Callable[[object, dict], tuple[object, str | None]]  # (spec, row) -> (record, None) | (None, reason)
    products: dict[str, Callable[[object], object]]  # product name -> record -> value
    options: dict[str, object] = field(default_factory=dict)  # source keys only this format reads, with defaults
    free_text: bool = False  # documents as written: a pretraining mixture picks its filters by the source's language
    shape: Callable[[object], str] | None = None  # spec -> what a column must hold, when not "a string"
    help: str = ""
    # where a list needs only prompts (eval prompts, the leakage check): the columns a row needs then, and the
    # reader that accepts a row without its answer (None: the format's own columns and reader)
    prompt_columns: Callable[[object], dict[str, list[str]]] | None = None
    read_prompt: Callable[[object, dict], tuple[object, str | None]] | None = None

    def reader(self, prompts_only: bool = False):
        return self.read_prompt if prompts_only and self.read_prompt else self.read

    def columns_for(self, spec, prompts_only: bool = False) -> dict[str, list[str]]:
        return self.prompt_columns(spec) if prompts_only and self.prompt_columns else self.columns(spec)

    def can_give(self, product: str) -> bool:
        return product in self.products

    def give(self, product: str, record):
        return self.products[product](record)


FORMATS: dict[str, SourceFormat] = {}


def register_format(fmt: SourceFormat) -> SourceFormat:
    """Add (or replace) a source format; source entries can name it from then on."""
    FORMATS[fmt.name] = fmt
    return fmt


def unregister_format(name: str) -> None:
    FORMATS.pop(name, None)


def text_problem(value) -> str | None:
    """Why a field's value cannot be a document (``empty``, ``not_text``), or None for a non-blank string."""
    if value is None:
        return EMPTY
    if not isinstance(value, str):
        return NOT_TEXT
    return None if value.strip() else EMPTY


def read_fields(row: dict, columns: list[str]) -> tuple[list[str] | None, str | None]:
    """The stripped values of ``columns`` when every one is a non-blank string; else the first reason."""
    values = []
    for column in columns:
        if column not in row:
            return None, MISSING_FIELD
        if problem := text_problem(row[column]):
            return None, problem
        values.append(row[column])
    return values, None


def _as_list(columns) -> list[str]:
    return list(columns) if isinstance(columns, list) else [columns]


# ----------------------------------------------------------------------------- text: one document per row
def _read_text(spec, row):
    values, problem = read_fields(row, [spec.text_field])
    return (values[0], None) if values else (None, problem)


register_format(
    SourceFormat(
        name="text",
        columns=lambda spec: {"text_field": [spec.text_field]},
        read=_read_text,
        products={"text": lambda text: text, "prompt": lambda text: text.strip()},
        free_text=True,
        help="a document per row (text_field)",
    )
)


# ----------------------------------------------------------------------------- instruction: a request and its answer
def _read_instruction(spec, row):
    """(instruction, response); several instruction columns (natural-instructions' definition and inputs) are
    joined with a blank line."""
    values, problem = read_fields(row, [*_as_list(spec.instruction_field), spec.response_field])
    if values is None:
        return None, problem
    return ("\n\n".join(v.strip() for v in values[:-1]), values[-1].strip()), None


def _read_instruction_prompt(spec, row):
    """(instruction, response), the response blank when the row has none (a prompt-only row of an eval set);
    a row with its answer reads as in training, so the hash split agrees with CAT's."""
    record, problem = _read_instruction(spec, row)
    if record is not None:
        return record, None
    values, problem = read_fields(row, _as_list(spec.instruction_field))
    if values is None:
        return None, problem
    return ("\n\n".join(v.strip() for v in values), ""), None


register_format(
    SourceFormat(
        name="instruction",
        columns=lambda spec: {
            "instruction_field": _as_list(spec.instruction_field),
            "response_field": [spec.response_field],
        },
        read=_read_instruction,
        products={
            "text": lambda pair: instruction_text(*pair),
            "chat": lambda pair: [{"role": "user", "content": pair[0]}, {"role": "assistant", "content": pair[1]}],
            "prompt": lambda pair: pair[0],
        },
        prompt_columns=lambda spec: {"instruction_field": _as_list(spec.instruction_field)},
        read_prompt=_read_instruction_prompt,
        help="a request and its answer (instruction_field, response_field), in the Instruction/Response template",
    )
)


# ----------------------------------------------------------------------------- messages: a chat
def _read_messages(spec, row):
    if spec.messages_field not in row:
        return None, MISSING_FIELD
    turns = chat_turns(row[spec.messages_field], spec.role_field, spec.content_field)
    if turns is False:
        return None, NOT_TEXT
    return (turns, None) if turns and messages_text(turns) else (None, EMPTY)


register_format(
    SourceFormat(
        name="messages",
        columns=lambda spec: {"messages_field": [spec.messages_field]},
        read=_read_messages,
        products={
            "text": messages_text,
            "chat": lambda turns: turns,
            "prompt": lambda turns: next(t["content"] for t in turns if t["role"] == "user"),
        },
        shape=lambda spec: (
            f"a chat (a list of turns with string '{spec.role_field}' and '{spec.content_field}' keys, "
            f"roles {'/'.join(ROLE_NAMES)})"
        ),
        help="a chat: a list of {role, content} turns (messages_field; role_field/content_field for ShareGPT)",
    )
)
