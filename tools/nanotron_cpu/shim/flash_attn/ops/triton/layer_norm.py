"""``layer_norm_fn`` (nanotron's TritonLayerNorm) as PyTorch's layer norm: the plain form GPTBigCode uses."""

import torch
from torch.nn import functional as F  # noqa: N812 - PyTorch's own spelling


def layer_norm_fn(
    x,
    weight,
    bias,
    residual=None,
    eps=1e-6,
    dropout_p=0.0,
    prenorm=False,
    residual_in_fp32=False,
    is_rms_norm=False,
    return_dropout_mask=False,
    **_,
):
    if residual is not None or dropout_p or prenorm or return_dropout_mask:
        raise NotImplementedError("fused residual / dropout layer norm is not ported")
    if is_rms_norm:
        scale = torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + eps)
        return (x.float() * scale).to(x.dtype) * weight
    return F.layer_norm(x, (x.shape[-1],), weight, bias, eps)
