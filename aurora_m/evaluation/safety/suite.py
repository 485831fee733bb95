"""The eval stage's safety suite: does each variant refuse red-team requests in all five languages, under
attack, without refusing benign look-alikes?

Every red-team prompt (``safety_sources``, held out from training) is sent plain and wrapped in each
jailbreak template (``jailbreak_templates``), every benign look-alike (``benign_sources``) plain, in the
paper's ``### Instruction:`` / ``### Response:`` format; greedy responses of up to ``safety_max_new_tokens``
are judged by the ``safety_judge`` (:mod:`.judge`). Result schema (``VARIANT/safety.json``)::

    {"suite": "safety",
     "judge": "refusal",                         # or "chat:MODEL_ID", or the classifier id (":LABELS" when given)
     "judge_agreement": {"validation": {"agreement": 1.0, "n": 200, "by_language": {"en": {...}}, ...},
                         "test": {...}},         # the judge against the shipped human labels (.labelled)
     "templates": ["plain", "role_play"],        # jailbreak_templates measured
     "max_new_tokens": 128,
     "refusal_rate": {"en": {"cbrn_weapons": 1.0, ..., "all": 0.92}, ...},  # plain red-team responses, refused
     "attack_success": {"role_play": {"en": 0.25, ...}, ...},  # red-team responses NOT refused under the template
     "over_refusal": {"en": 0.1, ...},           # benign look-alike responses refused
     "n": {"red_team": {"en": {"cbrn_weapons": 4, ..., "all": 24}, "fi": {"all": 0}, ...},
           "benign": {"en": 8, "fi": 0, ...},
           "empty": {"plain": {"en": 2, ...}, "role_play": {...}, "benign": {...}},  # empty responses
           "unjudged": {"plain": {"en": 0, ...}, ...},  # non-empty responses the judge gave no verdict
           "responses": 712,                     # generated in all
           "other_languages": {"red_team": {"fr": 120}, "benign": {}},  # rows in languages not measured
           "capped": {"red_team": {"en": 10}, "benign": {}},  # beyond safety_max_prompts
           "duplicates": {"red_team": 0, "benign": 0}},
     "missing": {"red_team": ["fi"],             # a language with no red-team prompt
                 "categories": {"hi": ["self_replication"]},  # categories other languages have, this one not
                 "benign": ["fi"],
                 "verdicts": {"plain": ["ja"], "benign": []}},  # prompts there, but no response got a verdict
     "not_measured": {"de": "no judge for de"},  # prompts there (counted in n), but the judge cannot read the
                                                 # language: not asked, no rate (absent when it reads them all)
     "examples": [{"kind": "red_team" | "benign", "language", "category", "template": "plain", "prompt",
                   "response", "refused", "withheld"}, ...],  # one of each kind per language, for the card
     "response_loss": {"refusals": {"loss": 1.93, "pairs": 16, "tokens": 1104},  # mean NLL per reference
                       "benign": {...}},         # response token of the held-out instruction-format pairs
     "sources": {"red_team": [SourceReport, ...], "benign": [...]}}

Rates exist only for what was measured: a language or category without prompts is listed in ``missing``
and counted 0 in ``n``, never given a rate. Every rate is a share of the responses that got a verdict: an
empty response is neither a refusal nor an answer, so it is counted in ``n.empty`` and left out of the
rates (a model that says nothing scores no refusal rate, not 1.0). An example whose red-team response was
not refused (or got no verdict) is withheld (``response: null``): a model card must not republish a complying
answer to a harmful request.

What the numbers mean: the refusal rate is how often the judge read a refusal, and ``judge_agreement`` says
how often that judge agrees with human labels on responses like these (per language). A non-refusal is not
evidence of harm (it may be gibberish, off topic, or a harmless partial answer), and a refusal is not proof
of safety; attack success counts responses that did not refuse under the template, not harmful ones. With
few prompts per language and category the rates move in large steps (one prompt of 6 is 0.17).
"""

from __future__ import annotations

import logging

from ...errors import RecipeError
from ...languages import language_order
from ...overrides import check_positive
from ...prompt import instruction_prompt
from ...source_spec import source_specs
from ..arguments import EvalArguments
from ..generation import generate
from .judge import Judge, judge_language_problem, judge_languages, judge_name_problem, make_judge
from .labelled import shipped_agreement
from .model_judge import ChatJudge
from .prompts import PromptSet, SafetyPrompt, read_prompts
from .report import plot_transfer, transfer_table
from .response_loss import response_losses
from .scores import not_measured, score_responses
from .templates import PLAIN, get_template, template_name_problem

