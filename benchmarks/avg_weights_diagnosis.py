"""Why does avg-weights fall below classifier-only? Readouts of one record's two teachers, printed.

The paper finds Averaging Weights above Classifier Only (Sketchy 0.625 against 0.530); on the
pretrained cpu regime it is 0.087 against 0.357 (leaderboards/sketchy-pretrained-students.md). The
averaged network embeds both modalities, so it can only work if a network fine-tuned on one
modality still reads the other. This script takes a record (its config, split and teachers) and
prints mAP@all on its test split for:

- each modality embedded by its own teacher (classifier-only, the record's baseline);
- one teacher for both modalities, each teacher in turn (does fine-tuning on one modality transfer?);
- the averaged network with averaged BatchNorm statistics (avg-weights, the method);
- the averaged network with each side's own teacher's BatchNorm statistics (data-free);
- the averaged network with BatchNorm statistics re-estimated on each side's test images (AdaBN,
  Li et al. 2016: transductive, reads the test images, a diagnostic and never a row);
- weights mixed at 1/4 and 3/4 with each side's own statistics (the path between the teachers).

    python benchmarks/avg_weights_diagnosis.py RECORD [--cache-dir DIR]

RECORD's teachers must be in the cache (their files are named in the record); when they are not,
`dfbench reproduce RECORD --cache-dir DIR` trains them there first (bit for bit on a CPU with the
record's kernels). Readout: class probabilities, cosine, as both rows. On the CPU with one thread
unless ``--device`` / ``--threads`` say otherwise (the GPU check runs it on CUDA at 224 px).
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("record", type=Path)
    ap.add_argument("--cache-dir", type=Path, default=None, help="where the record's teachers are (default: the paths it names)")
    ap.add_argument("--device", default="cpu", help="where the readouts run (cpu, cuda)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads on the CPU")
    args = ap.parse_args(argv)

    import torch
    import torch.nn.functional as F

    from dfbench.api.modalities import pair_of
    from dfbench.api.plugins import get_plugins
    from dfbench.app.runner import load_benchmark
    from dfbench.train.metrics import retrieval_metrics

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    get_plugins()
    from dfbench_baselines.embedders import average_classifiers
    from dfbench_teachers.common import build_teacher

    rec = json.loads(args.record.read_text())
    cfg = rec["config"]
    # the cache the record's teachers name (<cache>/teachers/<file>), so nothing is written beside the caller
    cache = args.cache_dir or Path(next(iter(rec["teachers"].values()))["cache"]).parent.parent
    bench = load_benchmark(cfg, cache)
    pair = pair_of(bench)
    q, g = pair.query.key, pair.gallery.key
    nets = {}
    for side in (q, g):
        info = rec["teachers"][side]
        path = Path(info["cache"]) if args.cache_dir is None else args.cache_dir / "teachers" / Path(info["cache"]).name
        if not path.is_file():
            print(f"The {side} teacher is not at {path}: run `dfbench reproduce {args.record} --cache-dir DIR` "
                  "to train it there, then pass --cache-dir DIR.", file=sys.stderr)
            return 2
        net = build_teacher(side, cfg["teachers"], len(bench.classes), cfg["data"]["image_size"])
        net.load_state_dict(torch.load(path, map_location="cpu", weights_only=False)["state_dict"])
        nets[side] = net.to(device).eval()

    def test_images(side):
        s = bench.get("test", side)
        return s.load_uint8(list(range(len(s)))).float().div_(127.5).sub_(1.0), s.labels

    (xq, yq), (xg, yg) = test_images(q), test_images(g)

    @torch.no_grad()
    def probs(net, x):
        net.eval()
        return torch.cat([F.softmax(net.head(net.features(x[i:i + 256].to(device))), 1).cpu() for i in range(0, len(x), 256)])

    def with_statistics_of(net, src):
        out = copy.deepcopy(net)
        theirs = dict(src.named_buffers())
        for name, buf in out.named_buffers():
            if "running" in name:
                buf.copy_(theirs[name])
        return out

    @torch.no_grad()
    def adabn(net, x):
        out = copy.deepcopy(net)
        for m in out.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.reset_running_stats()
                m.momentum = None  # a cumulative mean over every batch
        out.train()
        for i in range(0, len(x), 256):
            out.features(x[i:i + 256].to(device))
        return out.eval()

    def mixed(a):
        sg, sq = nets[g].state_dict(), nets[q].state_dict()
        out = copy.deepcopy(nets[g])
        out.load_state_dict({k: (1 - a) * v + a * sq[k] if v.is_floating_point() else v for k, v in sg.items()})
        return out

    avg = average_classifiers(nets[g], nets[q])
    rows = [
        ("classifier-only: each side its own teacher", probs(nets[q], xq), probs(nets[g], xg)),
        (f"the {g} teacher for both", probs(nets[g], xq), probs(nets[g], xg)),
        (f"the {q} teacher for both", probs(nets[q], xq), probs(nets[q], xg)),
        ("avg-weights: averaged weights and BatchNorm statistics", probs(avg, xq), probs(avg, xg)),
        ("averaged weights, each side its own teacher's statistics", probs(with_statistics_of(avg, nets[q]), xq),
         probs(with_statistics_of(avg, nets[g]), xg)),
        ("averaged weights, statistics re-estimated on each side's test images (AdaBN, diagnostic)",
         probs(adabn(avg, xq), xq), probs(adabn(avg, xg), xg)),
    ]
    for a in (0.25, 0.75):
        net = mixed(a)
        rows.append((f"weights {1 - a:g} x {g} + {a:g} x {q}, each side its own teacher's statistics",
                     probs(with_statistics_of(net, nets[q]), xq), probs(with_statistics_of(net, nets[g]), xg)))
    acc = {side: rec["teachers"][side].get("accuracy", {}).get(side) for side in (q, g)}
    print(f"{rec['method']} record {args.record.name}: {cfg['dataset']}, seed {rec['seed']}, teachers {cfg['teachers']['arch']} "
          f"({cfg['teachers'].get('weights')}, {cfg['teachers'].get('optimizer', 'adamw')} lr {cfg['teachers']['lr']}, "
          f"{cfg['teachers']['epochs']} epochs; validation accuracy {q} {acc[q]}, {g} {acc[g]}), "
          f"{cfg['data']['image_size']} px; {len(yq)} test {pair.query.plural} x {len(yg)} {pair.gallery.plural}; "
          f"chance about {1 / len(bench.classes):.4f}")
    for name, eq, eg in rows:
        print(f"  {retrieval_metrics(eq, yq, eg, yg)['mAP@all']:.4f}  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
