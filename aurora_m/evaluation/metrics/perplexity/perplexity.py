"""Perplexity as an ``evaluate`` metric, loaded from this folder with no download (``evaluate``'s own perplexity
metric fetches its script and the model from the Hub)::

    import evaluate
    from aurora_m.evaluation import METRICS

    ppl = evaluate.load(str(METRICS / "perplexity"))
    ppl.compute(predictions=texts, model_id="runs/tiny/cap/model", max_length=2048)
    # {"perplexity": 612.3, "perplexities": [...], "mean_perplexity": ..., "tokens": 1234}

``model_id`` is a local model folder (safetensors, no remote code). Each text is scored on its own (EOS appended)
with the eval stage's sliding window (``stride``, default ``max_length // 2``); ``perplexity`` is exp of the
token-weighted mean NLL over all texts (what the eval stage reports per language), ``mean_perplexity`` the
mean of the per-text values (what ``evaluate``'s metric reports).
"""

import math

import datasets
import evaluate

from aurora_m.evaluation.perplexity import score_language

_INPUTS = """
Args:
    predictions (list of str): texts to score.
    model_id (str): a local model folder.
    max_length (int): tokens per window (default: the model's positions, at most 2048).
    stride (int, optional): sliding-window step for longer texts.
    batch_size (int): windows per forward pass.
Returns:
    perplexity, perplexities, mean_perplexity, tokens.
"""


class Perplexity(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description="Token-weighted perplexity of a local causal LM.",
            citation="",
            inputs_description=_INPUTS,
            features=datasets.Features({"predictions": datasets.Value("string")}),
        )

    def _compute(self, predictions, model_id, max_length=None, stride=None, batch_size=8):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(model_id)
        model = AutoModelForCausalLM.from_pretrained(model_id, use_safetensors=True)
        # max_position_embeddings: every family's context (GPTBigCode's and GPT-2's n_positions through the alias)
        length = max_length or min(2048, getattr(model.config, "max_position_embeddings", None) or 2048)
        stride = stride or max(1, length // 2)
        per_text = [
            score_language(model, tokenizer, [t], length, stride, batch_size, desc="perplexity") for t in predictions
        ]
        tokens = sum(s["tokens"] for s in per_text)
        nll = sum(s["loss"] * s["tokens"] for s in per_text)
        perplexities = [math.exp(s["loss"]) for s in per_text]
        return {
            "perplexity": math.exp(nll / max(1, tokens)),
            "perplexities": perplexities,
            "mean_perplexity": sum(perplexities) / max(1, len(perplexities)),
            "tokens": tokens,
        }
