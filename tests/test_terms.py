"""Synthesis loss terms and alignment losses on small hand-checked cases."""

import math

import pytest
import torch
import torch.nn as nn

from dfbench.train import terms as T
from dfbench.train.models import Classifier
from dfbench.api.teachers import TeacherSet


class _Fixed(nn.Module):
    """A 'backbone' that returns given features, whatever the input."""

    def __init__(self, feats):
        super().__init__()
        self.feats = feats

    def forward(self, x):
        return self.feats


def _state(logits: dict, feats=None, targets=None, variant="independent"):
    models = {}
    images = {}
    for m, lg in logits.items():
        c = lg.shape[1]
        f = feats[m] if feats else torch.eye(lg.shape[0], c)
        clf = Classifier(_Fixed(f), f.shape[1], c, "fixed")
        with torch.no_grad():
            # head(features) == logits: features are the logits themselves, identity head
            clf.backbone.feats = lg if not feats else f
            clf.head.weight.copy_(torch.eye(c, f.shape[1]) if not feats else torch.zeros(c, f.shape[1]))
            clf.head.bias.zero_()
        models[m] = clf
        images[m] = torch.zeros(lg.shape[0], 3, 4, 4)
    return T.SynthesisState(images, TeacherSet(models), variant, targets=targets)


def test_one_hot_is_cross_entropy_to_argmax():
    lg = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    s = _state({"photo": lg})
    expected = (-(torch.log_softmax(lg, 1)[0, 0]) - torch.log_softmax(lg, 1)[1, 1]) / 2
    assert T.one_hot(s).item() == pytest.approx(expected.item())
    # with a target class the term uses it instead of the argmax
    s = _state({"photo": lg}, targets={"photo": torch.tensor([1, 1])})
    assert T.one_hot(s).item() == pytest.approx(-(torch.log_softmax(lg, 1)[:, 1]).mean().item())


def test_entropy_lowest_for_uniform_batch():
    uniform = _state({"photo": torch.tensor([[5.0, 0, 0], [0, 5.0, 0], [0, 0, 5.0]])})
    skewed = _state({"photo": torch.tensor([[5.0, 0, 0], [5.0, 0, 0], [5.0, 0, 0]])})
    assert T.entropy(uniform).item() == pytest.approx(-math.log(3), abs=1e-6)
    assert T.entropy(uniform).item() < T.entropy(skewed).item()
    assert T.balance(uniform).item() == pytest.approx(0.0, abs=1e-6)
    assert T.balance(skewed).item() > 0


def test_activation_is_minus_mean_abs_feature():
    feats = {"photo": torch.tensor([[1.0, -3.0], [2.0, 0.0]])}
    s = _state({"photo": torch.zeros(2, 2)}, feats=feats)
    assert T.activation(s).item() == pytest.approx(-1.5)


def test_class_alignment_zero_for_identical_distributions_and_positive_otherwise():
    lg = torch.tensor([[1.0, 2.0, 0.5]])
    assert T.class_alignment(_state({"photo": lg, "sketch": lg.clone()})).item() == pytest.approx(0.0, abs=1e-7)
    other = torch.tensor([[3.0, 0.0, 0.0]])
    assert T.class_alignment(_state({"photo": lg, "sketch": other})).item() > 0.1


def test_modality_term():
    d = nn.Linear(48, 1)
    with torch.no_grad():
        d.weight.zero_()
        d.bias.fill_(0.0)

    class D(nn.Module):
        def forward(self, x):
            return d(x.flatten(1))

    s = _state({"photo": torch.zeros(2, 2), "sketch": torch.zeros(2, 2)})
    s.teachers.models["modality"] = D()
    # logit 0 on both sides: BCE = log 2 each
    assert T.modality(s).item() == pytest.approx(2 * math.log(2))


def test_tv_and_l2():
    s = _state({"photo": torch.zeros(1, 2)})
    assert T.tv(s).item() == 0 and T.l2(s).item() == 0
    s.images["photo"] = torch.tensor([[[[0.0, 1.0], [0.0, 1.0]]]]).expand(1, 3, 2, 2)
    assert T.tv(s).item() == pytest.approx(1.0)  # horizontal diffs all 1, vertical 0
    assert T.l2(s).item() == pytest.approx(0.5)


