"""Named random streams (dfbench.api.rng): independent of each other, keyed by seed, rank and name,
restorable, and model initialisation that leaves the global torch state alone."""

import torch

from dfbench.api.rng import Streams, stream_seed


def test_streams_are_keyed_by_seed_rank_and_name():
    seeds = {stream_seed(s, n, r) for s in (0, 1) for r in (0, 1) for n in ("a", "b")}
    assert len(seeds) == 8  # no two of (seed, rank, name) share a stream
    assert stream_seed(3, "a", 0) == stream_seed(3, "a", 0)
    assert 0 <= stream_seed(3, "a") < 2**63


def test_a_stream_is_one_generator_whose_state_round_trips():
    streams = Streams(5)
    g = streams.generator("noise")
    assert streams.generator("noise") is g
    first = torch.randn(4, generator=g)
    state = streams.state_dict()
    second = torch.randn(4, generator=g)
    other = Streams(5)
    other.load_state_dict(state)
    assert torch.equal(torch.randn(4, generator=other.generator("noise")), second)
    assert torch.equal(torch.randn(4, generator=Streams(5).generator("noise")), first)
    # adding a stream leaves the others as they were
    fresh = Streams(5)
    fresh.generator("something else")
    assert torch.equal(torch.randn(4, generator=fresh.generator("noise")), first)


def test_scope_seeds_initialisation_and_restores_the_global_state():
    streams = Streams(9)
    torch.manual_seed(123)
    before = torch.get_rng_state()
    with streams.scope("init"):
        a = torch.nn.Linear(4, 4).weight.detach().clone()
    assert torch.equal(torch.get_rng_state(), before)  # the runner's global state is untouched
    with Streams(9).scope("init"):
        b = torch.nn.Linear(4, 4).weight.detach().clone()
    with Streams(9).scope("other"):
        c = torch.nn.Linear(4, 4).weight.detach().clone()
    assert torch.equal(a, b) and not torch.equal(a, c)
