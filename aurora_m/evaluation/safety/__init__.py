"""Safety evaluation in five languages: red-team prompts (held out from training) per harm category, judged
refusals, attack success under jailbreak templates, over-refusal on benign look-alikes.

- :mod:`.prompts`: the red-team / benign prompts per language and category, read with the project's loader;
- :mod:`.judge`: ``Judge`` protocol, ``make_judge(name)``, ``ClassifierJudge`` (Hub text classifier); the offline
  ``RefusalJudge`` (:mod:`.refusal_judge`, its cues per language in :mod:`.phrases`) and the generative
  ``ChatJudge`` (:mod:`.model_judge`, a rubric per language);
- :mod:`.labelled`: the shipped labelled responses and a judge's agreement with them (``aurora-m eval judge``,
  :mod:`.judge_cli`);
- :mod:`.templates`: jailbreak templates by name, worded per language;
- :mod:`.suite`: ``run_safety`` (the eval stage's suite; result schema in its docstring), its numbers from
  :mod:`.scores`;
- :mod:`.report`: ``transfer_table`` / ``plot_transfer`` across variants.

The refusal rate is also an ``evaluate`` metric loadable offline from :data:`REFUSAL_RATE_METRIC`.
"""

from pathlib import Path

REFUSAL_RATE_METRIC = Path(__file__).resolve().parents[1] / "metrics" / "refusal_rate"
