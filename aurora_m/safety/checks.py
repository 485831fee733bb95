"""The harm-category taxonomies a stage's sources name, read once at validation (named in the kinds table)."""

from __future__ import annotations

from ..errors import RecipeError
from ..roots import resolve_path
from ..source_spec import BUILTIN_TAXONOMY, SOURCE_LISTS


def check_taxonomies(stage) -> None:
    """A taxonomy file that a source names parses as one (its existence was checked with the source)."""
    from .taxonomy import Taxonomy

    for key, source_list in SOURCE_LISTS.items():
        entries = stage.config.get(key) or []
        for i, raw in enumerate([entries] if source_list.single else entries):
            taxonomy = raw.get("taxonomy") if isinstance(raw, dict) else None
            if not taxonomy or taxonomy == BUILTIN_TAXONOMY:
                continue
            where = key if source_list.single else f"{key}[{i}]"
            try:
                Taxonomy.load(resolve_path(stage.file.parent, taxonomy))
            except RecipeError as err:
                raise RecipeError(stage.file, f"{where}.taxonomy", f"{taxonomy}: {err}") from None
