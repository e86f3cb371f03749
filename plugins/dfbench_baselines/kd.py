"""``kd``: Hinton-style knowledge distillation as an alignment loss (the encoders of ``unimodal-kd``).

For each modality, the KL divergence from the judging teacher's class distribution to the
student's, both softened by a temperature T and scaled by T^2 (Hinton, Vinyals, Dean 2015):

    L = sum_m T^2 * KL( softmax(t_m / T) || softmax(s_m / T) )

where ``t_m`` are the teacher's logits of the batch's images of modality m and ``s_m`` the
student's class logits through the frozen teacher head (:meth:`Students.class_logits_from_embedding`:
``scale * cos(embedding, teacher head weights)``). DAFL (Chen et al., ICCV 2019) trains its student
this way with T = 1 (the default). There is no cross-modal term: each encoder learns from its own
teacher only. The engine passes the teacher logits (``uses_teacher_logits``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F

from dfbench.api.alignment import AlignmentLoss
from dfbench.api.options import Options, option
from dfbench.api.errors import ConfigError
from dfbench.api.modalities import pair_of


def kd_loss(student_logits, teacher_logits, temperature: float = 1.0):
    """T^2 * KL(softmax(teacher / T) || softmax(student / T)), averaged over the batch."""
    t = float(temperature)
    log_q = F.log_softmax(student_logits / t, dim=1)
    p = F.softmax(teacher_logits.detach() / t, dim=1)
    return F.kl_div(log_q, p, reduction="batchmean") * t * t


@dataclass
class KDOptions(Options):
    temperature: float = option(1.0, min=0.0, min_exclusive=True, help="softmax temperature of teacher and student")


class KnowledgeDistillation(AlignmentLoss):
    Options = KDOptions
    uses_teacher_logits = True

    def __init__(self, ctx, options, students):
        super().__init__(ctx, options, students)
        if float(options["temperature"]) <= 0:
            raise ConfigError(f"params.alignment.temperature must be positive, got {options['temperature']!r}.")

    def __call__(self, emb_gallery, emb_query, labels_gallery, labels_query, gallery_logits=None, query_logits=None):
        if gallery_logits is None or query_logits is None:
            raise ConfigError("The 'kd' alignment loss needs the teachers' logits of each batch; it runs inside the data-free engine.")
        t = float(self.options["temperature"])
        s = self.students
        gk, qk = pair_of(s).keys
        return kd_loss(s.class_logits_from_embedding(emb_gallery, gk), gallery_logits, t) + kd_loss(
            s.class_logits_from_embedding(emb_query, qk), query_logits, t
        )
