"""Pictures of a run, saved beside its record (``<results>/<dataset>/<method>/<run_id>/``):

- ``pairs.png``: synthesised pairs, one column per pair (top row the gallery modality, bottom row
  the query modality: photos above sketches in the default pair), with each image's teacher label;
- ``retrieval.png``: one query per class with its AP, and its top 8 gallery items, relevant ones
  framed green, others red;

The legends speak of the benchmark's modalities by the names its dataset declares.

Both carry a title (method, dataset, seed, round) and a legend that says what the labels and
frames mean, so a picture shared on its own still says what it shows.
- ``curves.png``: every loss term and the alignment loss over rounds, then the monitored mAP@all measured
  every ``curve_eval_every`` rounds from round 0 (the untrained students) on (from ``curves.csv``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch

CELL = 64
PAD = 4


def _to_pil(img: torch.Tensor, size: int = CELL):
    from PIL import Image

    arr = ((img.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()
    return Image.fromarray(arr).resize((size, size), Image.NEAREST)


def _save_png(image, path: Path) -> None:
    from dfbench.api.fileio import atomic_open

    with atomic_open(path, "wb") as fh:
        image.save(fh, format="PNG")


LINE_H = 12  # height of a line of PIL's default font, with spacing

#: formatted with the modalities' names ({gallery}, {queries}: plurals; {query}: singular)
PAIRS_LEGEND = (
    "top row: synthesised {gallery}; bottom row: the {queries} synthesised from the same noise",
    "label under an image: its teacher label, the class the encoder loss treats it as",
)
RETRIEVAL_LEGEND = (
    "left: one query {query} per class, with its AP (average precision over the whole gallery)",
    "right: its top {gallery} by cosine, best first; green frame: same class (relevant), red: another class",
)


def legend(lines: Sequence[str], pair=None) -> tuple[str, ...]:
    """``lines`` in the words of ``pair`` (a :class:`dfbench.api.modalities.ModalityPair`; the default pair when None)."""
    from dfbench.api.modalities import DEFAULT_PAIR

    pair = pair or DEFAULT_PAIR
    names = {"gallery": pair.gallery.plural, "queries": pair.query.plural, "query": pair.query.name}
    return tuple(line.format(**names) for line in lines)


def run_title(ctx) -> str:
    """'method on dataset, seed S, round R' of a run (the round of the final students)."""
    cfg = ctx.config
    rounds = (cfg.get("params") or {}).get("rounds")
    done = f", round {rounds}" if rounds else ", no training rounds"
    return f"{cfg['method']} on {cfg['dataset']}, seed {cfg['seed']}{done}"


def _titled(body, title: str | None, legend: Sequence[str] = ()):
    """``body`` with ``title`` above it and the ``legend`` lines below (as it is without either)."""
    from PIL import Image, ImageDraw

    if not title and not legend:
        return body
    top = (LINE_H + PAD) if title else 0
    bottom = len(legend) * LINE_H + (PAD if legend else 0)
    width = max(body.width, *(6 * len(line) + 2 * PAD for line in [title or "", *legend]))
    canvas = Image.new("RGB", (width, body.height + top + bottom), "white")
    canvas.paste(body, (0, top))
    draw = ImageDraw.Draw(canvas)
    if title:
        draw.text((PAD, PAD // 2), title, fill="black")
    for i, line in enumerate(legend):
        draw.text((PAD, top + body.height + i * LINE_H), line, fill=(60, 60, 60))
    return canvas


def save_pairs(gallery: torch.Tensor, queries: torch.Tensor, path: Path, labels=None, classes=None, n: int = 10,
               title: str | None = None, pair=None) -> None:
    """Pairs of the gallery modality (top row) and the query modality (bottom row); ``labels``:
    (gallery labels, query labels); ``pair``: the benchmark's modalities, for the legend."""
    from PIL import Image, ImageDraw

    n = min(n, len(gallery))
    label_h = 12 if labels is not None else 0
    width = n * (CELL + PAD) + PAD
    height = 2 * (CELL + PAD + label_h) + PAD
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    for i in range(n):
        x = PAD + i * (CELL + PAD)
        for row, (imgs, lab) in enumerate(((gallery, labels[0] if labels else None), (queries, labels[1] if labels else None))):
            y = PAD + row * (CELL + PAD + label_h)
            canvas.paste(_to_pil(imgs[i]), (x, y))
            if lab is not None:
                name = classes[int(lab[i])] if classes else str(int(lab[i]))
                draw.text((x, y + CELL), name[:10], fill="black")
    _save_png(_titled(canvas, title, legend(PAIRS_LEGEND, pair) if title else ()), path)


