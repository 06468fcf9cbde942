"""InfoNCE: the contrastive loss of CPC (van den Oord et al., 2018, eq. 4).

For each query (a prediction) the matching key (the true latent) must be picked out from
all N keys of the batch: ``loss = -log softmax(q @ k.T / T)[i, i]``. Since
``I(x; c) >= log N - loss`` (eq. 5), ``log N - loss`` is logged as a lower bound on mutual
information, in nats; it never exceeds ``log N``.
"""

from __future__ import annotations

import math

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.distributed.nn.functional import all_gather


def _gather_keys(keys: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Keys of all ranks, with gradients flowing back to their owners; and this rank's offset."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return keys, 0
    # all_gather from torch.distributed.nn sums the incoming gradients on backward.
    return torch.cat(all_gather(keys), dim=0), dist.get_rank() * keys.shape[0]


def info_nce(
    queries: torch.Tensor, keys: torch.Tensor, temperature: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """InfoNCE with the other keys of the batch (of all ranks under DDP) as negatives.

    One matrix product; logits and log-softmax in fp32 even under AMP.

    Args:
        queries: ``(M, D)`` predictions; row ``i`` should match ``keys[i]``.
        keys: ``(M, D)`` targets. Under torch.distributed every rank must pass the same M.
        temperature: logits are divided by it.

    Returns:
        ``(loss, correct, N)``: mean loss over the M queries, a ``(M,)`` bool tensor telling
        whether the true key scored highest, and the number of candidates N per query.
    """
    if queries.shape != keys.shape or queries.ndim != 2:
        raise ValueError(
            f"queries and keys must both be (M, D); got {tuple(queries.shape)} "
            f"and {tuple(keys.shape)}"
        )
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    all_keys, offset = _gather_keys(keys)
    with torch.autocast(device_type=queries.device.type, enabled=False):
        # scale the (M, D) queries, not the (M, N) logits: N/D times less memory traffic
        logits = (queries.float() / temperature) @ all_keys.float().T  # (M, N)
    labels = torch.arange(queries.shape[0], device=queries.device) + offset  # (M,)
    loss = F.cross_entropy(logits, labels)
    correct = logits.detach().argmax(dim=1) == labels
    return loss, correct, all_keys.shape[0]


def mi_lower_bound(loss: torch.Tensor, num_candidates: int) -> torch.Tensor:
    """``log N - loss``: the InfoNCE lower bound on mutual information, in nats."""
    return math.log(num_candidates) - loss
