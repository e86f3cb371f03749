"""Registers the built-in datasets (lazily: nothing here imports torch)."""

from dfbench import hookimpl


@hookimpl
def dfbench_register_datasets(register):
    register(
        "shapes",
        "dfbench_datasets.shapes:ShapesDataset",
        default=True,
        description="Embedded default: procedurally generated photos (filled, textured objects on "
        "clutter) and hand-drawn-looking sketches of 12 shape classes; no download.",
    )
    register(
        "folder",
        "dfbench_datasets.folder:FolderDataset",
        description="Your own data: --data-root holding {train,test}/{photo,sketch}/<class>/<images>.",
    )
    register(
        "qd-cifar10",
        "dfbench_datasets.qd_cifar10:QDCifar10Dataset",
        description="QuickDraw sketches x CIFAR-10 photos, 9 classes paired by category "
        "(root: --data-root, $DFBENCH_DATA/qd-cifar10 or the cache; 'dfbench data fetch qd-cifar10').",
    )
    register(
        "digits",
        "dfbench_datasets.digits:DigitsDataset",
        description="Spoken digits (FSDD recordings as log-mel spectrograms) as queries against written digits "
        "(MNIST's test set) as the gallery, 10 classes (root: --data-root or $DFBENCH_DATA holding fsdd/ and mnist-test/).",
    )
    register(
        "quickdraw",
        "dfbench_datasets.extended:QuickDrawExtended",
        description="QuickDraw-Extended (Dey et al. 2019): 110 classes, 330k sketches, 204k photos.",
    )
    register(
        "sketchy",
        "dfbench_datasets.extended:SketchyExtended",
        description="Sketchy (Sangkloy et al. 2016) + extended photos (Liu et al. 2017): 125 classes.",
    )
    register(
        "tuberlin",
        "dfbench_datasets.extended:TUBerlinExtended",
        description="TU-Berlin (Eitz et al. 2012) + extended photos (Zhang et al. 2016): 250 classes.",
    )


@hookimpl
def dfbench_register_commands(register):
    from dfbench_datasets.commands import data

    register(data)
