"""The keys of a publish stage's YAML (``PublishArguments``) and the names they are checked against."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

HUB_REPO_LAYOUTS = ("repo_per_variant", "branch_per_variant")
HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")  # namespace/name
LANGUAGE_CODE = re.compile(r"^[a-z]{2,3}$")  # ISO 639-1 or 639-3, as the Hub's `language` metadata takes


@dataclass
class PublishArguments:
    hub_namespace: str = field(default="aurora-m", metadata={"help": "User or organisation the repos go to."})
    hub_layout: str = field(
        default="repo_per_variant",
        metadata={
            "help": "repo_per_variant: NAMESPACE/VARIANT, branch main; branch_per_variant: one repo "
            "NAMESPACE/HUB_REPO with a branch per variant."
        },
    )
    hub_repo: str | None = field(
        default=None, metadata={"help": "The one repo of branch_per_variant (default: the recipe name)."}
    )
    hub_private: bool = field(
        default=True, metadata={"help": "Create new repos private (existing ones keep their visibility)."}
    )
    license: str = field(default="bigcode-openrail-m", metadata={"help": "License id for the cards."})
    language: list[str] | None = field(
        default=None,
        metadata={
            "help": "Card languages (ISO 639 codes; code goes in tags); unset: the languages the variant's "
            "stages trained on (their mixtures)."
        },
    )
    tags: list[str] = field(
        default_factory=lambda: ["aurora-m", "code", "continual-pretraining"],
        metadata={"help": "Card tags (the model's model_type and the stage kind are added)."},
    )
    card_datasets: list[str] = field(default_factory=list, metadata={"help": "Hub dataset ids for the card."})
    hardware: str = field(default="", metadata={"help": "What the recipe trains on, for the card."})

    def __post_init__(self):
        if self.hub_layout not in HUB_REPO_LAYOUTS:
            raise ValueError(f"hub_layout: expected one of {', '.join(HUB_REPO_LAYOUTS)}, got {self.hub_layout!r}")
        for lang in self.language or []:
            if not LANGUAGE_CODE.match(str(lang)):
                raise ValueError(
                    f"language: {lang!r} is not an ISO 639 language code (code and other non-languages go in tags)"
                )
        for dataset in self.card_datasets:
            if not HUB_ID.match(str(dataset)):
                raise ValueError(f"card_datasets: {dataset!r} is not a Hub dataset id (namespace/name)")
        for key in ("hub_namespace", "hub_repo"):
            value = getattr(self, key)
            if value is not None and not re.match(r"^[A-Za-z0-9][A-Za-z0-9._-]*$", value):
                raise ValueError(f"{key}: {value!r} is not a Hub name (letters, digits, '-', '_', '.'; no '/')")


def publish_dataclasses():
    """What a publish stage's YAML fills (named lazily by the kinds table in :mod:`aurora_m.stages`)."""
    return (PublishArguments,)
