"""What synthesis paints on: the training half's defect-free images, its defect images (labelled,
or with their defects erased first), or a folder of the user's."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from defectgen.data.dataset import IMAGE_SUFFIXES
from defectgen.data.imageio import image_size, read_image
from defectgen.data.lineage import copies_in
from defectgen.errors import ConfigError, DataError
from defectgen.geometry import hole_of
from defectgen.synthset.reader import read_params
from defectgen.ui import say

MIN_FREE = 8  # defect-free training images below which `auto` paints on the defect images instead


AUTO_FALLBACK = "labelled"  # as good as cleaned, one generator pass cheaper (RESULTS.md, round four)


ERASE_MARGIN = 2  # px beyond the hole dilation that erasing covers (soft defect edges)


CLEANED_CACHE = 256  # erased backgrounds kept in memory


@dataclass(frozen=True)
class Background:
    key: str  # item id or file name: recorded in the manifest
    load: object  # () -> uint8 [H, W, C]
    load_masks: object = None  # () -> bool [K, H, W], the defects it holds (labelled / cleaned)
    load_erased: object = None  # () -> bool [H, W] the generator repainted to erase them (cleaned)


BACKGROUND_TEXT = {
    "free": "training half, defect-free",
    "labelled": "training half, defect images (new defects away from the old; label: both)",
    "cleaned": "training half, defect images with their defects erased",
}


def load_backgrounds(
    dataset, train_indices, folder, channels, source: str, test_ids: set[str] = frozenset()
) -> tuple[list[Background], str]:
    """The images to paint on and the background source they come from (see module docstring).
    A `folder` holding copies of the test half's images (`test_ids`) is refused."""
    if folder is not None:
        if source not in ("auto", "free"):
            raise ConfigError(
                f"--backgrounds DIR holds defect-free images; --background-source {source} paints on the "
                "training half's defect images instead: give one or the other"
            )
        folder = Path(folder)
        if not folder.is_dir():
            raise DataError(f"{folder}: --backgrounds folder not found")
        files = [p for p in sorted(folder.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES]
        if not files:
            raise DataError(f"{folder}: no images for --backgrounds")
        check_outside_backgrounds(files, dataset, test_ids)
        return [Background(p.name, lambda p=p: read_image(p, channels)) for p in files], "free"
    free = [i for i in train_indices if not dataset.items[i].class_ids]
    labelled = [i for i in train_indices if dataset.items[i].class_ids]
    if source == "auto":
        source = "free" if len(free) >= MIN_FREE else AUTO_FALLBACK
        if source != "free" and not labelled:
            source = "free"  # nothing else to paint on: say so below if there is nothing at all
    if source == "free":
        if not free:
            raise DataError(
                f"the training half of {dataset.spec} has no defect-free images to paint on; use "
                "--background-source cleaned or labelled (its defect images), or --backgrounds DIR"
            )
        return [Background(dataset.items[i].item_id, lambda i=i: dataset.load_image(i)) for i in free], source
    if not labelled:
        raise DataError(
            f"the training half of {dataset.spec} has no defect images for --background-source {source}"
        )
    return [
        Background(
            dataset.items[i].item_id, lambda i=i: dataset.load_image(i), lambda i=i: dataset.load_masks(i)
        )
        for i in labelled
    ], source


def check_outside_backgrounds(files: list[Path], dataset, test_ids: set[str]) -> None:
    """Refuse `--backgrounds` files that are copies of the dataset's test-half images (the test
    images would reach training); warn about copies of its defect images (their defects would
    be painted over as if the image were defect-free, and are not labelled)."""
    found = copies_in(files, dataset)
    test = [(path, i.item_id) for path, items in found.items() for i in items if i.item_id in test_ids]
    if test:
        (path, item_id), count = test[0], len({path for path, _ in test})
        raise DataError(
            f"--backgrounds: {count} image(s) are copies of this split's test half (first: {path.name} = "
            f"{item_id}), so the test images would reach training: give a folder without them"
        )
    defects = [path for path, items in found.items() if any(i.class_ids for i in items)]
    if defects:
        say(
            ("warning:", "yellow"),
            f" --backgrounds: {len(defects)} image(s) are the dataset's own defect images (first: "
            f"{defects[0].name}); their defects are not labelled in the synthetic set. Give defect-free "
            "images, or use --background-source labelled",
        )


def recorded_source(out_dir: Path) -> str | None:
    """The background source an earlier run into `out_dir` recorded, if any (an `auto` resume
    keeps it even when today's rule would choose otherwise)."""
    text = read_params(out_dir).get("backgrounds")
    return next((source for source, known in BACKGROUND_TEXT.items() if known == text), None)


def erased(backgrounds: list[Background], seed: int, paint, radius: int) -> list[Background]:
    """The same backgrounds with their defects erased by the generator (`paint`, on items with
    an explicit hole and empty labels), each erased once per (seed, background) and cached."""
    cache: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def erased(background: Background) -> tuple[np.ndarray, np.ndarray]:
        if background.key not in cache:
            image, masks = background.load(), background.load_masks()
            hole = hole_of(masks, radius)
            words = np.random.SeedSequence([seed, 11, *background.key.encode()]).generate_state(1, np.uint64)
            item = {
                "image": image,
                "masks": np.zeros_like(masks),
                "hole": hole,
                "noise_seed": int(words[0] >> 1),
            }
            ((cleaned, region),) = paint([item])
            if len(cache) >= CLEANED_CACHE:
                cache.pop(next(iter(cache)))
            cache[background.key] = (cleaned, region)
        return cache[background.key]

    return [Background(b.key, lambda b=b: erased(b)[0], None, lambda b=b: erased(b)[1]) for b in backgrounds]


def check_one_size(dataset, train_indices, folder) -> None:
    """`--format severstal` writes RLE for one image size: refuse backgrounds of several sizes,
    naming two (sizes from the image headers; the training half's images, or the folder's)."""
    if folder is None:
        if dataset.image_shape is not None:
            return
        sizes = {dataset.check_image(i) for i in train_indices}
    else:
        files = [p for p in sorted(Path(folder).iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES]
        sizes = {image_size(p)[::-1] for p in files}
    if len(sizes) <= 1:
        return
    (h1, w1), (h2, w2) = sorted(sizes)[:2]
    raise ConfigError(
        f"--format severstal writes RLE for one image size; these backgrounds come in {len(sizes)} sizes "
        f"(e.g. {w1}x{h1} and {w2}x{h2}): use --format folder"
    )
