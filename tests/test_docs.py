"""The docs a newcomer walks: README.md (the front door), docs/*.md, recipes/*/README.md.

Every page is linked and every link, path and ``aurora_m.*`` name they give exists; no to-dos; measured
timings only in docs/benchmarks.md. Every shell command of their ```bash blocks is accounted for: cheap
read-only ones run for real (``aurora-m validate``, ``patches``, ``eval code``, ``eval judge``,
``python -m aurora_m.extras``),
those that need a finished tiny run run on a copy of the session's ``tiny_run``, and the rest (training,
pushes, Slurm and accelerate launches) are checked against the ``--help`` of what they call: the command,
subcommand, script and every flag must exist, stage keys given as ``--key value`` must be keys of the
recipe's stages, and the recipes, stages, variants, configs and extras they name must exist.
"""

from __future__ import annotations

import configparser
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from conftest import OFFLINE, ROOT

README = ROOT / "README.md"
DOCS = ROOT / "docs"
PAGES = (
    "pipeline",
    "recipes",
    "adapting",
    "data",
    "training",
    "evaluation",
    "safety",
    "publishing",
    "launching",
    "nanotron",
    "planning",
    "benchmarks",
    "extending",
)
MAX_README_LINES = 250
TINY_RUN = "runs/aurora-m-tiny"  # the run folder the docs' tiny commands write


def doc_files() -> list[Path]:
    return [README, *sorted(DOCS.glob("*.md")), *sorted((ROOT / "recipes").glob("*/README.md"))]


def rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


# ----------------------------------------------------------------------------- reading markdown
@dataclass
class Doc:
    path: Path
    prose: str  # the text outside fenced blocks
    blocks: list[tuple[str, int, list[str]]] = field(default_factory=list)  # (language, first line, lines)

    def code_spans(self) -> list[str]:
        return re.findall(r"`([^`]+)`", self.prose)

    def links(self) -> list[str]:
        return re.findall(r"\[[^\]]*\]\(([^)\s]+)\)", self.prose)


def read_doc(path: Path) -> Doc:
    prose, blocks, block = [], [], None
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        fence = re.match(r"^```(\w*)\s*$", line)
        if block is None and fence:
            block = (fence.group(1), number + 1, [])
        elif block is not None and line.startswith("```"):
            blocks.append(block)
            block = None
        elif block is not None:
            block[2].append(line)
        else:
            prose.append(line)
    assert block is None, f"{rel(path)}: a code block opened at line {block[1] - 1} is never closed"
    return Doc(path, "\n".join(prose), blocks)


@pytest.fixture(scope="module")
def docs() -> list[Doc]:
    return [read_doc(p) for p in doc_files()]


def slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"[`*_\[\]()]", "", heading.strip().lower())
    return re.sub(r"\s", "-", re.sub(r"[^\w\s-]", "", text))


def anchors(path: Path) -> set[str]:
    return {slug(m) for m in re.findall(r"^#+\s+(.*)$", read_doc(path).prose, re.M)}


# ----------------------------------------------------------------------------- (a) the pages
def test_the_readme_is_short_and_links_every_page_of_the_docs():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= MAX_README_LINES, f"README.md has {len(lines)} lines: at most {MAX_README_LINES}"
    for page in PAGES:
        assert (DOCS / f"{page}.md").is_file(), f"docs/{page}.md is missing"
    linked = {target.split("#")[0] for target in read_doc(README).links()}
    unlinked = [rel(p) for p in sorted(DOCS.glob("*.md")) if rel(p) not in linked]
    assert not unlinked, f"README.md does not link {unlinked}"
    for recipe in sorted((ROOT / "recipes").glob("*/pipeline.yaml")):
        assert (recipe.parent / "README.md").is_file(), f"{rel(recipe.parent)} has no README.md"
        assert rel(recipe.parent / "README.md") in linked, f"README.md does not link {rel(recipe.parent)}/README.md"


