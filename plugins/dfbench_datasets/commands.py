"""The ``dfbench data`` command group: ``fetch`` a dataset, ``check`` that one loads.

This module is imported when the CLI starts: it must not import torch, torchvision or numpy at
module level (the commands import what they need when they run).
"""

from __future__ import annotations

from pathlib import Path

import click



@click.group("data")
def data():
    """Get datasets and check that they load."""


def existing_folder_option(flag: str, help: str):
    """An optional option naming a folder that must exist."""
    return click.option(flag, type=click.Path(exists=True, file_okay=False, path_type=Path), default=None, help=help)


@data.command("fetch")
@click.argument("name")
@click.option(
    "--dest",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder to build (default: $DFBENCH_DATA/NAME, else ~/.cache/dfbench/data/NAME).",
)
@existing_folder_option(
    "--source-bitmaps",
    "Read QuickDraw numpy_bitmap files (<category>.npy) from this folder instead of downloading.",
)
@existing_folder_option(
    "--cifar-root",
    "An existing torchvision CIFAR-10 folder (holding cifar-10-batches-py) instead of downloading it.",
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
@existing_folder_option(
    "--archives",
    "sketchy/tuberlin/quickdraw: a folder holding archives you downloaded by hand (used before downloading).",
)
@click.option(
    "--mirror",
    default=None,
    metavar="URL",
    help="sketchy/tuberlin/quickdraw: download every archive from URL/<file name> instead of the publishers'.",
)
@click.option("--quiet", "-q", is_flag=True, help="No progress bars or messages.")
@click.pass_context
def fetch(
    ctx, name, dest, source_bitmaps, cifar_root, photos, train_sketches, test_sketches, train_photos, test_photos,
    force, archives, mirror, quiet,
):
    """Download NAME's sources and build its folder tree (qd-cifar10, sketchy, tuberlin, quickdraw).

    qd-cifar10: QuickDraw sketches (Google's numpy_bitmap release, first drawings of each category)
    and CIFAR-10 test-split photos, written as {train,test}/{photo,sketch}/<class>/ files.

    sketchy, tuberlin, quickdraw: the publishers' archives, downloaded (resumably) and extracted as
    published; archives behind a click-through are read from --archives DIR (the error says which).
    """
    from dfbench_datasets.fetch import check_fetchable, fetch_qd_cifar10

    check_fetchable(name)

    def say(msg):
        if not quiet:
            click.echo(msg, err=True)

    if name != "qd-cifar10":
        _refuse_options_of_other_datasets(ctx, name, QD_ONLY)
        from dfbench_datasets.releases import fetch_release

        result = fetch_release(name, dest, archives_dir=archives, mirror=mirror, force=force, quiet=quiet, log=say)
        if result.created:
            click.echo(f"Fetched {name} into {result.dest} ({sum(result.counts.values())} files extracted, "
                       f"{result.seconds:.1f}s). Check it with: dfbench data check {name} --data-root {result.dest}")
        else:
            click.echo(f"{name} is already in {result.dest}; pass --force to fetch it again.")
        return
    _refuse_options_of_other_datasets(ctx, name, ("archives", "mirror"))

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


QD_ONLY = ("source_bitmaps", "cifar_root", "photos", "train_sketches", "test_sketches", "train_photos", "test_photos")


def _refuse_options_of_other_datasets(ctx, name: str, options: tuple) -> None:
    """An option given for another dataset is a mistake worth saying, not something to ignore."""
    given = [o for o in options if ctx.get_parameter_source(o) is not click.core.ParameterSource.DEFAULT]
    if given:
        flags = ", ".join("--" + o.replace("_", "-") for o in given)
        raise click.UsageError(f"{flags} do(es) not apply to '{name}'. See 'dfbench data fetch --help'.")


@data.command("check")
@click.argument("name")
@click.option("--data-root", type=click.Path(path_type=Path), default=None, help="The dataset's root folder.")
@click.option("--image-size", type=click.IntRange(min=1), default=32, show_default=True)
@click.option("--skip-bad-images", is_flag=True, help="Skip unreadable image files with a warning.")
def check(name, data_root, image_size, skip_bad_images):
    """Load dataset NAME and print its classes, counts and load time."""
    import time

    from dfbench.api.datasets import SPLITS, DatasetOptions
    from dfbench.api.modalities import declared_pair
    from dfbench.api.plugins import registry

    import torch  # noqa: F401  (imported before the clock starts: the load time is the dataset's own)

    cls = registry("datasets").load(name)
    options = DatasetOptions(data_root=data_root, image_size=image_size, skip_bad_images=skip_bad_images)
    start = time.perf_counter()
    bench = (cls() if isinstance(cls, type) else cls).load(options)
    seconds = time.perf_counter() - start
    pair = declared_pair(cls, name)
    size = bench.image_size
    click.echo(f"{bench.name}: {bench.num_classes} classes, images {size}x{size}, loaded in {seconds:.2f}s")
    for split in SPLITS:
        counts = ", ".join(f"{len(bench.get(split, m))} {pair[m].plural}" for m in pair)
        click.echo(f"  {split}: {counts}")
    shown = ", ".join(bench.classes[:12]) + (", ..." if bench.num_classes > 12 else "")
    click.echo(f"  classes: {shown}")
    for key in ("root", "photo_dir", "sketch_dir", "cache", "revision"):
        if key in bench.info:
            click.echo(f"  {key}: {bench.info[key]}")
    for note in bench.info.get("warnings", []):
        click.echo(f"  warning: {note}")
