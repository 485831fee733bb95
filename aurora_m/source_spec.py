"""One source of a stage (``mixture``, ``sft_sources``, ``perplexity_sources``, ...): its keys, built and checked once.

:meth:`SourceSpec.from_config` is the one place a source entry of a YAML becomes a :class:`SourceSpec`: unknown
keys (with the closest known one), wrong types, values out of range and files that are not there become one
line naming the file and ``key[i].field``. Readers build specs with :func:`source_specs`, which runs the same
code, so a spec that validated is the spec that runs.

Which lists exist, and what their sources must give, is the table :data:`SOURCE_LISTS` (a list asks for a
product of its sources' format: text, chat, prompt, ...; ``source_formats.FORMATS``). A new kind with its own list
of sources registers it with :func:`register_source_list`; nothing here changes.
"""

from __future__ import annotations

import math
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path

from .errors import RecipeError
from .languages import CODE, PAPER_LANGUAGES, is_language, language_hint
from .overrides import quoted_number_hint, type_name, unknown_key, value_matches
from .roots import allowed_roots, check_inside, resolve_path
from .source_formats import FORMATS

# the paper's languages (the shipped recipes'); a recipe may name any LID-176 language (languages.is_language)
LANGUAGES = (*PAPER_LANGUAGES, CODE)
PROSE_LANGUAGES = PAPER_LANGUAGES
DATA_SUFFIXES = (".jsonl", ".json", ".parquet")
CORPUS_SUFFIXES = (".jsonl.gz", ".json.gz")  # datatrove reads compressed JSON lines too
BUILTIN_TAXONOMY = "aurora-m"


@dataclass
class SourceSpec:
    """One entry of a ``mixture`` / ``sft_sources`` / ``perplexity_sources`` list."""

    name: str
    weight: float | None = None  # relative share of what the stage's budget leaves (1.0 when unset)
    tokens: int | None = None  # an absolute token budget for this source (pretraining mixtures)
    language: str | None = None  # a LID-176 code (en, de, ko, sw, ...) or code; defaults to the name if it is one
    replay: bool = False  # part of the base model's original distribution (English + code): the replay pool
    max_epochs: float | None = None  # this source's own cap on repeats (the stage's max_epochs otherwise)
    path: str | None = None  # local .jsonl / .json / .parquet file
    dataset: str | None = None  # Hub dataset id (the real recipes)
    config_name: str | None = None
    data_dir: str | None = None  # a folder inside a Hub dataset (the-stack-dedup: data/python)
    data_files: str | list[str] | None = None  # files inside a Hub dataset (a script-only dataset's raw files)
    # a packaged builder of `datasets` (json, parquet, csv, text) reading data_files of the Hub dataset on
    # hf://datasets/<dataset>/<file> paths: how a repo that ships a loading script is read (datasets >= 4 refuses
    # the repo by id, data_files or not)
    builder: str | None = None
    split: str = "train"
    format: str = "text"  # a name in source_formats.FORMATS: text | instruction | messages | ...
    text_field: str = "text"
    # several columns (natural-instructions: [definition, inputs]) are joined with a blank line (mixtures)
    instruction_field: str | list[str] = "instruction"
    response_field: str = "response"
    category_field: str = "category"
    messages_field: str = "messages"  # format: messages: a list of {role, content}
    role_field: str = "role"  # the role key of a chat turn (SlimOrca/ShareGPT: from, with human/gpt/system)
    content_field: str = "content"  # the text key of a chat turn (SlimOrca/ShareGPT: value)
    # red-team sets: the held-out split is stratified by category_field (every category's test share within one
    # row of holdout_fraction), and labels are mapped through a harm-category taxonomy ("aurora-m": the built-in
    # one, or a YAML file); rows whose category it does not know are counted and removed
    stratify: bool = False
    taxonomy: str | None = None
    holdout_fraction: float = 0.0  # documents set aside by a stable hash of their text
    take: str = "train"  # train | heldout: which side of the hash split this entry reads
    max_docs: int | None = None
    # mask emails, phone numbers and IP addresses (pretraining mixtures, with the stage's pii_anonymise): unset, on
    # for free text (web pages) and off for curated instruction/chat rows, whose responses are written to help
    # (a red-team refusal's crisis helpline number stays a number)
    pii_masking: bool | None = None
    options: dict = field(default_factory=dict)  # keys a format of its own declares (chosen_field: ...)

    @classmethod
    def keys(cls) -> list[str]:
        return [f.name for f in fields(cls) if f.name != "options"]

    @property
    def lang(self) -> str | None:
        """The source's declared language (its name when that is a language code)."""
        return self.language or (self.name if is_language(self.name) else None)

    @property
    def masks_pii(self) -> bool:
        """Whether this source's documents have their PII masked when the stage masks PII."""
        return self.source_format.free_text if self.pii_masking is None else self.pii_masking

    @property
    def source_format(self):
        return FORMATS[self.format]

    def option(self, key: str):
        """A key the source's format declares (its value here, else the format's default)."""
        return self.options.get(key, self.source_format.options[key])

    @property
    def origin(self) -> str:
        return self.path or self.dataset

    @classmethod
    def from_config(cls, raw, *, file=None, where: str = "source", list_key: str | None = None, roots=None):
        """The spec of one source entry, checked: a RecipeError names ``file`` and ``where.key`` otherwise. With
        ``roots`` (validation), local files must exist inside them; readers resolve paths beforehand."""
        file = file if file is not None else "<source>"
        if not isinstance(raw, dict):
            raise RecipeError(file, where, f"expected a mapping with name/path/weight, got {type(raw).__name__}")
        fmt = FORMATS.get(raw.get("format", "text"))
        if fmt is None:
            raise RecipeError(file, f"{where}.format", f"expected one of {', '.join(FORMATS)}, got {raw['format']!r}")
        hints = typing.get_type_hints(cls)
        known, options = {}, {}
        for k, v in raw.items():
            if k in fmt.options:
                options[k] = v
                continue
            if k not in hints or k == "options":
                raise unknown_key(file, f"{where}.{k}", [*cls.keys(), *fmt.options])
            if not value_matches(v, hints[k]):
                raise RecipeError(
                    file, f"{where}.{k}", f"expected {type_name(hints[k])}, got {v!r}{quoted_number_hint(v)}"
                )
            known[k] = v
        if "name" not in known:
            raise RecipeError(file, f"{where}.name", "missing: every source needs a name")
        spec = cls(**known, options=options)
        spec.check(file, where, find_source_list(list_key) if list_key else None, roots)
        return spec

    def check(self, file, where: str, source_list: SourceList | None, roots) -> None:
        """Values that make sense on their own and for the list that holds the source."""
        if (self.path is None) == (self.dataset is None):
            raise RecipeError(file, where, "expected exactly one of 'path' (local file) or 'dataset' (Hub id)")
        if self.weight is not None:
            self.weight = float(self.weight)
            if source_list and source_list.weights and not (math.isfinite(self.weight) and self.weight > 0):
                raise RecipeError(file, f"{where}.weight", f"expected a positive finite number, got {self.weight!r}")
        for key in ("tokens", "max_epochs", "max_docs"):
            if getattr(self, key) is not None and not getattr(self, key) > 0:
                raise RecipeError(file, f"{where}.{key}", f"expected a positive number, got {getattr(self, key)!r}")
        if self.tokens is not None and self.weight is not None:
            raise RecipeError(file, where, "expected one of 'tokens' (absolute budget) or 'weight' (share), not both")
        if self.language is not None and not is_language(self.language):
            raise RecipeError(file, f"{where}.language", f"expected {language_hint()}, got {self.language!r}")
        if self.take not in ("train", "heldout"):
            raise RecipeError(file, f"{where}.take", f"expected 'train' or 'heldout', got {self.take!r}")
        if not 0.0 <= self.holdout_fraction < 1.0:
            raise RecipeError(file, f"{where}.holdout_fraction", f"expected 0 <= x < 1, got {self.holdout_fraction}")
        if self.take == "heldout" and self.holdout_fraction == 0:
            raise RecipeError(file, f"{where}.holdout_fraction", "take: heldout needs a holdout_fraction above 0")
        if self.stratify and not self.holdout_fraction > 0:
            raise RecipeError(
                file,
                f"{where}.holdout_fraction",
                "stratify: true splits off a held-out share: expected 0 < holdout_fraction < 1",
            )
        if self.stratify and not (self.source_format.can_give("prompt") and self.source_format.can_give("chat")):
            raise RecipeError(
                file,
                f"{where}.stratify",
                "a stratified split needs format: instruction (pairs with a category column)",
            )
        if self.dataset is not None:
            self._check_hub_read(file, where)
        if source_list is not None:
            source_list.check(self, file, where)
        if roots is not None:
            self._check_files(file, where, source_list, roots)

    def _check_hub_read(self, file, where: str) -> None:
        """How a Hub dataset is read: streamed (a split slice counts rows), by id or through a packaged builder."""
        if self.builder is not None and self.builder not in PACKAGED_BUILDERS:
            raise RecipeError(
                file, f"{where}.builder", f"expected one of {', '.join(PACKAGED_BUILDERS)}, got {self.builder!r}"
            )
        if self.builder is not None and not self.data_files:
            raise RecipeError(
                file, f"{where}.data_files", f"builder: {self.builder} reads the files it is given: list them"
            )
        if self.builder is not None and (self.config_name or self.data_dir):
            raise RecipeError(
                file, f"{where}.builder", "reads data_files only: give the folder in data_files, not config/data_dir"
            )
        script = SCRIPT_REPOS.get(self.dataset)
        if script is not None and self.builder is None:
            raise RecipeError(
                file,
                f"{where}.dataset",
                f"{self.dataset} ships a loading script ({script[0]}), which datasets >= 4 refuses with or without "
                f"data_files: read its data files through a packaged builder, e.g. builder: {script[1]} and "
                f"data_files: {script[2]}",
            )
        if self.replay and not self.data_files:
            raise RecipeError(
                file,
                f"{where}.data_files",
                f"a replay source takes its share by natural size, so the data step would read and clean all of "
                f"{self.dataset}: name a bounded part of it (data_files: the files to draw from)",
            )
        try:
            streamed_split(self.split)
        except ValueError as err:
            raise RecipeError(file, f"{where}.split", str(err)) from None

    def _check_files(self, file, where: str, source_list: SourceList | None, roots) -> None:
        base = Path(file).parent
        corpus = bool(source_list and source_list.corpus)
        if self.path is not None:
            local = resolve_path(base, self.path)
            if corpus and local.is_dir():  # datatrove reads a folder of files
                check_inside(file, f"{where}.path", local, roots)
            else:
                suffixes = DATA_SUFFIXES + (CORPUS_SUFFIXES if corpus else ())
                if not local.name.endswith(suffixes):
                    kinds = "/".join(suffixes) + (" file or a folder of them" if corpus else " file")
                    raise RecipeError(file, f"{where}.path", f"expected a {kinds}, got {self.path!r}")
                check_inside(file, f"{where}.path", local, roots)
                if not local.is_file():
                    raise RecipeError(file, f"{where}.path", f"data file not found: {local}")
            # an empty file is a source with no rows: the data step would refuse it only after training a tokenizer
            for data_file in [local] if local.is_file() else sorted(local.iterdir()) if local.is_dir() else []:
                if data_file.is_file() and not data_file.name.startswith(".") and _holds_nothing(data_file):
                    raise RecipeError(file, f"{where}.path", f"empty data file {data_file} (no rows)")
        if self.taxonomy and self.taxonomy != BUILTIN_TAXONOMY:
            local = check_inside(file, f"{where}.taxonomy", resolve_path(base, self.taxonomy), roots)
            if not local.is_file():
                raise RecipeError(
                    file,
                    f"{where}.taxonomy",
                    f"expected '{BUILTIN_TAXONOMY}' (built in) or a taxonomy YAML file, got {self.taxonomy!r} "
                    "(no such file)",
                )


