"""``prior`` (Gaussian Prior): images drawn from an i.i.d. Gaussian in image space, squashed into
[-1, 1] (sketches grey), labelled by the teachers (DF-SBIR's Gaussian Prior baseline).

Like every strategy it returns a :class:`dfbench.api.inversion.SynthBatch`; teacher labels come from
the teacher that judges each modality under the run's variant.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

from dfbench.api.errors import ConfigError
from dfbench.api.inversion import InversionStrategy, SynthBatch
from dfbench.api.options import Options, option
from dfbench_inversions.common import batch_from, refuse_weights
from dfbench.api.modalities import pair_of


@dataclass
class PriorOptions(Options):
    batch_size: int = option(64, min=1, help="pairs per round")
    mean: float = option(0.0, help="mean of each pixel's draw")
    std: float = option(1.0, min=0.0, min_exclusive=True, help="standard deviation of each pixel's draw")
    squash: Literal["tanh", "clamp"] = option("tanh", help="how draws are mapped into the image range [-1, 1]")
    resolution: int | None = option(None, min=1, help="side of the noise grid (null: the image size, i.i.d. pixels)")
    pair_by_label: bool = option(True, help="pair the two modalities' images by teacher label where the labels allow")


class GaussianPrior(InversionStrategy):
    """Images from a Gaussian prior in image space (the paper's "Gaussian Prior" baseline).

    Each pixel is ``mean + std * N(0, 1)`` independently; a colour modality (photos) draws three
    channels, a grey one (sketches) one channel replicated over three, like the real ones. ``squash`` maps the draws into the
    image range [-1, 1]: ``tanh`` (smooth) or ``clamp``. ``resolution`` (default: none, the image
    size) draws the noise on a coarser grid, bilinearly upsampled: a spatially correlated Gaussian
    prior. Small teachers tend to put all i.i.d. pixel noise in one class; coarse noise spreads
    their labels. The two modalities are drawn independently and then paired by teacher label
    where the labels allow (``pair_by_label``).
    """

    Options = PriorOptions

    def __init__(self, ctx, options, weights, variant):
        super().__init__(ctx, options, weights, variant)
        refuse_weights("prior", weights)
        if options["squash"] not in ("tanh", "clamp"):
            raise ConfigError(f"params.inversion.squash must be 'tanh' or 'clamp', got {options['squash']!r}.")
        if float(options["std"]) <= 0:
            raise ConfigError(f"params.inversion.std must be positive, got {options['std']!r}.")
        res = options["resolution"]
        if res is not None and (isinstance(res, bool) or not isinstance(res, int) or not 1 <= res <= ctx.image_size):
            raise ConfigError(
                f"params.inversion.resolution must be null or an integer from 1 to the image size "
                f"({ctx.image_size}), got {res!r}."
            )
        self.generator = ctx.rng("prior/images")
        self.last_parts: dict = {}

    def draw(self, n: int, modality: str) -> torch.Tensor:
        """``n`` images of ``modality`` from the prior, (n, 3, S, S) in [-1, 1] on the run's device."""
        size = self.ctx.image_size
        res = self.options["resolution"] or size
        channels = pair_of(self.ctx)[modality].channels
        x = torch.randn(n, channels, res, res, generator=self.generator)
        x = float(self.options["mean"]) + float(self.options["std"]) * x
        if res != size:
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
        x = torch.tanh(x) if self.options["squash"] == "tanh" else x.clamp(-1.0, 1.0)
        return x.expand(-1, 3, -1, -1).contiguous().to(self.ctx.device)

    def synthesize(self, students) -> SynthBatch:
        n = int(self.options["batch_size"])
        images = {m: self.draw(n, m) for m in pair_of(self.ctx)}
        return batch_from(self.ctx, images, self.variant, self.generator, bool(self.options["pair_by_label"]))

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
