import math
import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from cpc.losses.info_nce import info_nce, mi_lower_bound


def slow_info_nce(queries, keys, temperature):
    """Hand-written reference: one softmax per query, in a loop."""
    total = 0.0
    for i in range(len(queries)):
        scores = torch.stack([queries[i] @ k / temperature for k in keys])
        total = total - (scores[i] - torch.logsumexp(scores, dim=0))
    return total / len(queries)


def test_matches_loop_reference():
    torch.manual_seed(0)
    q, k = torch.randn(7, 5), torch.randn(7, 5)
    loss, correct, n = info_nce(q, k, temperature=0.5)
    torch.testing.assert_close(loss, slow_info_nce(q, k, 0.5))
    assert n == 7
    assert torch.equal(correct, (q @ k.T).argmax(1) == torch.arange(7))


def test_equal_scores_give_log_n_and_zero_bound():
    q, k = torch.zeros(6, 3), torch.randn(6, 3)
    loss, _, n = info_nce(q, k)
    assert loss.item() == pytest.approx(math.log(6))
    assert mi_lower_bound(loss, n).item() == pytest.approx(0.0, abs=1e-6)


def test_bound_never_exceeds_log_n_and_invariant_to_batch_order():
    torch.manual_seed(1)
    q = F.normalize(torch.randn(16, 8), dim=1)
    k = q * 10  # near-perfect predictions: bound approaches log N from below
    loss, correct, n = info_nce(q, k)
    assert correct.all()
    assert mi_lower_bound(loss, n).item() <= math.log(n)
    perm = torch.randperm(16)
    torch.testing.assert_close(info_nce(q[perm], k[perm])[0], loss)


def test_shape_mismatch_is_rejected():
    with pytest.raises(ValueError, match="must both be"):
        info_nce(torch.zeros(3, 2), torch.zeros(4, 2))


def _ddp_worker(rank, world, port, q, k, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    m = len(q) // world
    ql = q[rank * m : (rank + 1) * m].clone().requires_grad_()
    kl = k[rank * m : (rank + 1) * m].clone().requires_grad_()
    loss, _, n = info_nce(ql, kl, temperature=0.3)
    loss.backward()
    # DDP averages parameter gradients over ranks: do the same for the inputs' gradients.
    out[rank] = (loss.detach(), ql.grad / world, kl.grad / world, n)
    dist.destroy_process_group()


def test_ddp_two_gloo_processes_match_one_process_on_merged_batch():
    torch.manual_seed(2)
    q, k = torch.randn(8, 4), torch.randn(8, 4)
    qs, ks = q.clone().requires_grad_(), k.clone().requires_grad_()
    loss, _, n = info_nce(qs, ks, temperature=0.3)
    loss.backward()

    manager = mp.Manager()
    out = manager.dict()
    port = 29500 + os.getpid() % 1000
    mp.spawn(_ddp_worker, args=(2, port, q, k, out), nprocs=2, join=True)
    mean_loss = (out[0][0] + out[1][0]) / 2
    torch.testing.assert_close(mean_loss, loss.detach())
    assert out[0][3] == n == 8
    torch.testing.assert_close(torch.cat([out[0][1], out[1][1]]), qs.grad)
    torch.testing.assert_close(torch.cat([out[0][2], out[1][2]]), ks.grad)
    assert not torch.allclose(ks.grad, torch.zeros_like(ks.grad))


def test_cross_entropy_equivalence_under_autocast():
    q, k = torch.randn(4, 3), torch.randn(4, 3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, _, _ = info_nce(q, k)
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss, F.cross_entropy(q @ k.T, torch.arange(4)))