def save_retrieval(queries, query_labels, gallery, gallery_labels, top_idx, path: Path, top: int = 8, aps=None, title: str | None = None,
                   pair=None) -> None:
    """``aps``: each query's average precision, written under it; ``title``: the run's title (a
    legend is added with it, in the words of ``pair``, the benchmark's modalities)."""
    from PIL import Image, ImageDraw

    rows = len(queries)
    ap_h = LINE_H if aps is not None else 0
    width = PAD + (CELL + PAD) * (top + 1) + PAD
    height = PAD + rows * (CELL + PAD + ap_h)
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    for r in range(rows):
        y = PAD + r * (CELL + PAD + ap_h)
        canvas.paste(_to_pil(queries[r]), (PAD, y))
        if aps is not None:
            draw.text((PAD, y + CELL), f"AP {float(aps[r]):.3f}", fill="black")
        for k in range(min(top, top_idx.shape[1])):
            j = int(top_idx[r, k])
            x = PAD + (CELL + PAD) * (k + 1) + PAD
            canvas.paste(_to_pil(gallery[j]), (x, y))
            good = int(gallery_labels[j]) == int(query_labels[r])
            draw.rectangle([x - 2, y - 2, x + CELL + 1, y + CELL + 1], outline=(0, 170, 0) if good else (210, 0, 0), width=2)
    _save_png(_titled(canvas, title, legend(RETRIEVAL_LEGEND, pair) if title else ()), path)


def curve_columns(rows: list[dict]) -> list[str]:
    """The columns of the curves but ``round``: losses and synthesis measures in first-seen order,
    then the monitored retrieval metric (``val mAP@all``, or ``test mAP@all`` in configs made before
    the protocol), whatever row first holds them."""
    keys = list(dict.fromkeys(k for r in rows for k in r if k != "round"))
    monitored = [k for k in keys if k.endswith(" mAP@all")]
    return [k for k in keys if k not in monitored] + monitored


def save_curves(rows: list[dict], path: Path) -> bool:
    """Plot each column of the curves against the round; False when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    keys = curve_columns(rows)
    fig, axes = plt.subplots(len(keys), 1, figsize=(6, 1.6 * len(keys) + 0.6), sharex=True, squeeze=False)
    for ax, key in zip(axes[:, 0], keys):
        points = [(r["round"], r[key]) for r in rows if r.get(key) is not None]
        ax.plot([x for x, _ in points], [y for _, y in points], lw=1.2, marker="o" if len(points) < 20 else None, ms=3)
        ax.set_ylabel(key.replace("term/", ""), rotation=0, ha="right", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    axes[-1, 0].set_xlabel("round")
    fig.tight_layout()
    from dfbench.api.fileio import atomic_open

    with atomic_open(path, "wb") as fh:
        fig.savefig(fh, format="png", dpi=90)
    plt.close(fig)
    return True


@torch.no_grad()
def retrieval_examples(q_emb, q_labels, g_emb, g_labels, top: int = 8):
    """One query per class (the first of each) and the indices of its top gallery items by cosine."""
    seen, picks = set(), []
    for i, lab in enumerate(q_labels.tolist()):
        if lab not in seen:
            seen.add(lab)
            picks.append(i)
    picks = torch.tensor(picks[:12], dtype=torch.long, device=q_emb.device)
    q = torch.nn.functional.normalize(q_emb[picks].float(), dim=1)
    g = torch.nn.functional.normalize(g_emb.float(), dim=1)
    top_idx = (q @ g.t()).topk(min(top, g.shape[0]), dim=1).indices
    return picks.cpu(), top_idx.cpu()
