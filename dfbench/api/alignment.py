"""The alignment-loss interface: how the two encoders are pulled into one metric space.

An alignment loss is constructed with the run context, its options (``params.alignment`` besides
``loss``) and the :class:`dfbench.train.students.Students` (for proxies), and called with the photo and
sketch embeddings of a batch of pairs and their labels; it returns a scalar.
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
    #: when True the engine also passes ``photo_logits=`` and ``sketch_logits=`` (the judging
    #: teachers' logits of the batch's images, no gradient) as keyword arguments
    uses_teacher_logits: bool = False

    def __init__(self, ctx, options: dict, students):
        self.ctx = ctx
        self.options = options
        self.students = students

    def __call__(self, emb_photo, emb_sketch, labels_photo, labels_sketch):
        raise NotImplementedError

    def parameters(self):
        """Trainable parameters of the loss itself (learnable proxies, temperatures)."""
        return []

    def state_dict(self) -> dict:
        """State to checkpoint (queues, learnable parameters)."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass
