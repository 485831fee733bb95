"""Code evaluation: problems (HumanEval, MBPP), a sandbox that runs model-written programs, pass@k.

require_opt_in()                                   # before generating: fail early without the opt-in
problems = humaneval_problems()                    # or mbpp_problems(rows)
... completions[i] = samples for problems[i].prompt, each cut at problems[i].stop ...
outcomes = grade(problems, completions, LocalSandbox(workers=0))
pass_rates(outcomes, ks=(1, 10))                   # {"pass@1": ..., "pass@10": ...}
"""

from .grading import check_grading_flags, grade, grade_reference, load_problem_set, pass_rates, status_counts
from .passk import mean_pass_at_k, pass_at_k
from .problems import HUMANEVAL_STOP, MBPP_STOP, Problem, humaneval_problems, mbpp_problems, program_for
from .sandbox import OPT_IN, Executor, Job, LocalSandbox, Outcome, code_execution_allowed, require_opt_in
from .sandbox_server import STATUSES

__all__ = [
    "HUMANEVAL_STOP",
    "MBPP_STOP",
    "OPT_IN",
    "STATUSES",
    "Executor",
    "Job",
    "LocalSandbox",
    "Outcome",
    "Problem",
    "check_grading_flags",
    "code_execution_allowed",
    "grade",
    "grade_reference",
    "humaneval_problems",
    "load_problem_set",
    "mbpp_problems",
    "mean_pass_at_k",
    "pass_at_k",
    "pass_rates",
    "program_for",
    "require_opt_in",
    "status_counts",
]
