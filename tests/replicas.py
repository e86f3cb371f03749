"""Miniature replicas of the real SBIR releases, laid out exactly as their archives extract.

dfbench's everyday machines have no copy of Sketchy, TU-Berlin or QuickDraw-Extended, and the
loaders (``plugins/dfbench_datasets/extended.py``) and fetchers (``fetch.py``) must still be
tested against the real layouts: folder names, class-folder spellings, file-name patterns, image
modes and sizes. This module builds such replicas from the documented facts below, each with its
source; what no source documents is said so, and the replica then picks a value that exercises
the loader (a non-square size, a second image mode). The images are drawn shapes, not the data.

    python tests/replicas.py DIR            # build all three (trees and archives) under DIR

Sources:

* [S1] P. Sangkloy, N. Burnell, C. Ham, J. Hays, "The Sketchy Database", SIGGRAPH 2016, and its
  page https://sketchy.eye.gatech.edu/: 125 categories, 12,500 photos, 75,471 sketches; the
  release ``rendered_256x256.7z`` holds photos and sketches rendered at 256x256.
* [S2] The download script of the SEM-PCYC code (Dutta & Akata, CVPR 2019,
  github.com/AnjanDutta/sem-pcyc, ``download_datasets.sh``) and its copy in the Doodle-to-Search
  code (github.com/sounakdey/doodle2search, ``download_datasets.sh``): the Sketchy archive
  extracts to ``256x256/`` (beside a ``README.txt``) holding ``photo/tx_000000000000``,
  ``photo/tx_000100000000`` and the sketch folders ``tx_000000000000``, ``tx_000100000000``,
  ``tx_000000000010``, ``tx_000000000110``, ``tx_000000001010``, ``tx_000000001110``; class
  folders include ``hot-air_balloon`` and ``jack-o-lantern`` (which the script renames); the
  extended photos come as ``extended_photo.zip`` extracting to ``EXTEND_image_sketchy/<class>/``;
  TU-Berlin's ``sketches_png.zip`` (from cybertron.cg.tu-berlin.de) extracts to ``png/<class>/``
  with class names holding spaces, parentheses and dashes (``alarm clock``, ``bear (animal)``,
  ``wrist-watch``); the TU-Berlin photos come as ``images.zip`` extracting to ``ImageResized/``
  whose class folders drop spaces and parentheses (``alarmclock``, ``bearanimal``), shorten two
  (``mouse`` for ``mouse (animal)``, ``pipe`` for ``pipe (for smoking)``), misspell seven
  (``spacesshuttle``, ``wristwatching``, ``tromobone``, ``chandeler``, ``griaffe``, ``diamod``,
  ``spidar``) and hold ``*.JPEG`` files.
* [S3] The Doodle-to-Search loaders (github.com/sounakdey/doodle2search, ``src/data/``): Sketchy
  sketches are named after their photo, ``<photo stem>-<k>.png`` (the loader recovers the photo as
  ``name.split('-')[0] + '.jpg'``); QuickDraw-Extended is read from ``QuickDraw_sketches_final/``
  and ``QuickDraw_images_final/`` (``<class>/<files>``); its class list
  (``quick_draw_class_labels.txt``) mixes spellings (``alarm_clock``, ``cruise ship``,
  ``palm tree``, ``hot-air_balloon``); its zero-shot test classes are
  ``zeroshot_classes_quickdraw.txt`` (25 classes).
* [S4] Public example files of a ZS-SBIR code base (github.com/ashok-arjun/Zero-Shot-Sketch-Based-
  Image-Retrieval, ``docs/examples/``): Sketchy photos ``n03512147_44302.jpg`` (ImageNet synset
  ``n03512147``, helicopter), sketches ``n03512147_1442-5.png``, ``n02958343_10092-1.png``
  (``n02958343``, car) and extended photos ``ext_18.jpg``.
* [S5] M. Eitz, J. Hays, M. Alexa, "How Do Humans Sketch Objects?", SIGGRAPH 2012, and its page
  http://cybertron.cg.tu-berlin.de/eitz/projects/classifysketch/: 250 categories x 80 sketches,
  PNG at 1111x1111, numbered consecutively over the whole set (``airplane/1.png`` ... ``80.png``,
  then ``alarm clock/81.png`` ...), with a ``filelist.txt`` beside the class folders.
* [S6] S. Dey, P. Riba, A. Dutta, J. Llados, Y.-Z. Song, "Doodle to Search", CVPR 2019, and
  http://datasets.cvc.uab.es/QuickDraw/: QuickDraw-Extended, 110 classes, 330,000 sketches,
  204,000 photos, as ``QuickDraw_sketches_final.zip`` and ``QuickDraw_images_final.zip``.
* [S7] S. K. Yelamarthi, S. K. Reddy, A. Mishra, A. Mittal, "A Zero-Shot Framework for Sketch
  Based Image Retrieval", ECCV 2018: Sketchy's 21 test classes that are not ImageNet-1k classes
  (the list in ``dfbench_datasets.extended.ZERO_SHOT_TEST_CLASSES``).

Not documented by any source above, so chosen here: the image modes of the Sketchy and
QuickDraw-Extended sketches (written as RGB and L PNGs: the loader converts every mode), the
sizes of the extended photos (ImageNet and web photos of varied sizes: written non-square so the
loader's resize-and-crop path runs), the file names inside ``QuickDraw_*_final`` and
``ImageResized`` (numbered here), and the synset ids of the classes other than car and helicopter
[S4] (taken from ImageNet's synsets of the same names).
"""

