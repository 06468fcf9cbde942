from cpc.data.sampler import ResumableRandomSampler


def test_each_epoch_is_a_seeded_permutation_and_start_skips_once():
    sampler = ResumableRandomSampler(20, seed=7)
    first = list(sampler)
    assert sorted(first) == list(range(20)) and first == sampler.order(0)
    sampler.set_epoch(1)
    assert list(sampler) != first and sorted(sampler.order(1)) == list(range(20))
    assert ResumableRandomSampler(20, seed=8).order(0) != first  # the seed matters
    sampler.start = 12
    assert list(sampler) == sampler.order(1)[12:]
    assert list(sampler) == sampler.order(1)  # the next iteration starts from 0 again
    assert len(sampler) == 20


def test_ranks_share_each_epoch_order_in_disjoint_equal_parts_and_resume_each():
    ranks = [ResumableRandomSampler(21, seed=7, num_replicas=2, rank=r) for r in (0, 1)]
    whole = ResumableRandomSampler(21, seed=7).order(4)
    for sampler in ranks:
        sampler.set_epoch(4)
    parts = [list(sampler) for sampler in ranks]
    assert [len(p) for p in parts] == [10, 10] == [len(s) for s in ranks]
    assert parts == [whole[0:20:2], whole[1:20:2]]  # the last image waits for another epoch
    ranks[1].start = 6
    assert list(ranks[1]) == parts[1][6:]
