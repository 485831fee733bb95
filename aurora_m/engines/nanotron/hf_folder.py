"""A transformers GPTBigCode folder as the converter reads it: its config, its safetensors (one file or an index of
shards) read one tensor at a time, checked against the config before anything is written (as many layers, the
same widths, from the headers alone), and a damaged file named in one line."""

from __future__ import annotations

import contextlib
from pathlib import Path

from ...errors import RecipeError
from ...io import read_json_or_none

HF_CONFIG = "config.json"
HF_SINGLE = "model.safetensors"
HF_INDEX = "model.safetensors.index.json"


class HFReader:
    """Tensors of a transformers folder (one safetensors file or an index of shards), read one at a time."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        config = read_json_or_none(self.folder / HF_CONFIG)
        if not isinstance(config, dict):
            raise RecipeError(self.folder, HF_CONFIG, "missing or not JSON: expected a transformers model folder")
        if config.get("model_type") != "gpt_bigcode" or not config.get("multi_query", True):
            raise RecipeError(
                self.folder / HF_CONFIG,
                "model_type",
                f"expected a multi-query gpt_bigcode model, got {config.get('model_type')!r}",
            )
        if config.get("tie_word_embeddings") is False:
            raise RecipeError(
                self.folder / HF_CONFIG,
                "tie_word_embeddings",
                "false: the nanotron model ties its head to the token embedding",
            )
        self.config = config
        if (self.folder / HF_INDEX).is_file():
            weight_map = (read_json_or_none(self.folder / HF_INDEX) or {}).get("weight_map") or {}
        elif (self.folder / HF_SINGLE).is_file():
            weight_map = None
        else:
            raise RecipeError(self.folder, None, f"no {HF_SINGLE} or {HF_INDEX}: weights load from safetensors only")
        self._map = weight_map

    def file_of(self, key: str) -> Path:
        if self._map is None:
            return self.folder / HF_SINGLE
        if key not in self._map:
            raise RecipeError(self.folder / HF_INDEX, key, "missing from the weight map")
        return self.folder / self._map[key]

    def shapes(self) -> dict[str, tuple[int, ...]]:
        """Every tensor's name and shape, from the safetensors headers (nothing loaded)."""
        from safetensors import safe_open

        files = {self.folder / HF_SINGLE} if self._map is None else {self.folder / f for f in set(self._map.values())}
        out = {}
        for path in sorted(files):
            with readable(path), safe_open(path, framework="pt") as f:
                out.update({key: tuple(f.get_slice(key).get_shape()) for key in f.keys()})
        return out

    def check_against(self, config) -> None:
        """The config describes these tensors: as many layers, the same widths (a 1-layer config over 2 layers would
        drop one, a wrong width would fail deep in a launch)."""
        shapes = self.shapes()
        layers = {int(k.split(".")[2]) for k in shapes if k.startswith("transformer.h.")}
        where = self.folder / HF_CONFIG
        if layers != set(range(config.num_hidden_layers)):
            held = f"the weights hold {len(layers)}"
            raise RecipeError(where, "n_layer", f"{config.num_hidden_layers} layers, but {held}: nothing written")
        expected = {
            "transformer.wte.weight": (config.vocab_size, config.hidden_size),
            "transformer.h.0.attn.c_attn.weight": (config.hidden_size + 2 * config.head_dim, config.hidden_size),
            "transformer.h.0.mlp.c_fc.weight": (config.n_inner, config.hidden_size),
        }
        for key, shape in expected.items():
            if shapes.get(key) != shape:
                raise RecipeError(
                    where, key, f"the config gives shape {shape}, the weights hold {shapes.get(key)}: nothing written"
                )

    def get(self, key: str):
        from safetensors import safe_open

        with readable(self.file_of(key)), safe_open(self.file_of(key), framework="pt") as f:
            if key not in f.keys():
                raise RecipeError(self.file_of(key), key, "tensor missing: not a GPTBigCode checkpoint")
            return f.get_tensor(key)


@contextlib.contextmanager
def readable(path: Path):
    """A damaged safetensors file (bad header, cut short) is one line naming it, not safetensors' traceback."""
    from safetensors import SafetensorError

    try:
        yield
    except SafetensorError as err:
        raise RecipeError(
            path, None, f"not a readable safetensors file ({' '.join(str(err).split())}); nothing was written"
        ) from None
