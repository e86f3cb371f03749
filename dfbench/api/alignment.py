"""The alignment-loss interface: how the two encoders are pulled into one metric space.

An alignment loss is constructed with the run context, its options (``params.alignment`` besides
``loss``) and the :class:`dfbench.train.students.Students` (for proxies), and called with the gallery
and query embeddings of a batch of pairs (row i of each is one pair; the modalities are the
benchmark's, ``students.modalities``: photos and sketches in the default pair) and their labels; it
returns a scalar.
"""

from __future__ import annotations

from dfbench.api.options import DefaultsOf, Options


class AlignmentLoss:
    #: given by the register() call when the registry loads the class (dfbench.api.registry.Entry)
    name: str = ""
    description: str = ""
    #: its options (``params.alignment`` besides ``loss``), a :class:`dfbench.api.options.Options`
    #: dataclass; ``defaults`` is derived from it
    Options = Options
    defaults = DefaultsOf()
    #: when True the engine also passes ``gallery_logits=`` and ``query_logits=`` (the judging
    #: teachers' logits of the batch's images, no gradient) as keyword arguments
    uses_teacher_logits: bool = False

    def __init__(self, ctx, options: dict, students):
        self.ctx = ctx
        self.options = options
        self.students = students

    def __call__(self, emb_gallery, emb_query, labels_gallery, labels_query):
        raise NotImplementedError

    def parameters(self):
        """Trainable parameters of the loss itself (learnable proxies, temperatures)."""
        return []

    def state_dict(self) -> dict:
        """State to checkpoint (queues, learnable parameters)."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass
