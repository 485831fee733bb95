"""The harm-category taxonomy as data (``taxonomy.yaml``): category ids, titles, and the labels datasets use.

Red-team sets label the same harm many ways ("Self-Harm", "self_harm", ALERT's "self_harm_suicide"); the data
step maps every label through one taxonomy so that splits, reports and evaluation speak of the same categories,
and a label the taxonomy does not know is counted and reported rather than guessed.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from ..errors import RecipeError

BUILTIN = "taxonomy.yaml"
ENTRY_KEYS = ("title", "description", "aliases")
_ID = re.compile(r"[a-z0-9]+(?:_[a-z0-9]+)*")  # ids are report keys: one spelling, no separators to normalise
_SEPARATORS = re.compile(r"[\s_\-]+")


def label_key(label: str) -> str:
    """The form two spellings of one label share: case, spaces, underscores and hyphens ignored."""
    return _SEPARATORS.sub("", unicodedata.normalize("NFKC", label).casefold())


@dataclass(frozen=True)
class Taxonomy:
    titles: dict[str, str]  # id -> title, in file order
    lookup: dict[str, str]  # label_key of every id and alias -> id
    source: str  # the file it was read from (named in errors and reports)

    @property
    def ids(self) -> list[str]:
        return list(self.titles)

    def title(self, category: str) -> str:
        return self.titles[category]

    def resolve(self, label) -> str | None:
        """The category id a dataset's label means; None when the taxonomy does not know it (or it is empty)."""
        if label is None:
            return None
        key = label_key(str(label))
        return self.lookup.get(key) if key else None

    @classmethod
    def load(cls, path: str | Path | None = None) -> Taxonomy:
        """The built-in taxonomy (``path`` None) or a YAML file of the same shape; a bad file is a RecipeError
        naming the file and the key."""
        source, text = _read(path)
        return cls.from_data(_parse(source, text), source)

    @classmethod
    def from_data(cls, data, source: str) -> Taxonomy:
        if not isinstance(data, dict) or set(data) != {"categories"}:
            found = sorted(map(str, data)) if isinstance(data, dict) else type(data).__name__
            raise RecipeError(source, None, f"expected one top-level key 'categories', got {found}")
        categories = data["categories"]
        if not isinstance(categories, dict) or not categories:
            raise RecipeError(
                source,
                "categories",
                f"expected a mapping of category id -> {{title, description, aliases}}, got {categories!r}",
            )
        titles: dict[str, str] = {}
        lookup: dict[str, str] = {}
        for cid, entry in categories.items():
            titles[cid] = _check_entry(source, cid, entry)
            labels = [(f"categories.{cid}", cid)]
            labels += [(f"categories.{cid}.aliases[{i}]", a) for i, a in enumerate(entry.get("aliases") or [])]
            for key_path, label in labels:
                other = lookup.setdefault(label_key(label), cid)
                if other != cid:
                    raise RecipeError(
                        source,
                        key_path,
                        f"label {label!r} already names category {other!r}: a label must mean one category",
                    )
        return cls(titles, lookup, source)


def _read(path: str | Path | None) -> tuple[str, str]:
    if path is None:
        return f"aurora_m/safety/{BUILTIN}", (resources.files(__package__) / BUILTIN).read_text(encoding="utf-8")
    try:
        return str(path), Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise RecipeError(path, None, f"expected a readable UTF-8 taxonomy YAML file ({err})") from None


def _parse(source: str, text: str):
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise RecipeError(source, None, f"not valid YAML{where} ({getattr(err, 'problem', None) or err})") from None


def _check_entry(source: str, cid, entry) -> str:
    """The entry's title, after checking its shape (YAML turns an unquoted `no` or `on` alias into a boolean)."""
    if not isinstance(cid, str) or not _ID.fullmatch(cid):
        raise RecipeError(
            source,
            f"categories.{cid}",
            "expected a category id of lowercase letters, digits and single underscores (ids are report keys)",
        )
    where = f"categories.{cid}"
    if not isinstance(entry, dict):
        raise RecipeError(source, where, f"expected a mapping with {', '.join(ENTRY_KEYS)}, got {entry!r}")
    unknown = sorted(set(map(str, entry)) - set(ENTRY_KEYS))
    if unknown:
        raise RecipeError(source, f"{where}.{unknown[0]}", f"unknown key; expected one of {', '.join(ENTRY_KEYS)}")
    title = entry.get("title")
    if not isinstance(title, str) or not title.strip():
        raise RecipeError(source, f"{where}.title", f"expected a non-empty string, got {title!r}")
    if not isinstance(entry.get("description", ""), str):
        raise RecipeError(source, f"{where}.description", f"expected a string, got {entry['description']!r}")
    aliases = entry.get("aliases") or []  # `aliases:` left empty means none
    if not isinstance(aliases, list):
        raise RecipeError(source, f"{where}.aliases", f"expected a list of labels, got {aliases!r}")
    for i, alias in enumerate(aliases):
        if not isinstance(alias, str) or not label_key(alias):
            raise RecipeError(
                source,
                f"{where}.aliases[{i}]",
                f"expected a non-empty string (quote labels YAML reads as other types), got {alias!r}",
            )
    return title.strip()
