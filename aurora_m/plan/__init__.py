"""``aurora-m plan``: what a recipe costs on a given cluster, before the first GPU hour.

Modules by job: ``accelerators`` (the device table), ``shape`` (the model's shape and parameters),
``flops`` (FLOPs per step), ``activations`` and ``memory`` (memory per rank per launch), ``data_cost`` (the
data step), ``eval_cost`` (the evaluation), ``reference`` (the default MFU, from the paper), ``stage_model``
(a stage's model from its YAML), ``build`` (the plan), ``report`` (table and JSON).
"""

from .accelerators import ACCELERATORS, accelerator
from .build import Cluster, StagePlan, build_plan, default_mfu
from .report import as_json as plan_json
from .report import render as render_plan

__all__ = [
    "ACCELERATORS",
    "Cluster",
    "StagePlan",
    "accelerator",
    "build_plan",
    "default_mfu",
    "plan_json",
    "render_plan",
]
