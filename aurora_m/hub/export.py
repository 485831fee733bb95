"""Write one variant's export folder: model files, a model card with lineage/mixture/evals, its plots.

The folder is what a push uploads: safetensors weights, config, tokenizer, README.md, assets/.
Pickles (``training_args.bin``) are never copied. The folder appears only when complete.
"""

from __future__ import annotations

import shutil
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path

from .. import __version__
from ..args import PublishArguments
from ..io import atomic_dir, check_output_dir, read_json, write_json
from ..layout import DatasetDir, ExportDir

# weights as safetensors, configs and tokenizer files; pickles (training_args.bin, *.pt) never match
PUBLISHED_SUFFIXES = (".safetensors", ".json", ".txt", ".model", ".jinja")


@dataclass
class LineageStep:
    stage: str
    kind: str
    variant: str
    starts_from: str = ""
    data_dir: str | None = None  # its dataset folder (mixture report), when it has one
    loss_png: str | None = None


@dataclass
class Variant:
    name: str
    stage: str
    model_dir: str
    eval_results: str
    lineage: list[LineageStep] = field(default_factory=list)  # first stage first, this variant last
    perplexity_png: str | None = None


def repo_id(publish_args: PublishArguments, variant: str) -> str:
    return f"{publish_args.hub_namespace}/{variant}" if publish_args.hub_namespace else variant


def _copy_model(model_dir: Path, dest: Path) -> None:
    for src in sorted(model_dir.iterdir()):
        if src.is_file() and src.suffix in PUBLISHED_SUFFIXES:
            shutil.copy2(src, dest / src.name)
    if not any(dest.glob("*.safetensors")):
        raise FileNotFoundError(f"{model_dir} has no safetensors weights to publish")


def build_card(variant: Variant, publish_args: PublishArguments, recipe: str, assets: dict, description: str = ""):
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    results = read_json(variant.eval_results)
    parent = variant.lineage[-1].starts_from
    eval_results = [
        EvalResult(task_type="text-generation", dataset_type=f"{recipe}-heldout", dataset_name=f"held-out {lang}",
                   dataset_config=lang, metric_type="perplexity", metric_name=f"perplexity ({lang})",
                   metric_value=round(ppl, 4))
        for lang, ppl in results["perplexity"].items()
    ]
    card_data = ModelCardData(
        base_model=parent, language=publish_args.language, license=publish_args.license,
        tags=list(dict.fromkeys([*publish_args.tags, variant.lineage[-1].kind])),
        datasets=publish_args.card_datasets or None, library_name="transformers", pipeline_tag="text-generation",
        model_name=repo_id(publish_args, variant.name), eval_results=eval_results,
    )
    lineage = []
    for step in variant.lineage:
        entry = {"stage": step.stage, "kind": step.kind, "variant": repo_id(publish_args, step.variant),
                 "starts_from": step.starts_from, "mixture": None, "sft_rows": None,
                 "mixture_png": assets.get(ExportDir.asset("mixture", step.stage)),
                 "loss_png": assets.get(ExportDir.asset("loss", step.stage))}
        data = DatasetDir(step.data_dir) if step.data_dir else None
        if data and data.mixture_json.is_file():
            entry["mixture"] = read_json(data.mixture_json)
        elif data and data.sources_json.is_file():
            entry["sft_rows"] = read_json(data.sources_json)["rows"]
        lineage.append(entry)
    template = resources.files("aurora_m.hub") / "card_template.md"
    return ModelCard.from_template(
        card_data, template_str=template.read_text(encoding="utf-8"), model_name=repo_id(publish_args, variant.name),
        variant=variant.name, stage=variant.stage, recipe=recipe, lineage=lineage, description=description,
        perplexity=results["perplexity"], eval_tokens=results["eval_tokens"],
        perplexity_png=assets.get(ExportDir.asset("perplexity")), repo_id=repo_id(publish_args, variant.name),
        license=publish_args.license,
    )


def _foreign_files(out_dir: str | Path):
    """An ownership check for an earlier export: files we did not write in it are never replaced away."""
    def check(marker: dict) -> str | None:
        root = Path(out_dir)
        ours = set(marker.get("files", [])) | {ExportDir.MARKER}
        foreign = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.relative_to(root).as_posix()
                         not in ours)
        if foreign:
            shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
            return (f"holds files aurora-m did not write ({shown}): move them elsewhere first; "
                    f"nothing was changed")
        return None

    return check


def export_variant(variant: Variant, publish_args: PublishArguments, out_dir: str | Path, recipe: str,
                   description: str = "", overwrite: bool = False) -> Path:
    """Write ``out_dir`` (model, README.md, assets/, eval results, lineage) in one rename.

    A folder that exists and is not an export of ours is refused; ours is replaced only with
    ``overwrite``, and the old one stays in place until the new one is complete.
    """
    out_dir = check_output_dir(out_dir, "--out", ExportDir.MARKER, overwrite=overwrite,
                               owner_check=_foreign_files(out_dir))
    with atomic_dir(out_dir) as tmp:
        export = ExportDir(tmp)
        _copy_model(Path(variant.model_dir), tmp)
        export.assets.mkdir()
        plots = {ExportDir.asset("perplexity"): variant.perplexity_png}
        for step in variant.lineage:
            plots[ExportDir.asset("loss", step.stage)] = step.loss_png
            if step.data_dir:
                plots[ExportDir.asset("mixture", step.stage)] = str(DatasetDir(step.data_dir).mixture_png)
        assets = {}  # the plots that exist, by their path inside the export
        for name, src in plots.items():
            if src and Path(src).is_file():
                shutil.copy2(src, tmp / name)
                assets[name] = name
        results = read_json(variant.eval_results)
        write_json(export.eval_results, {k: v for k, v in results.items() if k != "model"})  # no local paths
        card = build_card(variant, publish_args, recipe, assets, description)
        card.save(export.card)
        write_json(export.lineage, [{k: v for k, v in asdict(s).items() if k not in ("data_dir", "loss_png")}
                                    for s in variant.lineage])  # what made it, without this machine's paths
        written = sorted(p.relative_to(tmp).as_posix() for p in tmp.rglob("*"))
        write_json(export.marker, {"variant": variant.name, "recipe": recipe, "aurora_m_version": __version__,
                                   "files": written})
    return out_dir
