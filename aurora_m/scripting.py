"""What every script in ``scripts/`` shares, TRL style: ``make_parser()`` gives a parser for one stage kind whose
``--help`` lists every key of its dataclasses; ``run_script(parser, main)`` parses ``--config STAGE.yaml`` plus
``--key value`` overrides (checked like ``aurora-m validate``) and calls ``main(*dataclasses, config_file=...)``.

Works the same under ``python``, ``accelerate launch`` and ``torchrun``; a mistake in the YAML or a
flag prints one line naming the file and key and exits with code 2.
"""

from __future__ import annotations

import inspect
import sys
from pathlib import Path

from trl import TrlParser

from .errors import RecipeError, exit_on_failure
from .extras import check_extras
from .io import check_writable
from .logs import setup_logging
from .overrides import read_yaml
from .signals import sigterm_as_interrupt
from .stage_checks import parse_stage, source_keys, stage_dataclasses


class StageParser(TrlParser):
    """TrlParser over a stage kind's dataclasses, parsing through the recipe checks. Given several kinds (a script
    serving pretrain and SFT stages), ``--help`` lists the first kind's keys and the ``--config`` YAML's list of
    sources picks the kind when parsing: building the parser reads no file and no command line."""

    def __init__(self, kind: str | tuple[str, ...], description: str | None = None):
        self.kinds = (kind,) if isinstance(kind, str) else tuple(kind)
        super().__init__(stage_dataclasses(self.kinds[0]), description=description)
        self.add_argument("--config", help="a stage YAML of a recipe folder (required)")
        self.kind = self.kinds[0]
        self.config_file: Path | None = None

    def parse_args_and_config(self, args=None, return_remaining_strings=False, fail_with_unknown_args=True):
        argv = list(sys.argv[1:] if args is None else args)
        if "-h" in argv or "--help" in argv:
            self.print_help()
            sys.exit(0)
        if "--config" not in argv or argv.index("--config") + 1 >= len(argv):
            raise RecipeError(
                None, "--config", "missing: give a stage YAML, e.g. --config recipes/aurora-m-tiny/cap.yaml"
            )
        i = argv.index("--config")
        self.config_file = Path(argv[i + 1])
        overrides = argv[:i] + argv[i + 2 :]
        if len(self.kinds) > 1:
            self.kind = kind_of(argv, default=self.kinds[0])
        parsed = parse_stage(self.config_file, self.kind, overrides)
        output_dirs = [a.output_dir for a in parsed if hasattr(a, "output_dir")]
        if output_dirs:
            if "--output_dir" not in overrides:  # Trainer would write into ./trainer_output
                raise RecipeError(None, "--output_dir", "missing: the folder for checkpoints and the final model")
            given = overrides[overrides.index("--output_dir") + 1] if overrides[-1] != "--output_dir" else ""
            if not given.strip():  # "" would be the working folder
                raise RecipeError(None, "--output_dir", "empty: give the folder for checkpoints and the final model")
            check_writable(output_dirs[0], "--output_dir")  # also refuses a file
        return parsed


def kind_of(argv: list[str], default: str) -> str:
    """The kind whose list of sources the ``--config`` YAML holds (pretrain: mixture, sft: sft_sources, ...)."""
    if "--config" in argv and argv.index("--config") + 1 < len(argv):
        keys = read_yaml(argv[argv.index("--config") + 1])
        for key, kind in source_keys().items():
            if key in keys:
                return kind.name
    return default


def run_script(make_parser, main, argv: list[str] | None = None):
    """Parse and run; user mistakes, Ctrl-C and a full disk end in one line and an exit code, not a traceback."""
    setup_logging()
    argv = list(sys.argv[1:] if argv is None else argv)
    output_dir = argv[argv.index("--output_dir") + 1] if "--output_dir" in argv[:-1] else None
    try:
        with sigterm_as_interrupt():  # Slurm, `timeout` and `docker stop` end a script as Ctrl-C does
            parser = make_parser()
            parsed = parser.parse_args_and_config(argv)
            check_extras(parser.config_file, *parsed, launch=True)  # this machine and its accelerate launch
            # a script serving several kinds (scripts/data.py) is told which one the --config YAML is
            serves_kinds = "kind" in inspect.signature(main).parameters and hasattr(parser, "kind")
            return main(*parsed, config_file=parser.config_file, **({"kind": parser.kind} if serves_kinds else {}))
    except (Exception, KeyboardInterrupt) as exc:  # noqa: BLE001 - re-raised unless it is the user's to fix
        sys.exit(exit_on_failure(Path(sys.argv[0]).name, exc, output_dir))
