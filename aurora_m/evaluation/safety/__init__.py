"""Safety evaluation in five languages: red-team prompts (held out from training) per harm category, judged
refusals, attack success under jailbreak templates, over-refusal on benign look-alikes.

- :mod:`.prompts`: the red-team / benign prompts per language and category, read with the project's loader;
- :mod:`.judge`: ``Judge`` protocol, ``RefusalJudge`` (offline phrases), ``ClassifierJudge`` (Hub model),
  ``make_judge(name)``;
- :mod:`.templates`: jailbreak templates by name, worded per language;
- :mod:`.suite`: ``run_safety`` (the eval stage's suite; result schema in its docstring);
- :mod:`.report`: ``transfer_table`` / ``plot_transfer`` across variants.

The refusal rate is also an ``evaluate`` metric loadable offline from :data:`REFUSAL_RATE_METRIC`.
"""

from pathlib import Path

REFUSAL_RATE_METRIC = Path(__file__).resolve().parents[1] / "metrics" / "refusal_rate"
