import math
import os
import socket
import time
from datetime import timedelta

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


def test_perfect_predictions_reach_log_n_and_batch_order_does_not_matter():
    torch.manual_seed(1)
    q = F.normalize(torch.randn(16, 8), dim=1)
    k = q * 100  # each query's own key scores far above every other: loss -> 0
    loss, correct, n = info_nce(q, k)
    assert correct.all()
    assert loss.item() < 1e-3
    assert mi_lower_bound(loss, n).item() == pytest.approx(math.log(16), abs=1e-3)
    perm = torch.randperm(16)
    torch.testing.assert_close(info_nce(q[perm], k[perm])[0], loss)


def test_invalid_pairs_are_neither_queries_nor_negatives():
    torch.manual_seed(3)
    q, k = torch.randn(10, 4), torch.randn(10, 4)
    valid = torch.tensor([1, 0, 1, 1, 0, 1, 1, 1, 0, 1], dtype=torch.bool)
    loss, correct, n = info_nce(q, k, 0.5, valid)
    torch.testing.assert_close(loss, slow_info_nce(q[valid], k[valid], 0.5))
    assert n == 7 and correct.shape == (7,)


def test_left_out_keys_match_minus_infinity_logits_with_gradients():
    """Leaving invalid keys out of the product is the -inf-logit formulation: same loss,
    gradients and accuracy."""
    torch.manual_seed(5)
    q, k = torch.randn(12, 4, requires_grad=True), torch.randn(12, 4, requires_grad=True)
    valid = torch.tensor([0, 1, 1, 0, 1, 1, 1, 0, 0, 1, 1, 1], dtype=torch.bool)
    loss, correct, n = info_nce(q, k, 0.7, valid)
    grads = torch.autograd.grad(loss, (q, k))
    logits = (q[valid] / 0.7) @ k.T  # (M', 12): every key, invalid ones at -inf
    logits = logits.masked_fill(~valid, float("-inf"))
    labels = torch.arange(12)[valid]
    reference = F.cross_entropy(logits, labels)
    torch.testing.assert_close(loss, reference)
    for grad, ref in zip(grads, torch.autograd.grad(reference, (q, k)), strict=True):
        torch.testing.assert_close(grad, ref)
    assert torch.equal(correct, logits.argmax(1) == labels) and n == 8


def test_identical_keys_cap_the_loss_unless_left_out():
    """200 equal keys (blank patches): no query can pick its own; masking them restores it."""
    torch.manual_seed(4)
    distinct = F.normalize(torch.randn(56, 16), dim=1) * 50
    keys = torch.cat([distinct, distinct[:1].expand(200, 16) * 0 + 1.0])  # 200 equal keys
    queries = keys.clone()
    loss, _, _ = info_nce(queries, keys)
    assert loss.item() > 0.5 * 200 / 256 * math.log(200)  # the equal ones cost ~log 200 each
    valid = torch.arange(256) < 56
    loss, correct, n = info_nce(queries, keys, valid=valid)
    assert loss.item() < 1e-3 and correct.all() and n == 56


def test_no_valid_pair_gives_a_zero_loss_with_gradient():
    q = torch.randn(3, 2, requires_grad=True)
    loss, correct, n = info_nce(q, torch.randn(3, 2), valid=torch.zeros(3, dtype=torch.bool))
    loss.backward()
    assert loss.item() == 0 and n == 0 and correct.numel() == 0
    assert torch.equal(q.grad, torch.zeros(3, 2))


def test_shape_mismatch_is_rejected():
    with pytest.raises(ValueError, match="must both be"):
        info_nce(torch.zeros(3, 2), torch.zeros(4, 2))


def _ddp_worker(rank, world, port, q, k, valid, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    # a rank that waits longer than this for the other raises instead of hanging
    dist.init_process_group("gloo", rank=rank, world_size=world, timeout=timedelta(seconds=60))
    m = len(q) // world
    ql = q[rank * m : (rank + 1) * m].clone().requires_grad_()
    kl = k[rank * m : (rank + 1) * m].clone().requires_grad_()
    loss, _, n = info_nce(ql, kl, 0.3, valid[rank * m : (rank + 1) * m])
    loss.backward()
    # DDP averages parameter gradients over ranks: do the same for the inputs' gradients.
    out[rank] = (loss.detach(), ql.grad / world, kl.grad / world, n)
    dist.destroy_process_group()


def free_port() -> int:
    """A TCP port no one listens on now: the one the OS gives a socket bound to port 0."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_two_ranks(q, k, valid) -> dict:
    """:func:`_ddp_worker` on 2 gloo processes, rank r on the r-th half of the pairs."""
    manager = mp.Manager()
    out = manager.dict()
    ranks = mp.spawn(_ddp_worker, args=(2, free_port(), q, k, valid, out), nprocs=2, join=False)
    deadline = time.monotonic() + 120  # ~5 s here; a hung rank must not hang the suite
    while not ranks.join(timeout=1):  # raises if a rank failed
        if time.monotonic() > deadline:
            for process in ranks.processes:
                process.kill()
            pytest.fail("the 2 gloo processes did not finish within 120 s")
    return dict(out)


@pytest.mark.slow
@pytest.mark.parametrize(
    "rank_0, rank_1",
    [
        ([1, 1, 0, 1], [1, 0, 1, 1]),  # 3 and 3 valid pairs
        ([1, 1, 1, 1], [0, 0, 1, 0]),  # 4 and 1: the mean of per-rank means is 19.3, not 30.8
        ([1, 0, 1, 1], [0, 0, 0, 0]),  # rank 1 has no valid pair: it adds nothing, and no 0
    ],
)
def test_ddp_two_gloo_processes_match_one_process_on_merged_batch(rank_0, rank_1):
    """Every rank reports the merged batch's loss, and the gradients averaged over the ranks
    (as DDP does) are the merged batch's, however the valid pairs are spread."""
    torch.manual_seed(2)
    q, k = torch.randn(8, 4) * 3, torch.randn(8, 4) * 3
    valid = torch.tensor(rank_0 + rank_1, dtype=torch.bool)
    qs, ks = q.clone().requires_grad_(), k.clone().requires_grad_()
    loss, _, n = info_nce(qs, ks, 0.3, valid)
    loss.backward()

    out = run_two_ranks(q, k, valid)
    for rank in (0, 1):
        torch.testing.assert_close(out[rank][0], loss.detach())
        assert out[rank][3] == n == sum(rank_0) + sum(rank_1)
    torch.testing.assert_close(torch.cat([out[0][1], out[1][1]]), qs.grad)
    torch.testing.assert_close(torch.cat([out[0][2], out[1][2]]), ks.grad)
    assert not torch.allclose(ks.grad, torch.zeros_like(ks.grad))


def test_cross_entropy_equivalence_under_autocast():
    q, k = torch.randn(4, 3), torch.randn(4, 3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, _, _ = info_nce(q, k)
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss, F.cross_entropy(q @ k.T, torch.arange(4)))