def test_the_readme_keeps_the_lines_ci_and_the_tests_read():
    text = README.read_text(encoding="utf-8")
    ci = [line for line in text.splitlines() if re.match(r"^pip install .*pytest", line)]
    assert ci and "python -m pytest" in ci[0], ".ci/run runs the first 'pip install ... pytest' line of README.md"
    assert re.search(r"^pip install .* aurora-m run recipes/aurora-m-tiny --output-dir \S+$", text, re.M)


# ----------------------------------------------------------------------------- (b) links, paths, names
def top_level() -> set[str]:
    """The repository's own top-level entries (not run folders or build outputs that may lie around)."""
    ignored = {"runs", "build", "dist", "exports"}
    return {
        p.name
        for p in ROOT.iterdir()
        if p.name not in ignored
        and not p.name.endswith(".egg-info")
        and (not p.name.startswith(".") or p.name == ".ci")
    }


def path_tokens(text: str) -> list[str]:
    out = []
    for token in re.split(r"[\s=]+", text):
        token = token.strip("\"'(),;[]").rstrip(".:")
        if token and "://" not in token and not token.startswith(("-", "$")):
            out.append(token)
    return out


def path_exists(base: Path, token: str) -> bool:
    pattern = re.sub(r"<[^>]*>", "*", token.rstrip("/"))
    if any(c in pattern for c in "*?"):
        return any(base.glob(pattern))
    return (base / pattern).exists()


def named_paths(doc: Doc) -> list[tuple[Path, str]]:
    """(base folder, path) for every repository path a page names in backticks or in a code block."""
    texts = doc.code_spans() + ["\n".join(lines) for lang, _, lines in doc.blocks if lang == "bash"]
    top = top_level()
    recipe_dir = doc.path.parent if doc.path.parent.parent == ROOT / "recipes" else None
    found = []
    for text in texts:
        for token in path_tokens(text):
            first = token.split("/")[0]
            if not first:
                continue  # an absolute path: the reader's machine, not the repository
            if first in top and ("/" in token or (ROOT / token).is_file()):
                found.append((ROOT, token))
            elif recipe_dir and (
                (recipe_dir / first).exists() and "/" in token or re.fullmatch(r"[\w.-]+\.(ya?ml|jsonl)", token)
            ):
                found.append((recipe_dir, token))  # a recipe's README names its own files
    return found


def test_every_link_resolves(docs):
    broken = []
    for doc in docs:
        for target in doc.links():
            if re.match(r"^(https?|mailto):", target):
                continue
            path, _, anchor = target.partition("#")
            dest = (doc.path.parent / path).resolve() if path else doc.path
            if not dest.exists():
                broken.append(f"{rel(doc.path)}: {target} (no such file)")
            elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
                broken.append(f"{rel(doc.path)}: {target} (no heading with that anchor)")
    assert not broken, broken


def test_every_path_the_docs_name_exists(docs):
    missing = []
    for doc in docs:
        for base, token in named_paths(doc):
            if not path_exists(base, token):
                missing.append(f"{rel(doc.path)}: {token}")
    assert not missing, missing


def defines(module: Path, name: str) -> bool:
    pattern = (
        rf"^\s*(?:async\s+)?(?:def|class)\s+{name}\b"  # def NAME, class NAME
        rf"|^\s*{name}\s*(?::[^=\n]*)?="  # NAME = ..., NAME: type = ...
        rf"|^\s*(?:from\s.*)?import\s.*\b{name}\b"  # imported into the module
    )
    return bool(re.search(pattern, module.read_text(encoding="utf-8"), re.M))


def resolves(ref: str) -> bool:
    """``aurora_m.a.b``, ``aurora_m.a.b.NAME`` or ``aurora_m.a.b:NAME``: the module exists and defines NAME."""
    dotted, _, attribute = ref.partition(":")
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        base = ROOT.joinpath(*parts[:i])
        for module in (base.with_suffix(".py"), base / "__init__.py"):
            if module.is_file():
                rest = parts[i:] + ([attribute] if attribute else [])
                return not rest or defines(module, rest[0])
        if i == len(parts) and base.is_dir() and not attribute:
            return True
    return False


