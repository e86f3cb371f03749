"""The ``dfbench data`` command group: ``fetch`` a dataset, ``check`` that one loads.

This module is imported when the CLI starts: it must not import torch, torchvision or numpy at
module level (the commands import what they need when they run).
"""

from __future__ import annotations

from pathlib import Path

import click

PLURAL = {"photo": "photos", "sketch": "sketches"}


@click.group("data")
def data():
    """Get datasets and check that they load."""


@data.command("fetch")
@click.argument("name")
@click.option(
    "--dest",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder to build (default: $DFBENCH_DATA/NAME, else ~/.cache/dfbench/data/NAME).",
)
@click.option(
    "--source-bitmaps",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="Read QuickDraw numpy_bitmap files (<category>.npy) from this folder instead of downloading.",
)
@click.option(
    "--cifar-root",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="An existing torchvision CIFAR-10 folder (holding cifar-10-batches-py) instead of downloading it.",
)
@click.option("--photos/--no-photos", default=True, show_default=True, help="Build the CIFAR-10 photos too.")
@click.option(
    "--train-sketches", type=click.IntRange(min=1), default=70, show_default=True, help="Sketches per class in train."
)
@click.option(
    "--test-sketches", type=click.IntRange(min=1), default=30, show_default=True, help="Sketches per class in test."
)
@click.option(
    "--train-photos", type=click.IntRange(min=1), default=500, show_default=True, help="Photos per class in train."
)
@click.option(
    "--test-photos", type=click.IntRange(min=1), default=500, show_default=True, help="Photos per class in test."
)
@click.option(
    "--force", is_flag=True, help="Rebuild even if the folder exists (replaced only once the new one is complete)."
)
@click.option("--quiet", "-q", is_flag=True, help="No progress bars or messages.")
def fetch(
    name, dest, source_bitmaps, cifar_root, photos, train_sketches, test_sketches, train_photos, test_photos,
    force, quiet,
):
    """Download NAME's sources and build its folder tree (only qd-cifar10 can be fetched).

    qd-cifar10: QuickDraw sketches (Google's numpy_bitmap release, first drawings of each category)
    and CIFAR-10 test-split photos, written as {train,test}/{photo,sketch}/<class>/ files.
    """
    from dfbench_datasets.fetch import check_fetchable, fetch_qd_cifar10

    check_fetchable(name)

    def say(msg):
        if not quiet:
            click.echo(msg, err=True)

    result = fetch_qd_cifar10(
        dest,
        source_bitmaps=source_bitmaps,
        cifar_root=cifar_root,
        photos=photos,
        train_sketches=train_sketches,
        test_sketches=test_sketches,
        train_photos=train_photos,
        test_photos=test_photos,
        force=force,
        quiet=quiet,
        log=say,
    )
    if result.created:
        total = sum(result.counts.values())
        click.echo(f"Built {name} in {result.dest} ({total} files, {result.seconds:.1f}s).")
        if not photos:
            click.echo("Sketches only (--no-photos): the tree is not a complete dataset yet.")
    else:
        click.echo(f"{name} is already in {result.dest}; pass --force to rebuild it.")


@data.command("check")
@click.argument("name")
@click.option("--data-root", type=click.Path(path_type=Path), default=None, help="The dataset's root folder.")
@click.option("--image-size", type=click.IntRange(min=1), default=32, show_default=True)
@click.option("--skip-bad-images", is_flag=True, help="Skip unreadable image files with a warning.")
def check(name, data_root, image_size, skip_bad_images):
    """Load dataset NAME and print its classes, counts and load time."""
    import time

    from dfbench.datasets import SPLITS, MODALITIES, DatasetOptions
    from dfbench.plugins import registry

    import torch  # noqa: F401  (imported before the clock starts: the load time is the dataset's own)

    cls = registry("datasets").load(name)
    options = DatasetOptions(data_root=data_root, image_size=image_size, skip_bad_images=skip_bad_images)
    start = time.perf_counter()
    bench = (cls() if isinstance(cls, type) else cls).load(options)
    seconds = time.perf_counter() - start
    size = bench.image_size
    click.echo(f"{bench.name}: {bench.num_classes} classes, images {size}x{size}, loaded in {seconds:.2f}s")
    for split in SPLITS:
        counts = ", ".join(f"{len(bench.get(split, m))} {PLURAL[m]}" for m in MODALITIES)
        click.echo(f"  {split}: {counts}")
    shown = ", ".join(bench.classes[:12]) + (", ..." if bench.num_classes > 12 else "")
    click.echo(f"  classes: {shown}")
    for key in ("root", "photo_dir", "sketch_dir", "cache", "revision"):
        if key in bench.info:
            click.echo(f"  {key}: {bench.info[key]}")
    for note in bench.info.get("warnings", []):
        click.echo(f"  warning: {note}")
