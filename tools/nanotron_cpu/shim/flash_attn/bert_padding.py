"""Imported by nanotron's llama and starcoder2 inference paths; never called in training (CPU port)."""


def _not_ported(*args, **kwargs):
    raise NotImplementedError("bert_padding is not used in training (CPU port)")


pad_input = unpad_input = index_first_axis = _not_ported


def __getattr__(name):
    if name.startswith("__"):
        raise AttributeError(name)
    return _not_ported