def _holds_nothing(path: Path, chunk: int = 1 << 16) -> bool:
    """No bytes, or (a text file) only blank lines: read until the first other byte, so a big file costs a chunk."""
    if path.stat().st_size == 0:
        return True
    if not path.name.endswith((".jsonl", ".json")):  # compressed or parquet: its reader says what it holds
        return False
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            if block.strip():
                return False
    return True


# ----------------------------------------------------------------------------- reading a Hub dataset
PACKAGED_BUILDERS = ("json", "parquet", "csv", "text")
# Hub datasets that ship a loading script (datasets >= 4 refuses them by id: load.py raises "Dataset scripts are
# no longer supported"): repo -> (script, builder, an example of data_files), each from the repo's file listing
SCRIPT_REPOS = {
    # https://huggingface.co/datasets/bigscience/xP3/tree/main (xP3.py; <lang>/merged_<lang>.jsonl per language)
    "bigscience/xP3": ("xP3.py", "json", "en/merged_en.jsonl"),
}


def streamed_split(split: str) -> tuple[str, int | None]:
    """A Hub source is streamed: its ``split`` is a split name, or ``name[:N]`` for its first N rows. A slice that
    is not a leading row count (a percentage, a start) would make `datasets` prepare the whole split first."""
    name, bracket, rest = split.partition("[")
    if not bracket:
        return split, None
    count = rest.removesuffix("]").removeprefix(":")
    if not rest.endswith("]") or not rest.startswith(":") or not count.isdigit() or int(count) <= 0:
        raise ValueError(
            f"a Hub source is streamed: expected a split name or 'NAME[:N]' (its first N rows), got {split!r}"
        )
    return name, int(count)


