"""Pictures say what they show: a title (method, dataset, seed, round), a legend, each query's AP."""

from __future__ import annotations

from types import SimpleNamespace

import torch
from PIL import Image

from dfbench.app import pictures


def _dark(image, box) -> int:
    """Pixels darker than light grey inside ``box`` (left, top, right, bottom)."""
    return sum(image.convert("L").crop(box).histogram()[:160])


def _retrieval(path, **kwargs):
    g = torch.Generator().manual_seed(0)
    queries = torch.rand(3, 3, 8, 8, generator=g) * 2 - 1
    gallery = {j: torch.rand(3, 8, 8, generator=g) * 2 - 1 for j in range(6)}
    top_idx = torch.tensor([[0, 1, 2], [3, 4, 5], [5, 0, 1]])
    pictures.save_retrieval(queries, torch.tensor([0, 1, 2]), gallery, torch.tensor([0, 0, 1, 1, 2, 2]), top_idx, path, top=3, **kwargs)
    return Image.open(path)


def test_retrieval_panel_has_a_title_a_legend_and_each_querys_ap(tmp_path):
    plain = _retrieval(tmp_path / "plain.png")
    titled = _retrieval(tmp_path / "titled.png", aps=torch.tensor([0.5, 0.25, 1.0]), title="m on d, seed 3, round 7")
    rows = 3
    extra = (pictures.LINE_H + pictures.PAD) + rows * pictures.LINE_H + len(pictures.RETRIEVAL_LEGEND) * pictures.LINE_H + pictures.PAD
    assert titled.height == plain.height + extra
    top = pictures.LINE_H + pictures.PAD
    assert _dark(titled, (0, 0, titled.width, top)) > 20  # the title
    for r in range(rows):  # "AP 0.xxx" under each query
        y = top + pictures.PAD + r * (pictures.CELL + pictures.PAD + pictures.LINE_H) + pictures.CELL
        assert _dark(titled, (pictures.PAD, y, pictures.PAD + pictures.CELL, y + pictures.LINE_H)) > 10, r
    assert _dark(titled, (0, titled.height - len(pictures.RETRIEVAL_LEGEND) * pictures.LINE_H, titled.width, titled.height)) > 50


def test_pairs_have_a_title_and_a_legend(tmp_path):
    x = torch.zeros(4, 3, 8, 8)
    labels = (torch.tensor([0, 1, 0, 1]), torch.tensor([0, 1, 0, 1]))
    pictures.save_pairs(x, x, tmp_path / "plain.png", labels, ["a", "b"])
    pictures.save_pairs(x, x, tmp_path / "titled.png", labels, ["a", "b"], title="m on d, seed 0, round 2")
    plain, titled = Image.open(tmp_path / "plain.png"), Image.open(tmp_path / "titled.png")
    assert titled.height == plain.height + pictures.LINE_H + pictures.PAD + len(pictures.legend(pictures.PAIRS_LEGEND)) * pictures.LINE_H + pictures.PAD
    assert titled.width >= 6 * max(map(len, pictures.legend(pictures.PAIRS_LEGEND)))  # the legend is not cut off


def test_run_title_names_method_dataset_seed_and_round():
    ctx = SimpleNamespace(config={"method": "dfsbir", "dataset": "shapes", "seed": 2, "params": {"rounds": 300}})
    assert pictures.run_title(ctx) == "dfsbir on shapes, seed 2, round 300"
    ctx.config["params"] = {"variant": "independent"}
    assert pictures.run_title(ctx) == "dfsbir on shapes, seed 2, no training rounds"
