"""Loss terms for synthesis, shared by every inversion strategy.

A method's synthesis loss is a weighted sum of named terms (``params.weights``), each a registered
component (``dfbench_register_terms``; the built-in ones below are registered by the
``inversions`` plugin, a plugin can add its own): a term with weight 0 is not computed at all, which is how ablations switch terms off. Each term is a function of a
:class:`SynthesisState`, which computes (once, lazily) what the terms need: teacher features and
logits per modality, the modality classifier's logits, the students' class logits, and the
BatchNorm-statistics penalty collected by :class:`BatchNormStatsHooks`.

Signs follow "lower is better for the synthesiser": a term the generator should maximise (the
students' disagreement) enters with a minus sign.
"""

from __future__ import annotations

import math
from contextlib import contextmanager

import torch
import torch.nn as nn
import torch.nn.functional as F

from dfbench.api.modalities import pair_of

#: what a term may need besides the class teachers' outputs of a batch: both modalities of a pair
#: (``pair``), the classifier that tells the two modalities apart (``modality_teacher``), the
#: students (``students``)
NEEDS = ("pair", "modality_teacher", "students")


def term(*needs: str):
    """Declare a synthesis loss term: a function of a :class:`SynthesisState` returning a scalar
    tensor, lower being better for the synthesiser, and what it needs (:data:`NEEDS`). Terms are
    registered like every other component (``dfbench_register_terms``)."""
    unknown = set(needs) - set(NEEDS)
    if unknown:
        raise ValueError(f"unknown needs {sorted(unknown)}; a term may need {', '.join(NEEDS)}")

    def declare(fn):
        fn.needs = frozenset(needs)
        return fn

    return declare


class BatchNormStatsHooks:
    """Forward hooks on every BatchNorm layer of some modules: each forward pass adds, per layer,
    ``||mean_batch - running_mean||_2 + ||var_batch - running_var||_2`` of the layer's input
    (DeepInversion, Yin et al. 2020; Fast-Datafree's ``DeepInversionHook``). The first layer's term
    can be scaled (``first_layer_scale``). Use as a context manager: hooks are removed on exit.
    Forward passes inside ``paused()`` record nothing (a second augmented view, for instance).
    """

    def __init__(self, modules, first_layer_scale: float = 1.0):
        self.modules = [m for m in modules if m is not None]
        self.first_layer_scale = float(first_layer_scale)
        self._handles: list = []
        self._losses: list[torch.Tensor] = []
        self._paused = False

    def _hook(self, scale: float):
        def hook(module, inputs, output):
            if self._paused:
                return
            x = inputs[0]
            dims = [0] + list(range(2, x.dim()))
            mean, var = self.matched_statistics(module, x.mean(dim=dims), x.var(dim=dims, unbiased=False))
            loss = torch.norm(mean - module.running_mean, 2) + torch.norm(var - module.running_var, 2)
            self._losses.append(scale * loss)

        return hook

    def matched_statistics(self, layer, mean: torch.Tensor, var: torch.Tensor) -> tuple:
        """The statistics compared with the layer's running ones: the batch's own here;
        subclasses may blend in history (Fast's moving average)."""
        return mean, var

    def __enter__(self):
        for module in self.modules:
            first = True
            for layer in module.modules():
                if isinstance(layer, nn.modules.batchnorm._BatchNorm) and layer.track_running_stats:
                    scale = self.first_layer_scale if first else 1.0
                    self._handles.append(layer.register_forward_hook(self._hook(scale)))
                    first = False
        return self

    def __exit__(self, *exc):
        for h in self._handles:
            h.remove()
        self._handles.clear()
        self._losses.clear()
        return False

    @contextmanager
    def paused(self):
        """Forward passes inside this block add nothing to the penalty."""
        was, self._paused = self._paused, True
        try:
            yield self
        finally:
            self._paused = was

    def collect(self) -> torch.Tensor | None:
        """Sum of the penalties recorded since the last call (None when nothing was recorded)."""
        if not self._losses:
            return None
        total = torch.stack(self._losses).sum()
        self._losses.clear()
        return total


