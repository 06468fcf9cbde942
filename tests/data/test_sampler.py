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
