"""Pin teachers: copy a cache's trained teachers into the teacher store the committed leaderboards
run on (``leaderboards/teachers``), so every machine that runs a suite loads the same teachers
instead of training them again.

Why: a teacher's cache key names its recipe (data, config, seed, threads), not the bits the recipe
gives. The same recipe trained on another kind of CPU sums in another order and gives another
teacher (qd-cifar10, seed 1, photo: validation accuracy 0.673 on one machine, 0.687 on another).
Rows compared seed by seed must share their teachers, so a leaderboard's teachers are pinned once and
travel with the checkout. A pinned teacher is never replaced: pinning a different teacher under the
same key is refused.

    python benchmarks/pin_teachers.py --cache "$DFBENCH_CACHE" --dataset qd-cifar10 [--role photo ...]

prints what it pinned and rewrites ``leaderboards/teachers/manifest.json`` (key: weights digest,
validation accuracy, what it was trained on, size).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def digest_of(path: Path) -> tuple[str, dict]:
    """The weights digest of a cached teacher (as records carry it) and the cache entry."""
    from dfbench.api.safeload import load_torch_file
    from dfbench.train.models import state_digest

    entry = load_torch_file(path)
    return state_digest(entry["state_dict"]), entry


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", type=Path, required=True, help="the cache folder whose teachers/ to pin")
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--role", action="append", default=None, help="only these roles (photo, sketch, modality, unified)")
    ap.add_argument("--store", type=Path, default=ROOT / "leaderboards" / "teachers")
    args = ap.parse_args(argv)
    args.store.mkdir(parents=True, exist_ok=True)
    manifest_path = args.store / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    pinned = 0
    for src in sorted((args.cache / "teachers").glob(f"{args.dataset}-*.pt")):
        role = src.stem.split("-")[-3]
        if args.role and role not in args.role:
            continue
        digest, entry = digest_of(src)
        key = src.stem
        if key in manifest and manifest[key]["weights_sha256"] != digest:
            print(f"refused: {key} is pinned with weights {manifest[key]['weights_sha256']}, the cache holds {digest}", file=sys.stderr)
            return 2
        if key not in manifest:
            shutil.copyfile(src, args.store / src.name)
            pinned += 1
        manifest[key] = {"weights_sha256": digest, "accuracy": entry.get("accuracy"), "trained_on": entry.get("trained_on", "unrecorded"),
                         "bytes": src.stat().st_size}
        print(f"{key}: {digest} accuracy {json.dumps(entry.get('accuracy'))}")
    manifest_path.write_text(json.dumps(dict(sorted(manifest.items())), indent=2) + "\n")
    print(f"{pinned} teacher(s) pinned in {args.store}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