def test_every_aurora_m_name_the_docs_give_exists(docs):
    missing = []
    for doc in docs:
        texts = doc.code_spans() + ["\n".join(lines) for _, _, lines in doc.blocks]
        for text in texts:
            for ref in re.findall(r"\baurora_m(?:\.[A-Za-z_]\w*)+(?::[A-Za-z_]\w*)?", text):
                if not resolves(ref):
                    missing.append(f"{rel(doc.path)}: {ref}")
    assert not missing, missing


# ----------------------------------------------------------------------------- (c) no to-dos, timings in one place
def test_no_to_dos_and_measured_timings_only_on_the_benchmarks_page(docs):
    problems = []
    for doc in docs:
        text = doc.path.read_text(encoding="utf-8")
        for match in re.finditer(r"\bTODO\b|\bto-do\b|\bTBD\b|\bto be measured\b|\bFIXME\b", text, re.I):
            problems.append(f"{rel(doc.path)}: {match.group(0)!r}")
        if doc.path != DOCS / "benchmarks.md":
            for match in re.finditer(r"\bon this (?:[\w-]+ )?machine\b|\b\d[\d,]* tests\b", text):
                problems.append(f"{rel(doc.path)}: {match.group(0)!r} belongs in docs/benchmarks.md")
    assert not problems, problems


# ----------------------------------------------------------------------------- (d) the commands
@dataclass
class Command:
    doc: str
    line: int
    argv: list[str]
    env: dict[str, str]

    def __str__(self) -> str:
        env = " ".join(f"{k}={v}" for k, v in self.env.items())
        return f"{self.doc}:{self.line}: {env + ' ' if env else ''}{shlex.join(self.argv)}"


def split_commands(line: str) -> list[list[str]]:
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    commands, current = [], []
    for token in lexer:
        if token in ("&&", "||", ";", "|"):
            commands.append(current)
            current = []
        else:
            current.append(token)
    return [c for c in [*commands, current] if c]


def unbracket(token: str) -> str:
    """``[--overwrite]``, an optional flag in a synopsis, as the flag itself."""
    return token[1:-1] if token.startswith("[") and token.endswith("]") else token


def documented_commands() -> list[Command]:
    out = []
    for path in doc_files():
        for lang, first, lines in read_doc(path).blocks:
            if lang != "bash":
                continue
            joined, start = "", None
            for number, line in enumerate(lines, first):
                start = number if not joined else start
                if line.rstrip().endswith("\\"):
                    joined += line.rstrip()[:-1] + " "
                    continue
                joined += line
                for argv in split_commands(joined):
                    env = {}
                    while argv and (argv[0] == "time" or re.fullmatch(r"[A-Za-z_]\w*=\S*", argv[0])):
                        key, _, value = argv.pop(0).partition("=")  # `time` and VAR=value, in either order
                        if value or key != "time":
                            env[key] = value
                    if argv:
                        out.append(Command(rel(path), start, [unbracket(a) for a in argv], env))
                joined = ""
    return out


COMMANDS = documented_commands()
EXTERNAL = {"git", "cd", "ruff", "hf"}  # other tools' commands: setup steps, not ours to check


def kind_of(cmd: Command) -> str | None:
    argv = cmd.argv
    if argv[0] == "aurora-m":
        return "aurora-m"
    if argv[0] == "python" and len(argv) > 1:
        if argv[1] == "-m":
            return "pytest" if argv[2] == "pytest" else "module" if argv[2].startswith("aurora_m") else None
        if argv[1].startswith("scripts/"):
            return "script"
        if argv[1].startswith("benchmarks/"):
            return "benchmark"
    if argv[:2] == ["accelerate", "launch"]:
        return "accelerate"
    if argv[0] == "sbatch":
        return "sbatch"
    if argv[:2] == ["pip", "install"]:
        return "pip"
    if argv[0] in EXTERNAL:
        return "external"
    return None


def test_every_command_in_the_docs_is_accounted_for():
    assert len(COMMANDS) > 20, "the bash blocks of the docs were not read"
    unknown = [str(c) for c in COMMANDS if kind_of(c) is None]
    assert not unknown, f"commands no check covers (add a check, or fix the command): {unknown}"


