"""FSDP2 for the engine (``--fsdp``): shard the model's blocks, and an Adafactor that steps sharded weights.

``accelerate`` applies FSDP only on CUDA and pairs it with any optimizer; ``torch.optim.Adafactor``
cannot step FSDP2's sharded (DTensor) weights, because its factored second moments reduce over a
sharded dimension with in-place ops that DTensor refuses.  So the engine shards the model itself with
torch's ``fully_shard`` (on CPUs over gloo as on GPUs) and steps it with :class:`ShardedAdafactor`,
the same update written with out-of-place reductions (bitwise equal to torch's on unsharded weights).
"""

from __future__ import annotations

import torch
from torch.distributed.fsdp import fully_shard
from torch.distributed.tensor import DTensor


def shard_model(model: torch.nn.Module) -> None:
    """One FSDP unit per transformer block (T5's encoder and decoder blocks, a decoder-only model's
    layers: the classes transformers lists in ``_no_split_modules``), the rest (embeddings, head,
    norms) at the root."""
    blocks = tuple(model._no_split_modules)
    for module in model.modules():
        if type(module).__name__ in blocks:
            fully_shard(module)
    fully_shard(model)


def _item(value: torch.Tensor) -> float:
    return (value.full_tensor() if isinstance(value, DTensor) else value).item()


class ShardedAdafactor(torch.optim.Adafactor):
    """``torch.optim.Adafactor`` (T5's update: factored second moments, decay -0.8, update clipping d,
    relative step ``min(lr, 1/sqrt(t))`` scaled by the weight RMS) with out-of-place reductions, so it
    also steps FSDP2's DTensor shards.  Same state layout as torch's: checkpoints are interchangeable."""

    @torch.no_grad()
    def step(self, closure: None = None) -> None:
        if closure is not None:
            raise ValueError("ShardedAdafactor takes no closure")
        for group in self.param_groups:
            lr, beta2_decay, d = group["lr"], group["beta2_decay"], group["d"]
            for param in group["params"]:
                if param.grad is None:
                    continue
                grad = param.grad
                eps1, eps2 = group["eps"]
                eps1 = torch.finfo(param.dtype).eps if eps1 is None else eps1
                state = self.state[param]
                if not state:  # zeros placed like the statistics they hold (rows sharded, columns whole)
                    state["step"] = torch.tensor(0.0)
                    if grad.dim() > 1:
                        state["row_var"] = torch.zeros_like(torch.norm(grad, dim=-1, keepdim=True))
                        state["col_var"] = torch.zeros_like(torch.norm(grad, dim=-2, keepdim=True).square())
                    else:
                        state["variance"] = torch.zeros_like(grad)
                state["step"] += 1
                step = state["step"].item()
                one_minus_beta2 = step**beta2_decay
                alpha = max(eps2, _item(param.norm(2)) / param.numel() ** 0.5) * min(lr, 1 / step**0.5)
                if group["weight_decay"] != 0:
                    param.mul_(1 - lr * group["weight_decay"])
                if grad.dim() > 1:
                    row_var, col_var = state["row_var"], state["col_var"]
                    row_mean = torch.norm(grad, dim=-1, keepdim=True).square() / grad.size(-1)
                    col_mean = torch.norm(grad, dim=-2, keepdim=True).square() / grad.size(-2)
                    row_var.lerp_(row_mean, one_minus_beta2)
                    col_var.lerp_(col_mean, one_minus_beta2)
                    variance = (row_var @ col_var) / row_var.mean(dim=-2, keepdim=True).clamp(min=eps1)
                else:
                    state["variance"].lerp_(grad * grad, one_minus_beta2)
                    variance = state["variance"]
                update = variance.clamp(min=eps1 * eps1).rsqrt() * grad
                clip = max(1.0, _item(update.norm(2)) / (update.numel() ** 0.5 * d))
                param.add_(update, alpha=-alpha / clip)