class SynthesisState:
    """What the terms see for one synthesised batch of pairs of the benchmark's two modalities
    (``pair``: a :class:`dfbench.api.modalities.ModalityPair`; by default the teachers')."""

    def __init__(
        self,
        images: dict,
        teachers,
        variant: str,
        students=None,
        targets: dict | None = None,
        bn_hooks: BatchNormStatsHooks | None = None,
        views: dict | None = None,
        memory: dict | None = None,
        temperature: float = 0.1,
        entropy_log_base: float | str = "e",
        pair=None,
    ):
        self.pair = pair if pair is not None else pair_of(teachers)
        self.images = images  # {modality key: (B,3,S,S)} for both modalities; a method may have one
        self.teachers = teachers
        self.variant = variant
        self.students = students
        self.targets = targets or {}
        self.bn_hooks = bn_hooks
        # for the contrastive term: a second augmented view of each modality's images (row i is
        # the same sample as row i of ``images``), earlier samples' L2-normalised teacher features
        # as extra negatives ({m: (K, D)}), and the InfoNCE temperature
        self.views = views or {}
        self.memory = memory or {}
        self.temperature = float(temperature)
        # the base of the logarithm of the ``entropy`` term (params.entropy_log_base): e, or 10 as
        # in the DF-SBIR release
        self.entropy_log_base = math.e if entropy_log_base == "e" else float(entropy_log_base)
        self._cache: dict = {}

    @property
    def modalities(self):
        return [m for m in self.pair.keys if m in self.images]

    def _teacher_pass(self):
        if "teacher" in self._cache:
            return self._cache["teacher"]
        feats, logits = {}, {}
        if self.variant == "unified" and len(self.modalities) == 2:
            # one pass over both modalities: the unified teacher's BatchNorm statistics are of mixed batches
            teacher = self.teachers["unified"]
            g, q = self.pair.keys
            x = torch.cat([self.images[g], self.images[q]])
            f = teacher.features(x)
            lg = teacher.head(f)
            n = self.images[g].shape[0]
            feats = {g: f[:n], q: f[n:]}
            logits = {g: lg[:n], q: lg[n:]}
        else:
            for m in self.modalities:
                teacher = self.teachers.for_modality(m, self.variant)
                feats[m] = teacher.features(self.images[m])
                logits[m] = teacher.head(feats[m])
        bn = self.bn_hooks.collect() if self.bn_hooks is not None else None
        self._cache["teacher"] = (feats, logits, bn)
        return self._cache["teacher"]

    def teacher_features(self, m):
        return self._teacher_pass()[0][m]

    def teacher_logits(self, m):
        return self._teacher_pass()[1][m]

    def view_features(self, m):
        """Teacher features of the second view of modality ``m`` (its BatchNorm statistics are not
        part of the ``bn`` penalty, which belongs to ``images``)."""
        key = ("view", m)
        if key not in self._cache:
            if m not in self.views:
                raise RuntimeError("the 'contrastive' term needs the strategy to pass a second view (views=)")
            self._teacher_pass()  # the first view's pass owns the BatchNorm penalty
            teacher = self.teachers.for_modality(m, self.variant)
            if self.bn_hooks is not None:
                with self.bn_hooks.paused():
                    self._cache[key] = teacher.features(self.views[m])
            else:
                self._cache[key] = teacher.features(self.views[m])
        return self._cache[key]

    def labels(self, m):
        if m in self.targets:
            return self.targets[m]
        return self.teacher_logits(m).detach().argmax(1)

    def bn_penalty(self):
        bn = self._teacher_pass()[2]
        if bn is None:
            raise RuntimeError("the 'bn' term needs the strategy to run with BatchNormStatsHooks")
        return bn

    def modality_logits(self, m):
        key = ("modality", m)
        if key not in self._cache:
            self._cache[key] = self.teachers["modality"](self.images[m]).squeeze(1)
        return self._cache[key]

    def student_logits(self, m):
        key = ("student", m)
        if key not in self._cache:
            if self.students is None:
                raise RuntimeError("adversarial terms need the students")
            self._cache[key] = self.students.class_logits(self.images[m], m)
        return self._cache[key]


# -- the terms ----------------------------------------------------------------------------------

@term()
def one_hot(s: SynthesisState):
    """Cross-entropy of the teacher's logits against their argmax (or the target class)."""
    return sum(F.cross_entropy(s.teacher_logits(m), s.labels(m)) for m in s.modalities)