# --- recipes as the commands name them
def recipe(path: str) -> dict | None:
    file = ROOT / path / "pipeline.yaml"
    return yaml.safe_load(file.read_text()) if file.is_file() else None


def recipe_dirs() -> list[str]:
    return sorted(rel(p.parent) for p in (ROOT / "recipes").rglob("pipeline.yaml"))


def all_variants() -> set[str]:
    return {s["variant"] for r in recipe_dirs() for s in recipe(r)["stages"] if s.get("variant")}


def uses_nanotron(path: str) -> bool:
    return any(s.get("engine") == "nanotron" for s in recipe(path)["stages"])


def flags(tokens: list[str]) -> list[str]:
    return [t.split("=")[0] for t in tokens if t.startswith("-") and not re.fullmatch(r"-\d.*", t)]


def value(tokens: list[str], flag: str) -> str | None:
    for i, token in enumerate(tokens):
        if token == flag and i + 1 < len(tokens):
            return tokens[i + 1]
        if token.startswith(flag + "="):
            return token.split("=", 1)[1]
    return None


def positionals(tokens: list[str]) -> list[str]:
    out = []
    for token in tokens:
        if token.startswith("-"):
            break
        out.append(token)
    return out


# --- what each kind of command needs: --help texts to read, commands to run
AURORA_M = [*shlex.split(shutil.which("aurora-m") or f"{sys.executable} -m aurora_m.cli")]
ACCELERATE = [shutil.which("accelerate") or "accelerate"]


def help_argv(target: tuple[str, ...]) -> list[str]:
    """``("aurora-m", "run")`` -> the argv printing its help."""
    if target[0] == "aurora-m":
        return [*AURORA_M, *target[1:], "--help"]
    if target[0] == "accelerate":
        return [*ACCELERATE, *target[1:], "--help"]
    if target[0].endswith(".py"):
        return [sys.executable, target[0], "--help"]
    return [sys.executable, "-m", target[0], "--help"]


@dataclass
class Check:
    """What one documented command is checked by: help texts that must list flags, and problems found."""

    command: Command
    needs: dict[tuple[str, ...], list[str]] = field(default_factory=dict)  # help target -> flags it must list
    # --key value stage keys, as the CLI splits them: (recipe folders, one of which must take them, the stage)
    overrides: tuple[list[str], str | None, list[str]] | None = None
    problems: list[str] = field(default_factory=list)
    how: str = ""

    def need(self, target: tuple[str, ...], wanted: list[str]) -> None:
        self.needs.setdefault(target, []).extend(wanted)

    def expect(self, ok: bool, problem: str) -> None:
        if not ok:
            self.problems.append(problem)


def check_recipe_args(check: Check, recipe_path: str | None, tokens: list[str]) -> None:
    spec = recipe(recipe_path) if recipe_path else None
    if recipe_path and recipe_path.startswith("recipes/"):
        check.expect(spec is not None, f"{recipe_path} is not a recipe folder (no pipeline.yaml)")
    if spec is None:
        return
    stages = {s["name"] for s in spec["stages"]}
    for flag in ("--stage", "--stages", "--restart", "--resume"):
        given = value(tokens, flag)
        for name in (given or "").split(","):
            check.expect(not name or name in stages, f"{flag} {name}: not a stage of {recipe_path}")


def split_known(tokens: list[str], help_text: str) -> tuple[list[str], list[str]]:
    """(the subcommand's own flags, the ``--key value`` stage keys) of the tokens after the positionals."""
    known, rest, i = [], [], 0
    while i < len(tokens):
        flag = tokens[i].split("=")[0]
        takes_value = re.search(rf"(?<![\w-]){re.escape(flag)} [A-Z_]+", help_text) is not None
        if flag in subcommand_flags(help_text):
            known.append(flag)
            i += 1 + (takes_value and "=" not in tokens[i])
        else:
            rest.append(tokens[i])
            i += 1
    return known, rest


def stage_keys(check: Check, recipe_path: str | None, only: str | None, tokens: list[str]) -> None:
    """``--key value`` tokens that must be keys of the recipe's stages (or of ``only``), as the CLI checks them."""
    if any(t.startswith("--") for t in tokens):
        candidates = [recipe_path] if recipe_path and recipe(recipe_path) else recipe_dirs()
        check.overrides = (candidates, only if recipe_path and recipe(recipe_path) else None, tokens)


