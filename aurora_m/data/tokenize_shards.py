"""The tokenize phase of one source: fill-in-the-middle for code, then datatrove's tokenizer writes shuffled
``.ds`` shards into ``tokens/<source>/``.
"""

from __future__ import annotations

from ..args import MixtureArguments
from ..errors import RecipeError
from ..layout import DatasetDir
from ..source_spec import SourceSpec

TOKENIZE_BATCH = 1000


def _tokenize_chain(
    spec: SourceSpec,
    args: MixtureArguments,
    d: DatasetDir,
    tokenizer_file: str,
    eos: str,
    deduped: bool,
    seed: int,
    config_file,
) -> tuple[list, int]:
    from datatrove.pipeline.readers import JsonlReader

    from .clean import FillInTheMiddle
    from .intake import ShardWriter

    folder = d.work / ("dedup" if deduped else "clean") / spec.name
    files = len(list(folder.glob("*.jsonl.gz"))) if folder.is_dir() else 0
    if not files:
        from .report import why_empty

        raise RecipeError(config_file, f"mixture[{spec.name}]", f"documents to train on: {why_empty(d, spec)}")
    steps: list = [JsonlReader(str(folder), glob_pattern="*.jsonl.gz", add_file_path=False)]
    if spec.lang == "code" and spec.source_format.free_text and args.fim_rate > 0:
        steps.append(FillInTheMiddle(args.fim_rate, args.fim_spm_rate, seed=seed))
    # batch_size: documents held per tokenizer batch (datatrove's 10,000 made memory follow file size)
    steps.append(
        ShardWriter(
            str(d.source_tokens(spec.name)),
            tokenizer_file,
            eos_token=eos,
            local_working_dir=str(d.work / "tokenize" / spec.name),
            seed=seed,
            shuffle_documents=True,
            batch_size=TOKENIZE_BATCH,
        )
    )
    return steps, files  # one task per (size-capped) file: memory per task does not grow with the corpus
