"""THE table of evaluation suites: what ``suites:`` in an eval stage may name.

A suite declares its runner, the keys of the eval stage it reads (checked whenever they are set, named or not),
a check of those keys at validation, a preparation run before any model loads (what would otherwise fail only
after the first variant's earlier suites ran), and the optional packages it needs, as datatrove components
declare theirs: a suite whose package is missing is refused at validation with the pip extra to install.
Everything is named lazily (``"module:function"``), so this table imports no suite. Adding a suite is one
:func:`register_suite` call plus its module.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass


@dataclass(frozen=True)
class Package:
    module: str  # what is imported
    extra: str  # the aurora-m extra that installs it
    pip: str  # the PyPI requirement


@dataclass(frozen=True)
class Suite:
    name: str
    runner: str  # "module:function"(model, tokenizer, eval_args, config_file, **context) -> dict
    keys: tuple[str, ...] = ()
    check: str | None = None  # "module:function"(stage_checks.StageConfig) -> None
    prepare: str | None = None  # "module:function"(eval_args, config_file, cache) -> None
    packages: tuple[Package, ...] = ()
    help: str = ""

    def load(self, hook: str):
        target = getattr(self, hook)
        if target is None:
            return None
        module, _, function = target.partition(":")
        return getattr(importlib.import_module(module), function)


SUITES: dict[str, Suite] = {}


def register_suite(suite: Suite) -> Suite:
    SUITES[suite.name] = suite
    return suite


def unregister_suite(name: str) -> None:
    SUITES.pop(name, None)


register_suite(
    Suite(
        "perplexity",
        "aurora_m.evaluation.perplexity:perplexity_suite",
        keys=("perplexity_sources",),
        help="held-out perplexity per language",
    )
)
register_suite(
    Suite(
        "code",
        "aurora_m.evaluation.code.suite:run_code",
        keys=(
            "code_problems",
            "mbpp_source",
            "code_max_new_tokens",
            "code_batch_size",
            "code_timeout_s",
            "code_min_isolation",
        ),
        check="aurora_m.evaluation.code.suite:check_code_keys",
        prepare="aurora_m.evaluation.code.suite:prepare_code",
        help="HumanEval / MBPP pass@k, programs run in the sandbox",
    )
)
register_suite(
    Suite(
        "harness",
        "aurora_m.evaluation.harness:run_harness",
        keys=("lm_eval_tasks", "lm_eval_include_path"),
        check="aurora_m.evaluation.harness:check_harness_keys",
        prepare="aurora_m.evaluation.harness:check_tasks",
        packages=(Package("lm_eval", "eval", "lm-eval"),),
        help="lm-eval tasks per language",
    )
)
register_suite(
    Suite(
        "safety",
        "aurora_m.evaluation.safety.suite:run_safety",
        keys=(
            "safety_sources",
            "benign_sources",
            "safety_judge",
            "jailbreak_templates",
            "safety_max_new_tokens",
            "safety_max_prompts",
        ),
        check="aurora_m.evaluation.safety.suite:check_safety_keys",
        prepare="aurora_m.evaluation.safety.suite:prepare_safety",
        help="red-team refusal in five languages, jailbreak wrappers, over-refusal",
    )
)