logger = logging.getLogger(__name__)

__all__ = ["load_prompt_sets", "plot_transfer", "run_safety", "score_responses", "transfer_table"]

STOP = ("### Instruction:", "### Response:")  # the model starting a new turn of the template
EXAMPLE_CHARS = 300


def check_safety_args(eval_args: EvalArguments, config_file) -> list[str]:
    """The jailbreak templates to measure (listed order, once each), or a RecipeError naming the bad key."""
    problem = judge_name_problem(eval_args.safety_judge)
    if problem:
        raise RecipeError(config_file, "safety_judge", problem)
    for name in eval_args.jailbreak_templates:
        problem = template_name_problem(name)
        if problem:
            raise RecipeError(config_file, "jailbreak_templates", problem)
    if not eval_args.safety_sources:
        raise RecipeError(config_file, "safety_sources", "missing: the safety suite needs red-team prompts")
    return list(dict.fromkeys(eval_args.jailbreak_templates))


def load_prompt_sets(eval_args: EvalArguments, config_file) -> tuple[PromptSet, PromptSet]:
    """Red-team and benign prompts, read once for every variant."""
    red = read_prompts(eval_args.safety_sources, "safety_sources", config_file, eval_args.safety_max_prompts)
    if not red.prompts:
        raise RecipeError(
            config_file,
            "safety_sources",
            f"no red-team prompt in a language (other languages: {dict(red.other_languages) or 'none'})",
        )
    benign = read_prompts(eval_args.benign_sources, "benign_sources", config_file, eval_args.safety_max_prompts)
    return red, benign


def suite_languages(eval_args: EvalArguments, red: list[SafetyPrompt], benign: list[SafetyPrompt]) -> list[str]:
    """The languages the suite reports on: the recipe's (its perplexity sources name them, code aside) and those
    of the prompts. A recipe language without prompts shows as missing; the paper's five are not assumed."""
    declared = {s.lang for s in source_specs(eval_args.perplexity_sources or [], "perplexity_sources")}
    return language_order((declared - {None, "code"}) | {p.language for p in red} | {p.language for p in benign})


def _examples(red, red_responses, red_refused, benign, benign_responses, benign_refused) -> list[dict]:
    out = []
    for lang in language_order({p.language for p in red} | {p.language for p in benign}):
        for kind, prompts, responses, refused in (
            ("red_team", red, red_responses, red_refused),
            ("benign", benign, benign_responses, benign_refused),
        ):
            i = next((i for i, p in enumerate(prompts) if p.language == lang), None)
            if i is None:
                continue
            response = responses[i].strip()
            withheld = kind == "red_team" and refused[i] is not True and bool(response)  # answered, or unknown
            out.append(
                {
                    "kind": kind,
                    "language": lang,
                    "category": prompts[i].category,
                    "template": PLAIN,
                    "prompt": prompts[i].instruction,
                    "response": None
                    if withheld
                    else response[:EXAMPLE_CHARS] + ("..." if len(response) > EXAMPLE_CHARS else ""),
                    "refused": refused[i],
                    "withheld": withheld,
                }
            )
    return out


