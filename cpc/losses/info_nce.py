"""InfoNCE: the contrastive loss of CPC (van den Oord et al., 2018, eq. 4).

For each query (a prediction) the matching key (the true latent) must be picked out from
all N keys of the batch: ``loss = -log softmax(q @ k.T / T)[i, i]``. Since
``I(x; c) >= log N - loss`` (Sec. 2.3; derived in their appendix, eq. 10), ``log N - loss`` is
logged as a lower bound on mutual information, in nats; it never exceeds ``log N``.

Keys that cannot be told apart (e.g. the many all-black patches of Fashion-MNIST, whose
latents are identical) make the loss unreachable: a query cannot pick its own key out of
hundreds of equal ones. ``valid`` leaves such pairs out, as queries and as negatives.
"""

from __future__ import annotations

import math

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.distributed.nn.functional import all_gather


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _gather_keys(keys: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Keys of all ranks, with gradients flowing back to their owners; and this rank's offset."""
    if not _distributed():
        return keys, 0
    # all_gather from torch.distributed.nn sums the incoming gradients on backward.
    return torch.cat(all_gather(keys), dim=0), dist.get_rank() * keys.shape[0]


def _gather_mask(mask: torch.Tensor) -> torch.Tensor:
    """A bool mask of every rank's keys, concatenated in rank order (no gradient)."""
    if not _distributed():
        return mask
    parts = [torch.empty_like(mask) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, mask)
    return torch.cat(parts)


def info_nce(
    queries: torch.Tensor,
    keys: torch.Tensor,
    temperature: float = 1.0,
    valid: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, float]:
    """InfoNCE with the other keys of the batch (of all ranks under DDP) as negatives.

    One matrix product; logits and log-softmax in fp32 even under AMP.

    Args:
        queries: ``(M, D)`` predictions; row ``i`` should match ``keys[i]``.
        keys: ``(M, D)`` targets. Under torch.distributed every rank must pass the same M.
        temperature: logits are divided by it.
        valid: optional ``(M,)`` bool mask; pair ``i`` takes part only where it is True: its
            query is scored and its key is a candidate for every query. Default: all pairs.

    Returns:
        ``(loss, correct, N)``: mean loss over the valid queries of all ranks (0 if there are
        none), a bool tensor over this rank's valid queries telling whether the true key
        scored highest, and the number of candidates N per query (valid keys of all ranks).
        Under DDP the loss is the merged batch's (one process on every rank's pairs), its
        gradient averaged over the ranks is the merged batch's, however unevenly the valid
        pairs are spread; a rank without any still reports the merged loss.
    """
    if queries.shape != keys.shape or queries.ndim != 2:
        raise ValueError(
            f"queries and keys must both be (M, D); got {tuple(queries.shape)} "
            f"and {tuple(keys.shape)}"
        )
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if valid is None:
        valid = torch.ones(queries.shape[0], dtype=torch.bool, device=queries.device)
    elif valid.shape != queries.shape[:1] or valid.dtype != torch.bool:
        raise ValueError(f"valid must be a bool mask of shape ({queries.shape[0]},)")
    all_keys, offset = _gather_keys(keys)  # (N_all, D)
    all_valid = _gather_mask(valid)  # (N_all,)
    # Invalid keys are no candidates: they are left out of the product, which is what a -inf
    # logit does, without two (M', N_all) masking passes (forward and backward) or their
    # columns. Key j of the batch is column ``column[j]`` of the valid ones.
    column = torch.cumsum(all_valid, dim=0) - 1  # (N_all,)
    labels = column[offset : offset + queries.shape[0]][valid]  # (M',)
    candidates = all_keys[all_valid]  # (N, D)
    with torch.autocast(device_type=queries.device.type, enabled=False):
        # scale the (M', D) queries, not the (M', N) logits: N/D times less memory traffic
        logits = (queries[valid].float() / temperature) @ candidates.float().T  # (M', N)
    correct = logits.detach().argmax(dim=1) == labels if labels.numel() else valid[valid]
    if not _distributed():
        if not labels.numel():
            # nothing to predict: the empty logits sum to a zero tied to the inputs
            return logits.sum(), correct, candidates.shape[0]
        return F.cross_entropy(logits, labels), correct, candidates.shape[0]
    # a pair is valid as a query exactly when its key is: every rank's queries are counted
    return _merged_mean(logits, labels, candidates.shape[0]), correct, candidates.shape[0]


def _merged_mean(logits: torch.Tensor, labels: torch.Tensor, total: int) -> torch.Tensor:
    """This rank's share of the mean loss over the ``total`` valid queries of all ranks.

    DDP averages gradients over the W ranks, so each rank's objective is ``W * (its summed
    loss) / total``: the average is then the merged batch's gradient, however the valid
    queries are spread (a rank with none adds only the keys' gradients that flow back through
    the gather). The value returned is the merged mean itself (summed over ranks, no
    gradient), so that every rank logs the loss and bound of the whole batch.
    """
    summed = F.cross_entropy(logits, labels, reduction="sum") if labels.numel() else logits.sum()
    objective = summed * (dist.get_world_size() / max(total, 1))
    merged = summed.detach().clone()
    dist.all_reduce(merged)  # the summed loss of every rank's valid queries
    return objective + (merged / max(total, 1) - objective).detach()


def mi_lower_bound(loss: torch.Tensor, num_candidates: float) -> torch.Tensor:
    """``log N - loss``, in nats: the InfoNCE lower bound on mutual information.

    The bound assumes negatives drawn independently from the targets' marginal; here they are
    the batch's other non-blank targets (other positions of the same image included), and
    blank targets are left out. So it reads as an estimate for the non-blank targets, capped at
    ``log N``: for comparing runs of one setup, not as a certified bound.
    """
    return math.log(max(num_candidates, 1)) - loss
