"""The eval stage's keys (named in the kinds table): the suites it names, and each suite's own keys."""

from __future__ import annotations

from ..errors import RecipeError
from ..extras import importable, install_hint
from ..overrides import check_choice
from .suites import SUITES


def check_eval_keys(stage) -> None:
    """Suite names known; every suite named (or whose keys are set) checks its keys; its packages installed."""
    config = stage.config
    if "suites" in config:
        check_choice(stage.file, config, "suites", list(SUITES))
        if not config["suites"]:
            raise RecipeError(*stage.origin("suites"), "empty: name at least one of " + ", ".join(SUITES))
    named = set(config.get("suites") or [])
    for suite in SUITES.values():
        if suite.name not in named and not set(suite.keys) & set(config):
            continue
        if check := suite.load("check"):
            check(stage)
        if suite.name in named:
            for package in suite.packages:
                if not importable(package.module):
                    raise RecipeError(
                        stage.file,
                        "suites",
                        f"the {suite.name} suite needs {package.pip}, which is not installed here: "
                        f"{install_hint(package.extra, package.pip)}",
                    )