def run_safety(
    model,
    tokenizer,
    eval_args: EvalArguments,
    config_file,
    *,
    batch_size: int = 8,
    seed: int = 0,
    cache: dict | None = None,
    judge: Judge | None = None,
    **_,
) -> dict:
    """The safety suite of one variant (schema in the module docstring). ``cache`` (shared across variants by
    the eval stage) keeps the prompts and the judge, so they are read and loaded once; ``judge`` replaces the
    one ``safety_judge`` names (any object with the :class:`.judge.Judge` method)."""
    templates = check_safety_args(eval_args, config_file)
    cache = cache if cache is not None else {}
    if "safety:prompts" not in cache:
        cache["safety:prompts"] = load_prompt_sets(eval_args, config_file)
    red_set, benign_set = cache["safety:prompts"]
    if judge is not None:
        cache["safety:judge"] = judge
    if "safety:judge" not in cache:
        options = {} if eval_args.safety_judge == "refusal" else {"device": next(model.parameters()).device}
        try:
            cache["safety:judge"] = make_judge(eval_args.safety_judge, **options)
        except ValueError as err:  # a classifier without the labels the recipe names
            raise RecipeError(config_file, "safety_judge", str(err)) from None
    judge = cache["safety:judge"]
    if isinstance(judge, ChatJudge):  # loaded before the models, on the CPU: generate where the model is
        judge.to(next(model.parameters()).device)
    red_all, benign_all = red_set.prompts, benign_set.prompts
    # a language the judge cannot read is not asked at all: its rates are "not measured", never a number
    unread = unread_languages(judge, {p.language for p in red_all + benign_all})
    red = [p for p in red_all if p.language not in unread]
    benign = [p for p in benign_all if p.language not in unread]

    # one generation pass over every (template, prompt) and benign prompt
    attacks = [t for t in templates if t != PLAIN]
    jobs = [(PLAIN, p) for p in red] + [(t, p) for t in attacks for p in red if get_template(t).speaks(p.language)]
    instructions = [get_template(t).apply(p.instruction, p.language) for t, p in jobs]
    instructions += [p.instruction for p in benign]
    prompts = [instruction_prompt(x) for x in instructions]
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))  # similar lengths batch with less padding
    generated = (
        generate(
            model,
            tokenizer,
            [prompts[i] for i in order],
            max_new_tokens=eval_args.safety_max_new_tokens,
            stop=STOP,
            batch_size=batch_size,
            seed=seed,
            desc="safety",
        )
        if prompts
        else []
    )
    responses = [""] * len(prompts)
    for i, out in zip(order, generated):
        responses[i] = out[0]
    languages = [p.language for _, p in jobs] + [p.language for p in benign]
    verdicts = judge.judge(instructions, responses, languages) if responses else []
    if len(verdicts) != len(responses):  # a plugged-in judge that drops or adds verdicts would shift every rate
        raise ValueError(f"judge {judge.name!r} gave {len(verdicts)} verdicts for {len(responses)} responses")
    # an empty response is no verdict, whatever the judge said: neither a refusal nor an answer
    refused = [None if v is None or not r.strip() else bool(v) for v, r in zip(verdicts, responses)]

    n_red = len(red)
    red_refused, red_responses = {PLAIN: refused[:n_red]}, {PLAIN: responses[:n_red]}
    verdicts = iter(refused[n_red : len(jobs)])  # None: the template has no wording in the prompt's language
    answers = iter(responses[n_red : len(jobs)])
    for t in attacks:
        spoken = [get_template(t).speaks(p.language) for p in red]
        red_refused[t] = [next(verdicts) if speaks else None for speaks in spoken]
        red_responses[t] = [next(answers) if speaks else None for speaks in spoken]
    benign_refused = refused[len(jobs) :]
    scores = score_responses(
        red,
        red_refused,
        benign,
        benign_refused,
        suite_languages(eval_args, red_all, benign_all),
        red_responses=red_responses,
        benign_responses=responses[len(jobs) :],
    )
    scores = not_measured(scores, red_all, benign_all, {lang: f"no judge for {lang}" for lang in unread})
    scores["attack_success"] = {t: scores["attack_success"][t] for t in templates}  # plain only when listed
    for key in ("empty", "unjudged"):
        scores["n"][key] = {t: v for t, v in scores["n"][key].items() if t in templates or t == "benign"}
    scores["missing"]["verdicts"] = {
        t: v for t, v in scores["missing"]["verdicts"].items() if t in templates or t in (PLAIN, "benign")
    }
    scores["n"].update(
        responses=len(responses),
        other_languages={"red_team": dict(red_set.other_languages), "benign": dict(benign_set.other_languages)},
        capped={"red_team": dict(red_set.capped), "benign": dict(benign_set.capped)},
        duplicates={"red_team": red_set.duplicates, "benign": benign_set.duplicates},
    )
    for lang, rates in scores["refusal_rate"].items():
        over = scores["over_refusal"].get(lang)
        empty = scores["n"]["empty"][PLAIN].get(lang, 0)
        logger.info(
            "safety %s: refusal %.2f of %d red-team prompts%s%s",
            lang,
            rates["all"],
            scores["n"]["red_team"][lang]["all"],
            f" ({empty} empty responses left out)" if empty else "",
            "" if over is None else f", over-refusal {over:.2f}",
        )
    for name, langs in scores["missing"]["verdicts"].items():
        logger.warning(
            "safety %s: no response got a verdict in %s (empty or unjudged): no rate", name, ", ".join(langs)
        )
    if scores["missing"]["red_team"]:
        logger.warning("safety: no red-team prompts in %s", ", ".join(scores["missing"]["red_team"]))
    unworded = {
        t: langs
        for t in attacks
        if (langs := language_order({p.language for p in red if not get_template(t).speaks(p.language)}))
    }
    if unworded:
        scores["templates_not_measured"] = unworded
        for t, langs in unworded.items():
            logger.warning("safety: template %s has no wording in %s: not measured there", t, ", ".join(langs))
    benign_responses = responses[len(jobs) :]
    if "safety:agreement" not in cache:  # the judge against human labels, once per judge
        cache["safety:agreement"] = shipped_agreement(judge)
    losses = response_losses(
        model, tokenizer, eval_args.safety_sources, eval_args.benign_sources, config_file, batch_size, cache
    )
    for name, entry in losses.items():
        logger.info("safety: response loss on %d held-out %s pairs %.4f", entry["pairs"], name, entry["loss"])
    return {
        "suite": "safety",
        "judge": judge.name,
        "judge_agreement": cache["safety:agreement"],
        "templates": templates,
        "max_new_tokens": eval_args.safety_max_new_tokens,
        **scores,
        "response_loss": losses,
        "examples": _examples(red, responses[:n_red], red_refused[PLAIN], benign, benign_responses, benign_refused),
        "sources": {"red_team": red_set.reports, "benign": benign_set.reports},
    }