@term("pair")
def pair_one_hot(s: SynthesisState):
    """Cross-entropy of both teachers' logits against one label per pair: the class the two
    teachers find jointly most likely (argmax of the summed log-probabilities). Where ``one_hot``
    lets each estimator sharpen towards its own teacher's argmax (the two images of one noise may
    settle on two classes), this pushes both sides of a pair towards the same class."""
    g, q = s.pair.keys
    log_p = {m: F.log_softmax(s.teacher_logits(m), dim=1) for m in (g, q)}
    joint = (log_p[g] + log_p[q]).detach().argmax(1)
    return sum(F.nll_loss(log_p[m], joint) for m in (g, q))


@term()
def entropy(s: SynthesisState):
    """Information entropy (DAFL): sum of p log p of the batch-mean softmax; lowest for a batch
    spread evenly over the classes. The logarithm's base is ``s.entropy_log_base`` (natural by
    default; the DF-SBIR release uses log10)."""
    total = 0
    for m in s.modalities:
        p = F.softmax(s.teacher_logits(m), dim=1).mean(0)
        total = total + (p * torch.log(p.clamp_min(1e-12))).sum()
    if s.entropy_log_base != math.e:
        total = total / math.log(s.entropy_log_base)
    return total


@term()
def balance(s: SynthesisState):
    """Class balance (DFQ): KL of the batch-mean softmax from the uniform distribution (>= 0)."""
    total = 0
    for m in s.modalities:
        p = F.softmax(s.teacher_logits(m), dim=1).mean(0)
        total = total + (p * torch.log(p.clamp_min(1e-12) * p.numel())).sum()
    return total


@term()
def activation(s: SynthesisState):
    """Minus the mean absolute penultimate teacher feature (DAFL)."""
    return -sum(s.teacher_features(m).abs().mean() for m in s.modalities)


@term("modality_teacher")
def modality(s: SynthesisState):
    """Modality guidance: BCE(d(gallery image), 0) + BCE(d(query image), 1) (the paper's
    BCE(d(photo), 0) + BCE(d(sketch), 1))."""
    total = 0
    for m in s.modalities:
        logit = s.modality_logits(m)
        target = torch.zeros_like(logit) if s.pair.index(m) == 0 else torch.ones_like(logit)
        total = total + F.binary_cross_entropy_with_logits(logit, target)
    return total


@term("pair")
def class_alignment(s: SynthesisState):
    """KL(p_query || p_gallery) of the teachers' class distributions for the same noise (the
    paper's KL(p_sketch || p_photo)), the query side detached: the pair shows one class."""
    log_p_gallery = F.log_softmax(s.teacher_logits(s.pair.gallery.key), dim=1)
    p_query = F.softmax(s.teacher_logits(s.pair.query.key).detach(), dim=1)
    return F.kl_div(log_p_gallery, p_query, reduction="batchmean")


@term("students")
def adversarial(s: SynthesisState):
    """Minus the cross-entropy of the students' class predictions (``Students.class_logits``: their
    ``params.student_head``) against the teacher labels (the paper's L_adv): the synthesiser seeks
    samples the students still get wrong."""
    return -sum(F.cross_entropy(s.student_logits(m), s.labels(m)) for m in s.modalities)


@term("students")
def adversarial_l1(s: SynthesisState):
    """Minus the mean L1 distance between student and teacher class probabilities (DFAD's
    disagreement, on probabilities because student logits are scaled cosines)."""
    return -sum(
        (F.softmax(s.student_logits(m), 1) - F.softmax(s.teacher_logits(m), 1)).abs().sum(1).mean() for m in s.modalities
    )


@term("students")
def adversarial_kl(s: SynthesisState):
    """Minus KL(teacher || student) (ZSKT)."""
    return -sum(
        F.kl_div(F.log_softmax(s.student_logits(m), 1), F.softmax(s.teacher_logits(m), 1), reduction="batchmean")
        for m in s.modalities
    )


@term("students")
def adversarial_kl_masked(s: SynthesisState):
    """Minus KL(teacher || student), counted only on the samples whose student argmax equals the
    teacher's, averaged over the whole batch (the "decision adversarial" term of CMI and Fast):
    the synthesiser pushes samples towards the students' decision boundary without rewarding
    samples the students already get wrong, so the term cannot run away while the students are
    still poor."""
    total = 0
    for m in s.modalities:
        t, st = s.teacher_logits(m), s.student_logits(m)
        agree = (st.detach().argmax(1) == t.detach().argmax(1)).to(t.dtype)
        kl = F.kl_div(F.log_softmax(st, 1), F.softmax(t, 1), reduction="none").sum(1)
        total = total - (kl * agree).mean()
    return total


