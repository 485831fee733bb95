"""nanotron's config schema (its dataclasses and their fields, nested), read from its source with ``ast``.

nanotron is neither installed nor importable where configs are emitted, so the schema of the pinned commit is
recorded once as a fixture, from the source files (never by importing them)::

    git clone https://github.com/huggingface/nanotron && git -C nanotron checkout COMMIT
    python -m aurora_m.engines.nanotron.schema nanotron/src/nanotron/config COMMIT \
        > tests/fixtures/nanotron/schema.json

:func:`check` walks an emitted config against it, as nanotron's strict dacite loader would: every key must be
a field of the dataclass at its place, every field without a default must be given, and a value typed as a
union of dataclasses must fit one of them. ``model.model_config`` is typed ``Union[..., Any]`` there: it is
checked against our own :class:`.modelconfig.GPTBigCodeConfig`.
"""

from __future__ import annotations

import ast
import json
import sys
from dataclasses import MISSING, fields
from pathlib import Path


def _is_dataclass(node: ast.ClassDef) -> bool:
    for deco in node.decorator_list:
        target = deco.func if isinstance(deco, ast.Call) else deco
        if (getattr(target, "id", None) or getattr(target, "attr", None)) == "dataclass":
            return True
    return False


def generate(config_dir: str | Path, commit: str) -> dict:
    """Every dataclass (fields: annotation, required) and type alias of the ``*.py`` files in ``config_dir``."""
    classes, aliases = {}, {}
    for path in sorted(Path(config_dir).glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in tree.body:
            if isinstance(node, ast.ClassDef) and _is_dataclass(node):
                own = {}
                for item in node.body:
                    if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                        if "ClassVar" in ast.unparse(item.annotation):
                            continue
                        own[item.target.id] = {"type": ast.unparse(item.annotation), "required": item.value is None}
                bases = [ast.unparse(b) for b in node.bases]
                classes[node.name] = {"file": path.name, "bases": bases, "fields": own}
            elif isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
                if isinstance(node.value, ast.Subscript) and ast.unparse(node.value.value) in ("Union", "Optional"):
                    aliases[node.targets[0].id] = ast.unparse(node.value)
    for spec in classes.values():  # inherited fields first, as dataclasses order them
        inherited = {}
        for base in spec["bases"]:
            inherited.update(classes.get(base, {}).get("fields", {}))
        spec["fields"] = {**inherited, **spec["fields"]}
    return {"nanotron_commit": commit, "dataclasses": classes, "aliases": aliases}


# ----------------------------------------------------------------------------- checking a config against it
def _type_names(expr: ast.expr) -> tuple[str, list]:
    """(outer name, arguments) of a type annotation: ``Optional[List[X]]`` -> ("Optional", [List[X]])."""
    if isinstance(expr, ast.Subscript):
        inner = expr.slice.elts if isinstance(expr.slice, ast.Tuple) else [expr.slice]
        return ast.unparse(expr.value), list(inner)
    return ast.unparse(expr), []


class SchemaError(ValueError):
    pass


def _own_model_config() -> dict:
    from .modelconfig import GPTBigCodeConfig

    return {
        "fields": {
            f.name: {"type": "Any", "required": f.default is MISSING and f.default_factory is MISSING}
            for f in fields(GPTBigCodeConfig)
        }
    }


def check(config: dict, schema: dict, root: str = "Config") -> list[str]:
    """The dotted keys of ``config`` that nanotron's schema does not have (empty when it all fits)."""
    classes, aliases = schema["dataclasses"], schema["aliases"]

    def fits(value, expr: ast.expr, where: str) -> list[str]:
        name, args = _type_names(expr)
        if name in aliases:
            return fits(value, ast.parse(aliases[name], mode="eval").body, where)
        if name == "Optional":
            return [] if value is None else fits(value, args[0], where)
        if name == "Union":
            if value is None and any(ast.unparse(a) == "None" for a in args):
                return []
            if any(ast.unparse(a) == "Any" for a in args) and where.endswith("model_config"):
                return of_class(value, _own_model_config(), where)
            tries = [fits(value, a, where) for a in args]
            return [] if any(not t for t in tries) else min(tries, key=len)
        if name in ("List", "list", "Tuple", "tuple"):
            if not isinstance(value, list):
                return [f"{where}: expected a list"]
            return [p for i, v in enumerate(value) for p in fits(v, args[0], f"{where}[{i}]")] if args else []
        if name in classes:
            return of_class(value, classes[name], where)
        return []  # a scalar or a type nanotron casts itself (Path, torch.dtype, enums)

    def of_class(value, spec: dict, where: str) -> list[str]:
        if not isinstance(value, dict):
            return [f"{where}: expected a mapping"]
        problems = [f"{where}.{k}: not a field" for k in value if k not in spec["fields"]]
        problems += [
            f"{where}.{k}: required, missing" for k, f in spec["fields"].items() if f["required"] and k not in value
        ]
        for key, val in value.items():
            if key in spec["fields"] and spec["fields"][key]["type"] != "Any":
                problems += fits(val, ast.parse(spec["fields"][key]["type"], mode="eval").body, f"{where}.{key}")
        return problems

    return of_class(config, classes[root], root)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        sys.stderr.write("usage: python -m aurora_m.engines.nanotron.schema NANOTRON_SRC/src/nanotron/config COMMIT\n")
        return 2
    sys.stdout.write(json.dumps(generate(argv[0], argv[1]), indent=1, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