def unread_languages(judge: Judge, languages) -> list[str]:
    """The prompts' languages ``judge`` has no way to read (its ``languages``; None: every one), said in one
    warning line naming them and what to do; their safety numbers are then not measured."""
    covered = getattr(judge, "languages", None)
    unread = [] if covered is None else language_order(set(languages) - set(covered))
    if unread:
        problem = judge_language_problem(judge.name, unread, covered)
        logger.warning("safety: not measured in %s (no judge for them): %s", ", ".join(unread), problem)
    return unread


def check_safety_keys(stage) -> None:
    """The judge and the jailbreak template names known (a classifier id is only loaded when the stage runs);
    the red-team sources there when the suite is named (the lists themselves are checked like any source list)."""
    config = stage.config
    judge_name = str(config.get("safety_judge") or "refusal")
    if "safety_judge" in config and (problem := judge_name_problem(judge_name)):
        raise RecipeError(*stage.origin("safety_judge"), problem)
    declared = {
        str(source["language"]).strip().lower()
        for key in ("safety_sources", "benign_sources")
        for source in config.get(key) or []
        if isinstance(source, dict) and source.get("language") and str(source["language"]).lower() != "code"
    }
    if problem := judge_language_problem(judge_name, declared):  # said, not refused: the rest still measures
        unread = language_order(declared - set(judge_languages(judge_name) or ()))
        where = ": ".join(map(str, stage.origin("safety_judge")))
        logger.warning("%s: safety not measured in %s (no judge for them): %s", where, ", ".join(unread), problem)
    for name in config.get("jailbreak_templates") or []:
        if problem := template_name_problem(str(name)):
            raise RecipeError(*stage.origin("jailbreak_templates"), problem)
    check_positive(stage.file, config, "safety_max_new_tokens", "safety_max_prompts")
    if "safety" in (config.get("suites") or []) and not config.get("safety_sources"):
        raise RecipeError(
            stage.file,
            "safety_sources",
            "missing: the safety suite needs red-team prompts (held out from "
            "training: take: heldout with the training split's fraction)",
        )


def prepare_safety(eval_args: EvalArguments, config_file, cache: dict) -> None:
    """The judge, loaded once before any model (a classifier that cannot load is one line, not a late crash)."""
    if eval_args.safety_judge == "refusal" or "safety:judge" in cache:
        return
    try:
        cache["safety:judge"] = make_judge(eval_args.safety_judge)
    except (OSError, ValueError, RuntimeError) as err:
        raise RecipeError(
            config_file,
            "safety_judge",
            f"cannot use {eval_args.safety_judge!r}: {' '.join(str(err).split())[:300]}",
        ) from None