def plan_aurora_m(check: Check) -> None:
    args = [a for a in check.command.argv[1:] if a not in ("-v", "-q", "--verbose", "--quiet")]
    sub = args[0]
    check.need(("aurora-m",), [])
    check.expect(sub in COMMAND_NAMES, f"aurora-m has no command {sub!r}")
    if sub == "eval" and args[1:2] == ["code"]:
        check.need(("aurora-m", "eval", "code"), flags(args[2:]))
        check.how = "run (opted in)" if check.command.env.get("AURORA_M_ALLOW_CODE_EXECUTION") == "1" else "--help"
        return
    if sub == "eval" and args[1:2] == ["judge"]:  # the offline judge on a labelled file: cheap, read-only
        check.need(("aurora-m", "eval", "judge"), flags(args[2:]))
        check.how = "run" if value(args, "--judge") in (None, "refusal") else "--help"
        return
    if sub == "convert":
        check.need(("aurora-m", "convert"), [])
        check.need(("aurora-m", "convert", args[1]), flags(args[2:]))
        check.how = "--help"
        return
    rest = args[1:]
    target = positionals(rest)
    if sub in STEP_AND_RUN:
        known, keys = split_known(rest[len(target) :], SUBCOMMAND_HELP[sub])
        check.need(("aurora-m", sub), known)
        stage_keys(check, target[0] if target else None, None if sub == "run" else value(rest, "--stage"), keys)
    else:
        check.need(("aurora-m", sub), flags(rest))
    if sub in STEP_AND_RUN or sub == "validate":
        check_recipe_args(check, target[0] if target else None, rest)
    if sub == "publish":
        variant = value(rest, "--variant")
        check.expect(variant is None or variant in all_variants(), f"--variant {variant}: no recipe has it")
    tiny = target[:1] == ["recipes/aurora-m-tiny"] or target[:1] == [TINY_RUN]
    if sub in ("patches", "plan") or (sub == "validate" and target and recipe(target[0])):
        check.how = "run"
    elif tiny and sub == "run" and flags(rest) == ["--output-dir"] and value(rest, "--output-dir") == TINY_RUN:
        check.how = "run on a copy of tiny_run"  # every step complete: nothing trains
    elif tiny and sub == "publish" and "--out" in flags(rest):
        check.how = "run on a copy of tiny_run"  # a dry run or an export: nothing is pushed
    else:
        check.how = "--help" + (", stage keys" if check.overrides else "")


def plan_script(check: Check, argv: list[str]) -> None:
    """``scripts/X.py ...`` (also as ``accelerate launch``'s script)."""
    script, rest = argv[0], argv[1:]
    if not (ROOT / script).is_file():
        check.problems.append(f"{script}: no such script")
        return
    check.need((script,), flags(rest))
    config = value(rest, "--config")
    check.expect(config is None or (ROOT / config).is_file(), f"--config {config}: no such file")
    check.how = "--help" if rest != ["--help"] else "run (--help)"


def plan_sbatch(check: Check) -> None:
    argv = check.command.argv
    slurm = [i for i, a in enumerate(argv) if a.endswith("launch.slurm")]
    check.expect(bool(slurm), "sbatch of something else than recipes/launch.slurm")
    if not slurm:
        return
    check.expect((ROOT / argv[slurm[0]]).is_file(), f"{argv[slurm[0]]}: no such file")
    script, config, *rest = argv[slurm[0] + 1 :]
    run_args = rest[1:]
    if script == "nanotron":
        check_recipe_args(check, config, rest)
        check.expect(value(rest, "--stage") is not None, "launch.slurm nanotron needs --stage")
        known, keys = split_known(run_args, SUBCOMMAND_HELP["train"])
        check.need(("aurora-m", "train"), known)
        stage_keys(check, config, value(rest, "--stage"), keys)
    else:
        if not (ROOT / "scripts" / f"{script}.py").is_file():
            check.problems.append(f"launch.slurm {script}: no scripts/{script}.py")
            return
        check.expect((ROOT / config).is_file(), f"{config}: no such stage config")
        accelerate = rest[1] if len(rest) > 1 and not rest[1].startswith("-") else None
        if accelerate:
            found = (ROOT / accelerate).is_file() or (ROOT / f"recipes/accelerate_configs/{accelerate}.yaml").is_file()
            check.expect(found, f"{accelerate}: no such accelerate config")
            run_args = rest[2:]
        check.need((f"scripts/{script}.py",), flags(run_args))
    check.how = "--help of what it launches"


