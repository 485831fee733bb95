"""Write one variant's export folder: model files, a model card, its plots: exactly what a push commits.

The folder holds safetensors weights, config, tokenizer (chat template included), README.md, assets/,
the evaluation results and the lineage. Pickles (``training_args.bin``) are never copied. JSON files
have this machine's paths replaced (a path inside the run folder by its relative form, any other
absolute path by its last component), and the finished folder is checked for the run folder's path,
the recipe folder's and the home folder's before it appears. The folder appears only when complete.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from .. import __version__
from ..errors import RecipeError
from ..io import atomic_dir, check_output_dir, file_digest, read_json, unlisted_files, write_json
from ..layout import DatasetDir, ExportDir, StageDir
from .arguments import PublishArguments
from .card import build_card

# weights as safetensors, configs and tokenizer files; pickles (training_args.bin, *.pt) never match
PUBLISHED_SUFFIXES = (".safetensors", ".json", ".txt", ".model", ".jinja")


@dataclass
class LineageStep:
    stage: str
    kind: str
    variant: str
    description: str = ""
    repo: tuple[str, str | None] = ("", None)  # (repo id, branch) of its variant
    starts_from: str | None = None  # a Hub id it continued (its parent variant's, or the base model's); None: none
    note: str = ""  # how it started, in words
    config: dict = field(default_factory=dict)  # its stage YAML as run
    data_dir: str | None = None
    stage_dir: str | None = None

    def public(self) -> dict:
        """What the lineage file says of this step (no local folders)."""
        return {
            "stage": self.stage,
            "kind": self.kind,
            "variant": self.variant,
            "repo_id": self.repo[0],
            "revision": self.repo[1],
            "starts_from": self.starts_from,
            "note": self.note,
        }


@dataclass
class Variant:
    name: str
    stage: str
    recipe: str
    model_dir: str
    eval_results: str
    repo_id: str
    branch: str | None = None
    base_model: str | None = None
    lineage: list[LineageStep] = field(default_factory=list)  # first stage first, this variant last
    eval_dir: str | None = None
    eval_config: dict = field(default_factory=dict)
    description: str = ""


def scrub_paths(value, run_root: Path):
    """``value`` (parsed JSON) with local paths replaced: relative to the run folder when inside it, else the
    last component, so no file of the export names this machine's folders."""
    if isinstance(value, dict):
        return {k: scrub_paths(v, run_root) for k, v in value.items()}
    if isinstance(value, list):
        return [scrub_paths(v, run_root) for v in value]
    if isinstance(value, str) and os.path.isabs(value) and "\n" not in value:
        path = Path(value)
        try:
            return path.resolve().relative_to(run_root).as_posix()
        except (ValueError, OSError):
            return path.name
    return value


def local_paths(run_root: Path, extra: list[Path]) -> list[str]:
    """The folders whose paths an export must never contain (a bare "/" or home is never one of them)."""
    folders = {run_root, Path.home(), *extra}
    return sorted({str(f) for f in folders if len(Path(f).parts) > 2 or f == run_root}, key=len, reverse=True)


def find_local_paths(folder: Path, needles: list[str]) -> list[str]:
    """``file: path`` for each file of ``folder`` that holds one of ``needles`` (safetensors: their header)."""
    found = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        if path.suffix == ".safetensors":
            with open(path, "rb") as fh:
                data = fh.read(8 + int.from_bytes(fh.read(8), "little"))
        else:
            data = path.read_bytes()
        for needle in needles:
            if needle.encode() in data:
                found.append(f"{path.relative_to(folder).as_posix()}: {needle}")
    return found


def _copy_model(model_dir: Path, dest: Path, run_root: Path) -> None:
    for src in sorted(model_dir.iterdir()):
        if not (src.is_file() and src.suffix in PUBLISHED_SUFFIXES):
            continue
        if src.suffix == ".json":
            write_json(dest / src.name, scrub_paths(read_json(src), run_root))
        else:
            shutil.copyfile(src, dest / src.name)
    if not any(dest.glob("*.safetensors")):
        raise RecipeError(model_dir, None, "has no safetensors weights to publish")


