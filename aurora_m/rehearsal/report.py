"""The rehearsal's report: what would a full run read and cost, from what the miniature measured, and a table.

Full-size figures are estimates from the sample: bytes to read = the source's files (as many as its split
resolves to) times the mean real size of the files read, where the recorded Hub knows the real sizes (else
unknown, said so); data-prep core-hours = this machine's cleaning seconds per byte read times those bytes;
shard disk = the kept share of that text, in tokens at the measured bytes per token, at 2 bytes a token.
Against the recorded Hub the byte ratios come from its small files, so they are rough; online they are real.
"""

from __future__ import annotations

from ..io import human_size

TOKEN_BYTES = 2  # uint16 shards: StarCoder's 49,152-token vocabulary (datatrove picks 4 bytes above 65,536)


def _real_bytes(source: dict, hub) -> int | None:
    if hub is None or not source.get("repo") or source["repo"] not in hub.repos:
        return None
    repo = hub.repos[source["repo"]]
    sizes = [repo.real_sizes.get(f) for f in source.get("files_read", []) if f in repo.real_sizes]
    sizes = [s for s in sizes if s]
    if not sizes or not source.get("n_files"):
        return None
    return int(sum(sizes) / len(sizes) * source["n_files"])


def full_size_costs(report: dict, hub) -> dict:
    """Per distinct source (repo, config, dir, files, split): bytes to read, data-prep core-hours, shard disk."""
    seen, rows = set(), []
    total = {"bytes_to_read": 0, "data_prep_core_hours": 0.0, "shard_disk_bytes": 0, "unknown": []}
    for source in report["sources"]:
        ident = (source["repo"] or source["path"], source["config"], source["data_dir"], str(source["data_files"]))
        if ident in seen and "clean_seconds" not in source:
            continue
        seen.add(ident)
        full = _real_bytes(source, hub)
        row = {"stage": source["stage"], "source": source["name"], "repo": ident[0], "bytes_to_read": full}
        if full is None:
            total["unknown"].append(f"{source['stage']}/{source['name']}")
        elif source.get("clean_seconds") and source.get("bytes_read"):
            text_share = source["text_bytes"] / source["bytes_read"]
            kept = list(source.get("kept_after", {}).values())
            kept_share = kept[-1] / max(kept[0], 1) if kept else 1.0
            row["data_prep_core_hours"] = round(source["clean_seconds"] / source["bytes_read"] * full / 3600, 1)
            if source.get("bytes_per_token"):
                row["shard_disk_bytes"] = int(full * text_share * kept_share / source["bytes_per_token"] * TOKEN_BYTES)
                total["shard_disk_bytes"] += row["shard_disk_bytes"]
            total["data_prep_core_hours"] += row["data_prep_core_hours"]
        if full is not None and ident not in {tuple(r.get("_id", ())) for r in rows}:
            total["bytes_to_read"] += full
        row["_id"] = list(ident)
        rows.append(row)
    for row in rows:
        row.pop("_id")
    total["data_prep_core_hours"] = round(total["data_prep_core_hours"], 1)
    return {"sources": rows, "total": total}


def render_table(report: dict) -> str:
    lines = [f"# Rehearsal of {report['recipe']} (hub: {report['hub']})", ""]
    if report.get("refused"):
        lines += [f"**Refused:** {report['refused']}", ""]
    lines += ["| stage | kind | status | steps / reason |", "|---|---|---|---|"]
    for stage in report["stages"]:
        detail = stage.get("reason") or ", ".join(f"{k}: {v}" for k, v in stage["steps"].items())
        lines.append(f"| {stage['name']} | {stage['kind']} | {stage['status']} | {detail} |")
    lines += [
        "",
        "| stage | list | source | repo / path | config | files (read/all) | rows read | bytes read | columns mapped "
        "| kept after each filter | bytes/token |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in report["sources"]:
        mapped = "; ".join(f"{k}={'+'.join(v)}" for k, v in s.get("columns_mapped", {}).items())
        kept = " > ".join(f"{k} {v}" for k, v in s.get("kept_after", {}).items()) or "-"
        files = f"{len(s.get('files_read') or [])}/{s.get('n_files') if s.get('n_files') is not None else '?'}"
        lines.append(
            f"| {s['stage']} | {s['key']} | {s['name']} | {s['repo'] or s['path']} | {s['config'] or '-'} | {files} "
            f"| {s['rows_read']} | {human_size(s['bytes_read'])} | {mapped} | {kept} "
            f"| {s.get('bytes_per_token') or '-'} |"
        )
    lines += _miniature_lines(report)
    full = report.get("full_size")
    if full:
        t = full["total"]
        lines += [
            "",
            f"Full size (estimated from the sample): {human_size(t['bytes_to_read'])} to read where sizes are known, "
            f"{t['data_prep_core_hours']} data-prep core-hours, {human_size(t['shard_disk_bytes'])} of token shards; "
            f"sizes unknown for {len(t['unknown'])} source(s): {', '.join(t['unknown']) or 'none'}.",
        ]
    return "\n".join(lines) + "\n"


def _miniature_lines(report: dict) -> list[str]:
    """What the miniature changed (the scale factor, model, tokenizer, sources left out) and what each stage did."""
    mini = report.get("miniature")
    if not mini:
        return []
    lines = [
        "",
        f"## In miniature (scale factor {mini['scale_factor']:,})",
        "",
        f"- budgets: {mini['scale']}",
        f"- model: {mini['model']}",
        f"- tokenizer: {mini['tokenizer']}",
    ]
    if mini.get("harness"):
        lines.append(
            f"- lm-eval: the recipe's tasks ({mini['harness'].get('recipe_tasks')}) are not served by the "
            f"recorded Hub: the harness suite ran on {mini['harness'].get('run_on')}"
        )
    lines += [
        f"- held-out fraction of {k}: {v} (the recipe's leaves one side of the sample empty)"
        for k, v in mini.get("holdouts", {}).items()
    ]
    lines += [f"- left out of {k}: {v}" for k, v in mini.get("left_out", {}).items()]
    lines += [f"- not run in {k}: {v}" for k, v in mini.get("not_run", {}).items()]
    lines += [
        "",
        "| stage | status | step seconds | losses (first > last, steps) | outputs |",
        "|---|---|---|---|---|",
    ]
    for stage in report["stages"]:
        seconds = ", ".join(f"{k} {v}" for k, v in stage.get("durations_s", {}).items()) or "-"
        loss = stage.get("losses")
        loss = f"{loss['first']:.3f} > {loss['last']:.3f} ({loss['steps']})" if loss else "-"
        outputs = (
            stage.get("model") and "model" or ", ".join(stage.get("exports") or stage.get("results") or []) or "-"
        )
        lines.append(f"| {stage['name']} | {stage['status']} | {seconds} | {loss} | {outputs} |")
    return lines