def plan_accelerate(check: Check) -> None:
    argv = check.command.argv[2:]
    at = next((i for i, a in enumerate(argv) if a.endswith(".py")), None)
    check.expect(at is not None, "accelerate launch without a script")
    if at is None:
        return
    check.need(("accelerate", "launch"), flags(argv[:at]))
    config = value(argv[:at], "--config_file")
    check.expect(config is None or (ROOT / config).is_file(), f"--config_file {config}: no such file")
    plan_script(check, argv[at:])
    check.how = "--help of accelerate launch and of the script"


def plan_module(check: Check) -> None:
    module, rest = check.command.argv[2], check.command.argv[3:]
    check.expect(resolves(module), f"python -m {module}: no such module")
    if module == "aurora_m.extras":
        check.expect(len(rest) == 1 and (ROOT / rest[0]).is_file(), f"{rest}: no such accelerate config")
        check.how = "run"
    else:
        check.need((module,), flags(rest))
        check_recipe_args(check, value(rest, "--recipe"), rest)
        check.how = "--help"


def markers() -> set[str]:
    """The pytest markers setup.cfg registers."""
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    lines = config.get("tool:pytest", "markers", fallback="").strip().splitlines()
    return {line.split(":")[0].strip() for line in lines if line.strip()}


def extras() -> set[str]:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    return set(cfg["options.extras_require"])


def plan(cmd: Command) -> Check:
    check = Check(cmd)
    kind = kind_of(cmd)
    argv = cmd.argv
    if kind == "aurora-m":
        plan_aurora_m(check)
    elif kind == "script":
        plan_script(check, argv[1:])
    elif kind == "benchmark":
        check.expect((ROOT / argv[1]).is_file(), f"{argv[1]}: no such benchmark")
        check.need((argv[1],), flags(argv[2:]))
        check.how = "--help"
    elif kind == "module":
        plan_module(check)
    elif kind == "accelerate":
        plan_accelerate(check)
    elif kind == "sbatch":
        plan_sbatch(check)
    elif kind == "pip":
        for token in argv[2:]:
            if match := re.fullmatch(r"\.\[([\w,-]+)\]", token):
                unknown = set(match.group(1).split(",")) - extras()
                check.expect(not unknown, f"pip install {token}: no extra {sorted(unknown)} in setup.cfg")
        check.how = "extras exist"
    elif kind == "pytest":
        args = argv[3:]
        for i, token in enumerate(args):
            if i and args[i - 1] == "-m":  # a marker expression: its markers are registered in setup.cfg
                unknown = set(re.findall(r"\w+", token)) - {"not", "and", "or"} - markers()
                check.expect(not unknown, f"-m {token}: no marker {sorted(unknown)} in setup.cfg")
                continue
            if i and args[i - 1] in PYTEST_VALUED:  # an option's value (-n auto, --dist loadgroup)
                continue
            check.expect(token.startswith("-") or (ROOT / token.split("::")[0]).exists(), f"{token}: no such test")
        check.how = "test paths exist"
    else:
        check.how = "external tool"
    return check


# pytest (and pytest-xdist) options whose next token is their value, not a test path
PYTEST_VALUED = {"-n", "--numprocesses", "--maxprocesses", "--dist", "-k", "-p", "--durations", "-o"}
COMMAND_NAMES = {"run", "validate", "rehearse", "data", "train", "eval", "publish", "patches", "convert", "plan"}
STEP_AND_RUN = {"run", "data", "train", "eval"}
# each subcommand's --help: its own flags (the rest, after run/data/train/eval, are stage keys)
SUBCOMMAND_HELP: dict[str, str] = {}