from __future__ import annotations

import sys
import zipfile
from pathlib import Path

#: Sketchy classes in the replica: folder name -> ImageNet synset prefix of its photo names [S1, S2, S4]
SKETCHY_CLASSES = {
    "airplane": "n02691156",
    "car_(sedan)": "n02958343",
    "helicopter": "n03512147",
    "hot-air_balloon": "n02782093",
    "jack-o-lantern": "n03590841",
    "bat": "n02139199",
}
SKETCHY_PHOTO_TX = ("tx_000000000000", "tx_000100000000")  # [S2]
SKETCHY_SKETCH_TX = (
    "tx_000000000000", "tx_000100000000", "tx_000000000010", "tx_000000000110", "tx_000000001010",
    "tx_000000001110",
)  # [S2]
SKETCHY_SIZE = 256  # [S1]

#: TU-Berlin classes in the replica: the png/ folder name -> the ImageResized/ folder name [S2]
TUBERLIN_CLASSES = {
    "airplane": "airplane",
    "alarm clock": "alarmclock",
    "bear (animal)": "bearanimal",
    "mouse (animal)": "mouse",
    "computer-mouse": "computermouse",
    "space shuttle": "spacesshuttle",
    "wrist-watch": "wristwatching",
    "giraffe": "griaffe",
}
TUBERLIN_SIZE = 1111  # [S5]

#: QuickDraw-Extended classes in the replica, spelt as in its class list [S3]
QUICKDRAW_CLASSES = ("alarm_clock", "cruise ship", "palm tree", "hot-air_balloon", "bat", "cow")

EXTENDED_PHOTO_SIZE = (300, 225)  # not documented: any non-square size


