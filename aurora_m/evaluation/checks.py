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


def check_code_opt_in(config: dict, config_file, stage_name: str) -> None:
    """The code suite runs model-written programs only where that is allowed (AURORA_M_ALLOW_CODE_EXECUTION=1):
    without it, a run would train every stage before this one and then stop here."""
    from .code.sandbox import require_opt_in

    if "code" not in (config.get("suites") or []):
        return
    try:
        require_opt_in()
    except RecipeError as err:
        raise RecipeError(
            config_file,
            err.key,
            f"stage {stage_name} runs the code suite: {err.message} (checked before any step, so the run does "
            "not stop there after training)",
        ) from None