def subcommand_flags(help_text: str) -> set[str]:
    return set(re.findall(r"(?<![\w-])(--?[A-Za-z][\w-]*)", help_text))


def run_all(argvs: list[list[str]], env: dict | None = None, timeout: int = 300) -> list[tuple[int, str, str]]:
    """Start every command at once (they mostly import torch: the CPUs overlap them), then wait for each."""
    procs = [
        subprocess.Popen(
            argv,
            cwd=ROOT,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**os.environ, **OFFLINE, **(env or {})},
        )
        for argv in argvs
    ]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=timeout)
        results.append((proc.returncode, out, err))
    return results


# Stage keys given as --key value, split over a recipe's stages by the CLI's own function, in one process
OVERRIDES = """
import json, sys
from aurora_m.cli import split_overrides
from aurora_m.errors import RecipeError
from aurora_m.recipe import load_recipe
problems = []
for recipe_dir, only, tokens in json.loads(sys.argv[1]):
    try:
        split_overrides(load_recipe(recipe_dir, check_stages=False), tokens, only)
        problems.append(None)
    except RecipeError as err:
        problems.append(str(err))
print(json.dumps(problems))
"""

# The scripts' parsers in one process (each script's --help imports torch, transformers and trl: ~6 s apiece)
SCRIPT_HELPS = """
import importlib.util, json, sys
helps = {}
for path in sys.argv[1:]:
    spec = importlib.util.spec_from_file_location("doc_" + path.replace("/", "_").removesuffix(".py"), path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    helps[path] = module.make_parser().format_help()
print(json.dumps(helps))
"""


@pytest.fixture(scope="module")
def checks() -> list[Check]:
    """Every documented command planned, with the help texts it needs read (all at once)."""
    for sub, (rc, out, err) in zip(
        sorted(COMMAND_NAMES), run_all([[*AURORA_M, s, "--help"] for s in sorted(COMMAND_NAMES)])
    ):
        assert rc == 0, (sub, err[-2000:])
        SUBCOMMAND_HELP[sub] = out
    planned = [plan(c) for c in COMMANDS]
    targets = sorted({t for c in planned for t in c.needs})
    scripts = [t[0] for t in targets if t[0].startswith("scripts/")]
    others = [t for t in targets if not t[0].startswith("scripts/")]
    keyed = [c for c in planned if c.overrides]
    asked = [[d, c.overrides[1], c.overrides[2]] for c in keyed for d in c.overrides[0]]
    results = run_all(
        [
            [sys.executable, "-c", SCRIPT_HELPS, *scripts],
            [sys.executable, "-c", OVERRIDES, json.dumps(asked)],
            *[help_argv(t) for t in others],
        ]
    )
    (rc, out, err), (keys_rc, keys_out, keys_err) = results[:2]
    assert rc == 0, f"the scripts' parsers: {err[-2000:]}"
    assert keys_rc == 0, f"the stage keys: {keys_err[-2000:]}"
    helps = {(path,): text for path, text in json.loads(out).items()}
    answers = iter(json.loads(keys_out))
    for check in keyed:
        found = [next(answers) for _ in check.overrides[0]]
        check.expect(None in found, f"{' '.join(check.overrides[2])}: {found[0]}")
    for target, (rc, out, err) in zip(others, results[2:]):
        assert rc == 0, f"{' '.join(help_argv(target))} failed: {err[-2000:]}"
        helps[target] = out + err
    for check in planned:
        for target, wanted in check.needs.items():
            for flag in wanted:
                check.expect(
                    re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", helps[target]) is not None,
                    f"{flag}: not an option of {' '.join(target)} (see its --help)",
                )
    top = helps[("aurora-m",)]
    for check in planned:
        if check.command.argv[0] == "aurora-m":
            sub = [a for a in check.command.argv[1:] if not a.startswith("-")][0]
            check.expect(re.search(rf"[{{,]{sub}[,}}]", top) is not None, f"aurora-m --help lists no {sub!r}")
    return planned


