"""The ``triplet`` alignment loss against a brute-force reference."""

import itertools

import pytest
import torch
import torch.nn.functional as F

from dfbench.api.errors import ConfigError
from dfbench_example.triplet import CrossModalTriplet, cosine_distances, triplet_loss


def reference(anchors, others, la, lo, margin, mining):
    d = cosine_distances(anchors, others)
    n = len(la)
    pos = [[la[i] == lo[j] or i == j for j in range(n)] for i in range(n)]
    if mining == "hard":
        losses = []
        for i in range(n):
            negs = [d[i, k] for k in range(n) if not pos[i][k]]
            if not negs:
                continue
            hardest_pos = max(d[i, j] for j in range(n) if pos[i][j])
            losses.append(max(0.0, float(hardest_pos - min(negs) + margin)))
        return sum(losses) / len(losses) if losses else 0.0
    values = [float(d[i, j] - d[i, k] + margin) for i, j, k in itertools.product(range(n), repeat=3) if pos[i][j] and not pos[i][k]]
    active = [v for v in values if v > 0]
    return sum(active) / len(active) if active else 0.0


def batch(n=10, dim=8, classes=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(n, dim, generator=g)
    o = a + 0.7 * torch.randn(n, dim, generator=g)
    la = torch.randint(0, classes, (n,), generator=g)
    lo = la.clone()
    lo[::3] = torch.randint(0, classes, (len(lo[::3]),), generator=g)  # some pairs disagree
    return a, o, la, lo


@pytest.mark.parametrize("mining", ["hard", "all"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_brute_force(mining, seed):
    a, o, la, lo = batch(seed=seed)
    got = float(triplet_loss(a, o, la, lo, 0.2, mining))
    assert got == pytest.approx(reference(a, o, la.tolist(), lo.tolist(), 0.2, mining), rel=1e-5, abs=1e-6)


def test_zero_when_classes_are_separated_by_more_than_the_margin():
    directions = torch.eye(4)
    labels = torch.tensor([0, 1, 2, 3, 0, 1])
    emb = directions[labels]
    assert float(triplet_loss(emb, emb.clone(), labels, labels, 0.5, "hard")) == 0.0


def test_pair_partner_is_always_a_positive():
    # the pair (0, 0) disagrees on the label; its partner still counts as a positive, so the
    # loss sees the partner's distance
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    o = torch.tensor([[-1.0, 0.0], [0.0, 1.0]])
    la, lo = torch.tensor([0, 1]), torch.tensor([1, 1])
    loss = triplet_loss(a, o, la, lo, 0.1, "hard")
    # anchor 0: positive = partner 0 (distance 2), no negative among others? other 1 has label 1 != 0
    # -> negative at distance 1: relu(2 - 1 + 0.1) = 1.1; anchor 1: everything positive -> left out
    assert float(loss) == pytest.approx(1.1)


def test_single_label_batch_is_zero_with_a_graph():
    a, o, _, _ = batch()
    a.requires_grad_(True)
    labels = torch.zeros(len(a), dtype=torch.long)
    loss = triplet_loss(a, o, labels, labels, 0.2, "hard")
    assert float(loss.detach()) == 0.0
    loss.backward()
    assert a.grad is not None and torch.all(a.grad == 0)


def test_gradients_pull_pairs_together():
    a, o, la, lo = batch()
    a.requires_grad_(True)
    loss = triplet_loss(a, o, la, lo, 0.3, "hard")
    loss.backward()
    with torch.no_grad():
        moved = a - 0.5 * a.grad
    assert float(triplet_loss(moved, o, la, lo, 0.3, "hard")) < float(loss.detach())


class _Students:
    variant = "unified"


def test_loss_class_is_symmetric_and_validates_options():
    a, o, la, lo = batch()
    opts = {**CrossModalTriplet.defaults}
    one_way = CrossModalTriplet(None, {**opts, "symmetric": False}, _Students())(a, o, la, lo)
    assert float(one_way) == pytest.approx(float(triplet_loss(o, a, lo, la, 0.2, "hard")))
    both = CrossModalTriplet(None, opts, _Students())(a, o, la, lo)
    expected = 0.5 * (triplet_loss(o, a, lo, la, 0.2, "hard") + triplet_loss(a, o, la, lo, 0.2, "hard"))
    assert float(both) == pytest.approx(float(expected))
    with pytest.raises(ConfigError, match="mining"):
        CrossModalTriplet(None, {**opts, "mining": "semi"}, _Students())
    with pytest.raises(ConfigError, match="margin"):
        CrossModalTriplet(None, {**opts, "margin": -1}, _Students())


def test_distances_are_cosine():
    x = F.normalize(torch.randn(3, 5), dim=1)
    assert torch.allclose(cosine_distances(x, x).diagonal(), torch.zeros(3), atol=1e-6)
    assert torch.allclose(cosine_distances(x, -x).diagonal(), 2 * torch.ones(3), atol=1e-6)