@term("students")
def adversarial_js(s: SynthesisState):
    """Minus the Jensen-Shannon divergence between teacher and student (ADI's competition)."""
    total = 0
    for m in s.modalities:
        p = F.softmax(s.teacher_logits(m), 1)
        q = F.softmax(s.student_logits(m), 1)
        mix = (0.5 * (p + q)).clamp_min(1e-12).log()
        total = total - 0.5 * (F.kl_div(mix, p, reduction="batchmean") + F.kl_div(mix, q, reduction="batchmean"))
    return total


@term()
def contrastive(s: SynthesisState):
    """InfoNCE instance discrimination over the teacher's features of two views of each sample
    (CMI, Fang et al. 2021): the second view of sample i must be closer to the first view of
    sample i than to the first views of the other samples of the batch and to the ``memory`` of
    earlier samples (both negatives). Lowest when each sample is recognisable across views and
    unlike every other one: it pushes synthesis towards diverse samples."""
    total = 0
    for m in s.modalities:
        anchor = F.normalize(s.view_features(m), dim=1)
        keys = F.normalize(s.teacher_features(m), dim=1)
        logits = anchor @ keys.t()
        bank = s.memory.get(m)
        if bank is not None and len(bank):
            logits = torch.cat([logits, anchor @ bank.to(anchor).t()], dim=1)
        target = torch.arange(anchor.shape[0], device=anchor.device)
        total = total + F.cross_entropy(logits / s.temperature, target)
    return total


@term()
def bn(s: SynthesisState):
    """BatchNorm-statistics matching of the teachers (DeepInversion, Fast, DFQ, CMI)."""
    return s.bn_penalty()


@term()
def tv(s: SynthesisState):
    """Total variation (mean absolute difference of neighbouring pixels)."""
    total = 0
    for m in s.modalities:
        x = s.images[m]
        total = total + (x[:, :, 1:, :] - x[:, :, :-1, :]).abs().mean() + (x[:, :, :, 1:] - x[:, :, :, :-1]).abs().mean()
    return total


@term()
def l2(s: SynthesisState):
    """Mean squared pixel value (image prior of DeepInversion)."""
    return sum(s.images[m].pow(2).mean() for m in s.modalities)


def check_weights(weights: dict) -> dict:
    """The non-zero weights of ``params.weights``, as floats; an unregistered term is an error."""
    from dfbench.api.errors import ConfigError, did_you_mean
    from dfbench.api.plugins import registry

    known = registry("terms").names()
    for name, w in weights.items():
        if name not in known:
            raise ConfigError(
                f"Unknown loss term '{name}' in params.weights.{did_you_mean(name, known)} "
                f"Terms: {', '.join(known)}."
            )
        if not isinstance(w, (int, float)) or isinstance(w, bool):
            raise ConfigError(f"params.weights.{name} must be a number, got {w!r}.")
    return {k: float(v) for k, v in weights.items() if float(v) != 0.0}


def needs_of(weights: dict) -> frozenset:
    """What the terms of ``weights`` need together (a subset of :data:`NEEDS`)."""
    from dfbench.api.plugins import registry

    return frozenset().union(*(getattr(registry("terms").load(name), "needs", frozenset()) for name in weights))


def weighted_sum(state: SynthesisState, weights: dict) -> tuple[torch.Tensor, dict]:
    """The weighted loss and each term's (detached) value."""
    from dfbench.api.plugins import registry

    total = 0
    parts = {}
    for name, w in weights.items():
        value = registry("terms").load(name)(state)
        parts[name] = value.detach()
        total = total + w * value
    return total, parts


@contextmanager
def students_frozen(students):
    """Students in eval mode with no parameter gradients while the synthesiser trains (their
    BatchNorm statistics must not drift on synthesis batches)."""
    if students is None:
        yield
        return
    was_training = students.training
    flags = [p.requires_grad for p in students.parameters()]
    students.eval()
    for p in students.parameters():
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, f in zip(students.parameters(), flags):
            p.requires_grad_(f)
        students.train(was_training)
