"""What a step runner receives: its stage, its folders, its inputs. Not the pipeline."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path

from .layout import RunLayout, StageDir
from .stage_checks import parse_stage, stage_dataclasses


@dataclass
class StepContext:
    stage: str
    kind: str
    step: str
    engine: str
    config: Path  # the stage YAML
    run: RunLayout
    dirs: StageDir  # this stage's folder
    overrides: list[str] = field(default_factory=list)  # the user's --key value overrides for this stage
    input_models: dict[str, Path] = field(default_factory=dict)  # variant -> model folder, in lineage order
    input_stages: dict[str, StageDir] = field(default_factory=dict)  # upstream stage name -> its folder
    input_positions: int | None = None  # learned positions of the input models, when known
    input_model: dict | None = None  # the input model's config (patched), when known: its family's facts
    title: str = ""  # for plots and logs
    # the chain's tokenizer as command-line keys (a standalone data step of a continued stage uses these)
    tokenizer_args: list[str] = field(default_factory=list)

    @property
    def has_model_input(self) -> bool:
        return bool(self.input_models)

    def parse(self, *extra: str):
        """The stage YAML parsed into its dataclasses, with ``output_dir`` = this stage's folder.

        Order of precedence: ``extra`` (what the runner wires, e.g. the input model) over the user's
        overrides over the YAML.
        """
        known = {f.name for dc in stage_dataclasses(self.kind, self.engine) for f in fields(dc)}
        wired = ["--output_dir", str(self.dirs.root)] if "output_dir" in known else []
        return parse_stage(
            self.config,
            self.kind,
            [*wired, *self.overrides, *extra],
            has_model_input=self.has_model_input,
            input_positions=self.input_positions,
            engine=self.engine,
            input_model=self.input_model,
        )