def test_every_documented_command_flag_and_name_exists(checks):
    problems = [f"{c.command}: {p}" for c in checks for p in c.problems]
    assert not problems, "\n".join(problems)


def test_the_cheap_read_only_commands_run(checks):
    """validate, patches, eval code (opted in), eval judge, python -m aurora_m.extras: run as the docs write them."""
    commands = {tuple(c.command.argv): c.command for c in checks if c.how in ("run", "run (opted in)")}
    for path in ("recipes/aurora-m-tiny", "recipes/aurora-m-15b"):  # the two recipes, whatever the docs say
        commands.setdefault(("aurora-m", "validate", path), Command("-", 0, ["aurora-m", "validate", path], {}))
    ordered = list(commands.values())
    argvs = [[*AURORA_M, *c.argv[1:]] if c.argv[0] == "aurora-m" else [sys.executable, *c.argv[1:]] for c in ordered]
    env_of = {k: v for c in ordered for k, v in c.env.items() if not k.startswith("HF_")}
    failures = []
    for cmd, (rc, out, err) in zip(ordered, run_all(argvs, env=env_of)):
        argv = cmd.argv
        if argv[1:2] == ["validate"] and uses_nanotron(argv[2]) and rc == 2 and "is not installed" in err:
            continue  # a recipe on an engine this machine lacks is refused in one line, as documented
        if argv[1:2] == ["-m"] and argv[2] == "aurora_m.extras" and rc == 2 and "is not installed here" in err:
            continue  # the config is read; it needs a package (deepspeed) this machine lacks
        if rc != 0:
            failures.append(f"{cmd}: exit {rc}: {err.strip()[-1500:]}")
        elif argv[1:3] == ["eval", "code"]:
            expected = "pass@1: 0.0" if "--wrong" in argv else "pass@1: 1.0"
            if out.strip().splitlines()[-1] != expected:
                failures.append(f"{cmd}: ends with {out.strip().splitlines()[-1]!r}, not {expected!r}")
        elif argv[1:3] == ["eval", "judge"] and not re.fullmatch(
            r"agreement: [01]\.\d{4}", out.strip().splitlines()[-1]
        ):
            failures.append(f"{cmd}: ends with {out.strip().splitlines()[-1]!r}, not 'agreement: X'")
    assert not failures, "\n".join(failures)


def test_the_commands_on_a_finished_tiny_run_run(checks, tiny_run, tmp_path):
    """`aurora-m run` again (every step complete) and the publish dry runs and exports, on a copy of the run."""
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run, symlinks=True)
    todo = [c for c in checks if c.how == "run on a copy of tiny_run"]
    assert any(c.command.argv[1] == "run" for c in todo) and any(c.command.argv[1] == "publish" for c in todo)
    todo.sort(key=lambda c: c.command.argv[1] != "run")  # the run first: it writes the summary publish reads
    markers = {p: p.stat().st_mtime_ns for p in run.glob("*/.*.done")}
    assert markers, f"no completion markers in {tiny_run}"
    failures = []
    for n, check in enumerate(todo):
        argv = [str(run) if a == TINY_RUN else a for a in check.command.argv[1:]]
        if "--out" in argv:
            argv[argv.index("--out") + 1] = str(tmp_path / f"out-{n}")
        result = subprocess.run(
            [*AURORA_M, *argv],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=300,
            env={**os.environ, **OFFLINE, **check.command.env},
        )
        if result.returncode != 0:
            failures.append(f"{check.command}: exit {result.returncode}: {result.stderr.strip()[-1500:]}")
        elif argv[0] == "run" and set(json.loads(result.stdout.strip().splitlines()[-1]).values()) != {"completed"}:
            failures.append(f"{check.command}: not every stage is complete: {result.stdout[-500:]}")
        elif argv[0] == "run" and {p: p.stat().st_mtime_ns for p in run.glob("*/.*.done")} != markers:
            failures.append(f"{check.command}: ran steps again on a complete run")
        elif argv[0] == "publish" and not any((tmp_path / f"out-{n}").rglob("model.safetensors")):
            failures.append(f"{check.command}: wrote no model into --out")
    assert not failures, "\n".join(failures)