def foreign_files(out_dir: str | Path):
    """An ownership check for an earlier export: files we did not write in it are never replaced away."""
    return unlisted_files(out_dir, ExportDir.MARKER)


def changed_files(export_dir: str | Path, marker: dict) -> list[str]:
    """The files of an export that are not as its marker lists them: missing, added, resized or (by content
    digest: a same-size edit of the weights or the card) changed. An export is pushed only as it was written."""
    root = Path(export_dir)
    listed = {entry["path"]: entry for entry in marker.get("files", [])}
    files = [p for p in sorted(root.rglob("*")) if p.is_file() and p.name != ExportDir.MARKER]
    on_disk = {p.relative_to(root).as_posix(): p for p in files}
    changed = sorted(set(listed) ^ set(on_disk))
    for name in sorted(set(listed) & set(on_disk)):
        entry, path = listed[name], on_disk[name]
        if path.stat().st_size != entry.get("size") or file_digest(path) != entry.get("blake2b"):
            changed.append(name)
    return changed


def _plots(variant: Variant) -> dict[str, str | None]:
    """Plots by their path in the export -> where they are in the run folder."""
    eval_dir = StageDir(variant.eval_dir) if variant.eval_dir else None
    plots = {}
    if eval_dir:
        for name in ("perplexity", "forgetting", "safety_transfer"):
            plots[ExportDir.asset(name)] = str(getattr(eval_dir, f"{name}_png"))
    for step in variant.lineage:
        if step.stage_dir:
            plots[ExportDir.asset("loss", step.stage)] = str(StageDir(step.stage_dir).loss_png)
        if step.data_dir:
            plots[ExportDir.asset("mixture", step.stage)] = str(DatasetDir(step.data_dir).mixture_png)
    return plots


def export_variant(
    variant: Variant,
    publish_args: PublishArguments,
    out_dir: str | Path,
    *,
    overwrite: bool = False,
    run_root: str | Path | None = None,
) -> Path:
    """Write ``out_dir`` (model, README.md, assets/, eval results, lineage) in one rename.

    A folder that exists and is not an export of ours is refused; ours is replaced only with
    ``overwrite``, and the old one stays in place until the new one is complete.
    """
    out_dir = check_output_dir(
        out_dir, "--out", ExportDir.MARKER, overwrite=overwrite, owner_check=foreign_files(out_dir)
    )
    run_root = Path(run_root or Path(variant.model_dir).parent.parent).resolve()
    with atomic_dir(out_dir) as tmp:
        export = ExportDir(tmp)
        _copy_model(Path(variant.model_dir), tmp, run_root)
        export.assets.mkdir()
        assets = {}  # the plots that exist, by their path inside the export
        for name, src in _plots(variant).items():
            if src and Path(src).is_file():
                shutil.copyfile(src, tmp / name)
                assets[name] = name
        results = read_json(variant.eval_results)
        write_json(export.eval_results, scrub_paths({k: v for k, v in results.items() if k != "model"}, run_root))
        card = build_card(variant, publish_args, results, assets, model_dir=tmp)
        card.save(export.card)
        write_json(export.lineage, [step.public() for step in variant.lineage])
        needles = local_paths(run_root, [Path(variant.model_dir).resolve(), Path(out_dir).resolve()])
        leaks = find_local_paths(tmp, needles)
        if leaks:
            raise RecipeError(
                out_dir, None, f"the export would carry local paths ({'; '.join(leaks[:3])}): nothing was written"
            )
        files = [
            {"path": p.relative_to(tmp).as_posix(), "size": p.stat().st_size, "blake2b": file_digest(p)}
            for p in sorted(tmp.rglob("*"))
            if p.is_file()
        ]
        write_json(
            export.marker,
            {
                "variant": variant.name,
                "recipe": variant.recipe,
                "aurora_m_version": __version__,
                "repo_id": variant.repo_id,
                "branch": variant.branch,
                "private": publish_args.hub_private,
                "files": files,
            },
        )
    return out_dir