def test_bn_hook_zero_when_batch_statistics_equal_running_ones():
    bn = nn.BatchNorm2d(2).eval()
    x = torch.randn(64, 2, 3, 3)
    with torch.no_grad():
        bn.running_mean.copy_(x.mean((0, 2, 3)))
        bn.running_var.copy_(x.var((0, 2, 3), unbiased=False))
    net = nn.Sequential(bn)
    hooks = T.BatchNormStatsHooks([net])
    with hooks:
        net(x)
        assert hooks.collect().item() == pytest.approx(0.0, abs=1e-5)
        net(x + 1.0)  # mean off by 1 per channel: ||(1, 1)|| = sqrt(2)
        assert hooks.collect().item() == pytest.approx(math.sqrt(2), abs=1e-4)
    assert not bn._forward_hooks  # removed on exit


def test_adversarial_terms_sign_and_zero():
    class S:
        def __init__(self, lg):
            self.lg = lg

        def class_logits(self, x, m):
            return self.lg

    lg = torch.tensor([[2.0, 0.0], [0.0, 2.0]])
    s = _state({"photo": lg})
    s.students = S(lg.clone())
    assert T.adversarial_l1(s).item() == pytest.approx(0.0, abs=1e-7)
    assert T.adversarial_kl(s).item() == pytest.approx(0.0, abs=1e-7)
    assert T.adversarial_js(s).item() == pytest.approx(0.0, abs=1e-7)
    s2 = _state({"photo": lg})
    s2.students = S(-lg)
    assert T.adversarial(s2).item() < T.adversarial(s).item() < 0
    assert T.adversarial_js(s2).item() < 0


def test_check_weights_rejects_unknown_and_drops_zero():
    from dfbench.api.errors import ConfigError

    assert T.check_weights({"one_hot": 1, "entropy": 0}) == {"one_hot": 1.0}
    with pytest.raises(ConfigError, match="Did you mean 'one_hot'"):
        T.check_weights({"onehot": 1})


def test_proxy_anchor_hand_case():
    from dfbench_alignment.proxy_anchor import proxy_anchor_loss

    proxies = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    emb = torch.tensor([[1.0, 0.0]])
    labels = torch.tensor([0])
    m, a = 0.1, 32.0
    # positive proxy 0: cos 1; negative proxy 1: cos 0
    expected = math.log1p(math.exp(-a * (1 - m))) + 0.5 * (math.log1p(math.exp(a * (0 + m))) + 0.0)
    assert proxy_anchor_loss(emb, labels, proxies, m, a).item() == pytest.approx(expected, rel=1e-5)
    # a better-aligned batch has a lower loss than a misaligned one
    bad = proxy_anchor_loss(torch.tensor([[0.0, 1.0]]), labels, proxies, m, a)
    assert bad.item() > expected


def test_terms_are_registered_components_that_declare_what_they_need():
    from dfbench.api.plugins import get_plugins, registry

    get_plugins()
    terms = registry("terms")
    assert {"one_hot", "class_alignment", "adversarial", "modality", "bn"} <= set(terms.names())
    for entry in terms:
        fn = entry.load()
        assert callable(fn) and entry.description, entry.name
        assert fn.needs <= set(T.NEEDS), entry.name
    assert T.needs_of({"class_alignment": 1.0, "adversarial": 1.0}) == {"pair", "students"}
    assert T.needs_of({"one_hot": 1.0}) == frozenset()


def test_a_plugin_adds_a_synthesis_term():
    """A third party's term is weighed like a built-in: checked by the config schema, computed by
    the strategies, and its needs decide the teachers a method loads."""
    import torch

    from dfbench import hookimpl
    from dfbench.app.config import resolve
    from dfbench.train.engine import DataFreeMethod
    from dfbench.api.plugins import get_plugins, registry

    @T.term("modality_teacher")
    def brightness(s):
        return -sum(s.images[m].mean() for m in s.modalities)

    class Extra:
        @hookimpl
        def dfbench_register_terms(self, register):
            register("brightness", brightness, description="Brighter images (a test term).")

    system = get_plugins()
    with system.registered(Extra(), name="extra-term"):
        assert registry("terms").load("brightness") is brightness
        cfg = resolve(method="dfsbir", dataset="shapes", profile="smoke", seed=0, device="cpu",
                      method_profiles={}, overrides={"params": {"weights": {"brightness": 2}}})
        assert cfg["params"]["weights"]["brightness"] == 2
        assert "modality" in DataFreeMethod().teacher_roles({"variant": "independent", "weights": {"brightness": 1}})
        state = T.SynthesisState({"photo": torch.zeros(2, 3, 4, 4)}, teachers=None, variant="independent")
        total, parts = T.weighted_sum(state, {"brightness": 2.0})
        assert total.item() == 0.0 and set(parts) == {"brightness"}