def _shape_image(mode: str, size, seed: int, sketch: bool):
    """A drawn ellipse or box, different per seed: black strokes on white for sketches."""
    from PIL import Image, ImageDraw

    w, h = size if isinstance(size, tuple) else (size, size)
    background = {"L": 255, "RGB": (255, 255, 255)}[mode] if sketch else {
        "L": 90 + seed % 100, "RGB": (40 + seed * 37 % 200, 80, 160 - seed * 13 % 120)
    }[mode]
    im = Image.new(mode, (w, h), background)
    draw = ImageDraw.Draw(im)
    ink = 0 if mode == "L" else (0, 0, 0)
    if not sketch:
        ink = 230 if mode == "L" else (230, 200 - seed * 29 % 150, 40)
    box = (w // 8 + seed % 7, h // 8 + seed % 5, w - w // 6 - seed % 11, h - h // 5)
    width = max(1, w // 100)
    (draw.ellipse if seed % 2 else draw.rectangle)(box, outline=ink if sketch else None,
                                                   fill=None if sketch else ink, width=width)
    return im


def _save(im, path: Path, fmt: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path, fmt)
    return path


# -- Sketchy -------------------------------------------------------------------------------------


def build_sketchy(root: Path, photos_per_class: int = 3, sketches_per_photo: int = 2, extended_per_class: int = 3,
                  extended: bool = True) -> Path:
    """``root/256x256/{photo,sketch}/tx_*/<class>/`` as ``rendered_256x256.7z`` extracts [S1, S2],
    and (``extended``) ``root/EXTEND_image_sketchy/<class>/`` as ``extended_photo.zip`` does [S2]."""
    base = Path(root) / "256x256"
    base.mkdir(parents=True, exist_ok=True)
    (Path(root) / "README.txt").write_text("Sketchy database replica (dfbench tests)\n")
    seed = 0
    for cls, synset in SKETCHY_CLASSES.items():
        for i in range(photos_per_class):
            stem = f"{synset}_{1000 + 37 * i}"  # ImageNet image names: <synset>_<number> [S4]
            for tx in SKETCHY_PHOTO_TX:
                _save(_shape_image("RGB", SKETCHY_SIZE, seed, False), base / "photo" / tx / cls / f"{stem}.jpg", "JPEG")
            for k in range(1, sketches_per_photo + 1):  # <photo stem>-<k>.png [S3, S4]
                for tx in SKETCHY_SKETCH_TX:
                    _save(_shape_image("RGB", SKETCHY_SIZE, seed + k, True), base / "sketch" / tx / cls / f"{stem}-{k}.png",
                          "PNG")
            seed += 1
        if extended:
            for j in range(extended_per_class):  # ext_<n>.jpg [S4], beside copies of the originals
                _save(_shape_image("RGB", EXTENDED_PHOTO_SIZE, seed + j, False),
                      Path(root) / "EXTEND_image_sketchy" / cls / f"ext_{100 + j}.jpg", "JPEG")
            for i in range(photos_per_class):
                stem = f"{synset}_{1000 + 37 * i}"
                _save(_shape_image("RGB", SKETCHY_SIZE, i, False), Path(root) / "EXTEND_image_sketchy" / cls / f"{stem}.jpg",
                      "JPEG")
    return Path(root)


# -- TU-Berlin -----------------------------------------------------------------------------------


def build_tuberlin(root: Path, sketches_per_class: int = 3, photos_per_class: int = 3, size: int = TUBERLIN_SIZE) -> Path:
    """``root/png/<class>/<n>.png`` (+ ``filelist.txt``) as ``sketches_png.zip`` extracts [S2, S5], and
    ``root/ImageResized/<squashed class>/*.JPEG`` as the photo archive ``images.zip`` does [S2]."""
    root = Path(root)
    number, listing = 1, []
    for cls, photo_folder in TUBERLIN_CLASSES.items():
        for _ in range(sketches_per_class):  # numbered over the whole set [S5]
            _save(_shape_image("L", size, number, True), root / "png" / cls / f"{number}.png", "PNG")
            listing.append(f"{cls}/{number}.png")
            number += 1
        for j in range(photos_per_class):
            _save(_shape_image("RGB", EXTENDED_PHOTO_SIZE, j, False), root / "ImageResized" / photo_folder / f"{j + 1}.JPEG",
                  "JPEG")
    (root / "png" / "filelist.txt").write_text("\n".join(listing) + "\n")
    return root


# -- QuickDraw-Extended --------------------------------------------------------------------------


def build_quickdraw(root: Path, sketches_per_class: int = 3, photos_per_class: int = 3) -> Path:
    """``root/QuickDraw_sketches_final/<class>/`` and ``root/QuickDraw_images_final/<class>/`` [S3, S6]."""
    root = Path(root)
    for c, cls in enumerate(QUICKDRAW_CLASSES):
        for i in range(sketches_per_class):
            _save(_shape_image("L", 256, c * 10 + i, True), root / "QuickDraw_sketches_final" / cls / f"{i + 1}.png", "PNG")
        for i in range(photos_per_class):
            _save(_shape_image("RGB", EXTENDED_PHOTO_SIZE, c * 10 + i, False),
                  root / "QuickDraw_images_final" / cls / f"{i + 1}.jpg", "JPEG")
    return root


# -- archives ------------------------------------------------------------------------------------


def zip_tree(folder: Path, archive: Path) -> Path:
    """Zip ``folder`` with its own name as the archive's top folder, as the releases do [S2, S6]."""
    folder, archive = Path(folder), Path(archive)
    archive.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(folder.rglob("*")):
            zf.write(path, path.relative_to(folder.parent).as_posix())
    return archive


#: archive file name -> the top folder it extracts to, per dataset (as in fetch.SOURCES)
ARCHIVES = {
    "tuberlin": {"sketches_png.zip": "png", "images.zip": "ImageResized"},
    "quickdraw": {"QuickDraw_sketches_final.zip": "QuickDraw_sketches_final",
                  "QuickDraw_images_final.zip": "QuickDraw_images_final"},
    "sketchy": {"extended_photo.zip": "EXTEND_image_sketchy"},
}
BUILDERS = {"sketchy": build_sketchy, "tuberlin": build_tuberlin, "quickdraw": build_quickdraw}


def build_archives(name: str, tree: Path, out: Path) -> dict:
    """Zip the replica ``tree`` of dataset ``name`` into the release's archives under ``out``."""
    return {file: zip_tree(Path(tree) / top, Path(out) / file) for file, top in ARCHIVES[name].items()}


def main(argv=None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python tests/replicas.py DIR", file=sys.stderr)
        return 2
    out = Path(args[0])
    for name, build in BUILDERS.items():
        tree = build(out / "trees" / name)
        archives = build_archives(name, tree, out / "archives" / name)
        print(f"{name}: {tree} ({', '.join(sorted(archives))})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
