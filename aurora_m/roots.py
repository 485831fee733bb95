"""The folders a recipe may read: its own and the ``data_roots`` its pipeline.yaml names; paths resolved there.

A path in a stage YAML is relative to that YAML's folder; one that leaves every allowed folder (``../..``, a
symlink out) is refused, so a recipe copied to another machine reads what it says and nothing else.
"""

from __future__ import annotations

from pathlib import Path

from .errors import RecipeError
from .overrides import read_yaml

PIPELINE_FILE = "pipeline.yaml"


def resolve_path(base: Path, path: str) -> Path:
    p = Path(path).expanduser()
    return p if p.is_absolute() else (base / p)


def allowed_roots(recipe_dir: Path, *, missing_ok: bool = False) -> list[Path]:
    """Folders a recipe may read from: its own, plus the ``data_roots`` its pipeline.yaml names (``missing_ok``:
    those that are not folders here are left out rather than refused, for a record that is not run)."""
    roots = [Path(recipe_dir).resolve()]
    pipeline = Path(recipe_dir) / PIPELINE_FILE
    if pipeline.is_file():
        data_roots = read_yaml(pipeline).get("data_roots") or []
        if not isinstance(data_roots, list) or not all(isinstance(r, str) for r in data_roots):
            raise RecipeError(pipeline, "data_roots", "expected a list of folders")
        for i, root in enumerate(data_roots):
            folder = resolve_path(Path(recipe_dir), root).resolve()
            if not folder.is_dir() and missing_ok:
                continue
            if not folder.is_dir():
                raise RecipeError(pipeline, f"data_roots[{i}]", f"{root} is not a folder")
            roots.append(folder)
    return roots


def check_inside(file: Path, key: str, path: Path, roots: list[Path]) -> Path:
    """``path`` resolved (symlinks too), refused when it leaves the recipe folder and every data root."""
    resolved = path.resolve()
    if not any(resolved.is_relative_to(root) for root in roots):
        raise RecipeError(
            file,
            key,
            f"{path} is outside the recipe folder {roots[0]}; add the folder that holds it "
            f"to data_roots in {PIPELINE_FILE} to read it",
        )
    return resolved