def hub_read_args(spec: SourceSpec, revision: str | None = None) -> tuple[str, dict]:
    """``load_dataset``'s path and options for a Hub source (split and streaming are the reader's): the repo by id,
    or a packaged builder on the repo's files as ``hf://datasets/<repo>[@revision]/<file>`` paths."""
    if spec.builder is not None:
        files = [spec.data_files] if isinstance(spec.data_files, str) else list(spec.data_files)
        repo = f"{spec.dataset}@{revision}" if revision else spec.dataset
        return spec.builder, {"data_files": [f"hf://datasets/{repo}/{f.lstrip('/')}" for f in files]}
    options = {
        "name": spec.config_name,
        "data_dir": spec.data_dir,
        "data_files": spec.data_files,
        "revision": revision,
    }
    return spec.dataset, {k: v for k, v in options.items() if v is not None}


@dataclass(frozen=True)
class SourceList:
    """A key of a stage YAML that holds sources, and what it asks of them."""

    key: str
    product: str  # what every source's format must give: text | chat | prompt | ...
    weights: bool = False  # a training mix: weights must be positive
    corpus: bool = False  # read by datatrove: a folder or .jsonl.gz allowed, several instruction columns joined
    single: bool = False  # one source (a mapping), not a list
    trains: bool = False  # a model trains on it: its Hub datasets are named on the model card
    help: str = ""

    @property
    def prompts_only(self) -> bool:
        """Eval prompts, the leakage check: a row needs its request only (a prompt-only row is valid)."""
        return self.product == "prompt"

    def check(self, spec: SourceSpec, file, where: str) -> None:
        fmt = spec.source_format
        if not fmt.can_give(self.product):
            formats = [name for name, f in FORMATS.items() if f.can_give(self.product)]
            raise RecipeError(
                file,
                f"{where}.format",
                f"{self.key} needs sources that give {self.product}: expected one of {', '.join(formats)}, "
                f"got {spec.format!r}",
            )
        if isinstance(spec.instruction_field, list) and not self.corpus:
            raise RecipeError(
                file,
                f"{where}.instruction_field",
                "expected one column name (several are joined only in pretraining mixtures)",
            )
        if self.corpus and fmt.free_text and spec.lang is None:
            raise RecipeError(file, f"{where}.language", f"missing: expected {language_hint()} (it picks the filters)")


SOURCE_LISTS: dict[str, SourceList] = {}


def register_source_list(source_list: SourceList) -> SourceList:
    SOURCE_LISTS[source_list.key] = source_list
    return source_list


for _entry in (
    SourceList("mixture", "text", weights=True, corpus=True, trains=True, help="a pretraining mixture (datatrove)"),
    SourceList("sft_sources", "chat", weights=True, trains=True, help="SFT chats"),
    SourceList("helpful_sources", "chat", trains=True, help="general instructions mixed into SFT (helpfulness_share)"),
    SourceList("contamination_sources", "prompt", help="held-out test prompts training data must not contain"),
    SourceList("perplexity_sources", "text", help="held-out text per language"),
    SourceList("safety_sources", "prompt", help="red-team prompts (held out from training)"),
    SourceList("benign_sources", "prompt", help="benign prompts (over-refusal)"),
    SourceList("mbpp_source", "text", single=True, help="MBPP problems (a local file or the Hub dataset)"),
):
    register_source_list(_entry)


def find_source_list(key: str) -> SourceList:
    """The list ``key`` as registered; a kind's list that nobody registered holds documents (text)."""
    return SOURCE_LISTS.get(key) or SourceList(key, "text")


def check_sources(file: Path, key: str, sources, roots: list[Path] | None = None) -> list[SourceSpec]:
    """Every source of the list ``key`` in a stage YAML, checked (files inside ``roots``), names unique."""
    roots = roots if roots is not None else allowed_roots(Path(file).parent)
    source_list = find_source_list(key)
    if source_list.single:
        if not isinstance(sources, dict):
            raise RecipeError(file, key, "expected a source entry ({dataset: ...} or {path: FILE})")
        return [SourceSpec.from_config({"name": key, **sources}, file=file, where=key, list_key=key, roots=roots)]
    if not isinstance(sources, list) or not sources:
        raise RecipeError(file, key, "expected a non-empty list of sources")
    specs, names = [], set()
    for i, raw in enumerate(sources):
        spec = SourceSpec.from_config(raw, file=file, where=f"{key}[{i}]", list_key=key, roots=roots)
        if spec.name in names:
            raise RecipeError(file, f"{key}[{i}].name", f"duplicate source name {spec.name!r}")
        names.add(spec.name)
        specs.append(spec)
    return specs


def source_specs(sources, key: str | None = None, config_file=None) -> list[SourceSpec]:
    """Specs of a parsed stage's list (or single entry) of sources, as readers build them (paths already
    resolved by the parser): the same checks as validation, without looking for files."""
    if isinstance(sources, dict):
        sources = [{"name": key or "source", **sources}]
    return [
        SourceSpec.from_config(raw, file=config_file, where=f"{key or 'source'}[{i}]", list_key=key)
        for i, raw in enumerate(sources or [])
    ]
