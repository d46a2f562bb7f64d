"""The reservoir buffer: uniform inclusion (chi-square and binomial bounds), uniform
replay draws, exact state round trip."""
import numpy as np
import pytest
import torch
from scipy import stats

from maml.continual.replay import ReservoirBuffer

N, M, RUNS = 40, 8, 1500


def final_contents(seed):
    buffer = ReservoirBuffer(M, torch.Generator().manual_seed(seed))
    items = torch.arange(N, dtype=torch.float32)[:, None]
    for start in range(0, N, 5):                  # batches of 5, as a stream delivers them
        buffer.add(items[start:start + 5], torch.arange(start, start + 5))
    return buffer.y[:len(buffer)].tolist()


@pytest.fixture(scope="module")
def counts():
    c = np.zeros(N)
    for seed in range(RUNS):
        held = final_contents(seed)
        assert len(held) == M and len(set(held)) == M      # full, no duplicates
        c[held] += 1
    return c


def test_every_sample_is_kept_with_probability_m_over_n(counts):
    expected = RUNS * M / N
    chi2 = ((counts - expected) ** 2 / expected).sum()
    # Inclusions are negatively correlated (the buffer size is fixed), so the statistic is
    # smaller than a chi-square with N - 1 degrees of freedom: its 0.1 % tail is a safe bound.
    assert chi2 < stats.chi2.ppf(0.999, N - 1)


def test_first_and_last_samples_within_binomial_bounds(counts):
    low, high = stats.binom.ppf([0.0005, 0.9995], RUNS, M / N)
    for i in (0, 1, N - 2, N - 1):               # the early and late ends of the stream
        assert low <= counts[i] <= high, (i, counts[i], low, high)


def test_order_does_not_matter_and_the_buffer_is_not_just_the_first_m(counts):
    assert counts[:M].sum() < 0.5 * RUNS * M     # a "keep the first M" buffer would give RUNS*M


def test_replay_draws_are_uniform_with_replacement():
    buffer = ReservoirBuffer(5, torch.Generator().manual_seed(0))
    buffer.add(torch.zeros(5, 2), torch.arange(5))
    draws = torch.cat([buffer.sample(10)[1] for _ in range(400)]).numpy()
    observed = np.bincount(draws, minlength=5)
    assert stats.chisquare(observed).pvalue > 1e-3
    assert buffer.sample(3)[0].shape == (3, 2)
    assert ReservoirBuffer(5, torch.Generator()).sample(3) is None     # empty: no replay


def test_state_round_trip_continues_identically():
    def stream(buffer, start, stop):
        for s in range(start, stop):
            buffer.add(torch.full((1, 3), float(s)), torch.tensor([s]))

    a = ReservoirBuffer(6, torch.Generator().manual_seed(3))
    stream(a, 0, 20)
    state, gen = a.state_dict(), a.generator.get_state()
    stream(a, 20, 50)
    b = ReservoirBuffer(6, torch.Generator())
    b.load_state_dict(state)
    b.generator.set_state(gen)
    stream(b, 20, 50)
    assert b.seen == a.seen == 50
    assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y)
