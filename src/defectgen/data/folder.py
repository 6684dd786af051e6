"""Folder datasets: two layouts.

`images/ + masks/` (FolderDataset): `images/STEM.{png,jpg,...}` with an index mask
`masks/STEM.png` (0 = background, k = class k). Class names come from `classes.txt` in the
dataset folder (line k = class k; see `ClassTable.from_classes_txt`) when present. Without
it, masks whose values stay small (<= 20) are index masks with classes named "1".."K"; masks
with larger values are binary (one class, "defect") and thresholded at 128 like soft-edged
masks. A defect-free image needs an all-zero mask: a missing mask is an error, not a guess.
How each mask file mode (colour, alpha, 16-bit, ...) reads is `imageio.read_mask`'s rule.

`CLASS/Imgs/*.jpg` + same-stem `*.png` (ClassFolderDataset): one defect class per folder,
the magnetic tile layout. Folders named like "free", "ok", "good", "normal" (after a shared
prefix such as "MT_") hold defect-free images. Masks are thresholded at 128 (magnetic tile
masks have soft edges).
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

import numpy as np

from defectgen import ui
from defectgen.data.classes import ClassTable
from defectgen.data.dataset import IMAGE_SUFFIXES, DefectDataset, Item, Skipped, inside, present
from defectgen.data.imageio import GRAY_MODES, image_size, read_mask, stored_mode
from defectgen.errors import DataError

MASK_THRESHOLD = 128
MAX_INDEX_CLASSES = 20
FREE_FOLDER = re.compile(r"^(free|ok|good|normal|clean|defect[-_ ]?free|no[-_ ]?defects?)$", re.I)


class FolderDataset(DefectDataset):
    def __init__(self, root: Path, *, skip_bad: bool = False, channels: int | None = None):
        root = Path(root)
        images_dir, masks_dir = root / "images", root / "masks"
        for folder in (images_dir, masks_dir):
            if not folder.is_dir():
                raise DataError(f"{folder}: not found; a folder dataset needs images/ and masks/")
        skipped: list[Skipped] = []
        pairs: list[tuple[str, Path, Path]] = []
        for image_path in image_files(images_dir):
            stem = image_path.stem
            mask_path = find_file(masks_dir, f"{stem}.png")
            try:
                inside(root, image_path, "image")
                if not present(mask_path, "mask"):
                    raise DataError(
                        f"{image_path}: no mask {mask_path}; save an all-zero mask for a defect-free image"
                    )
                inside(root, mask_path, "mask")
            except DataError as err:
                if not skip_bad:
                    raise
                skipped.append(Skipped(stem, str(err)))
                continue
            pairs.append((stem, image_path, mask_path))

        names_file = root / "classes.txt"
        names = list(ClassTable.from_classes_txt(names_file).names) if names_file.is_file() else None
        # Class presence per image needs the mask pixels: folder datasets are read once here.
        values: dict[str, np.ndarray] = {}
        for stem, image_path, mask_path in ui.track(pairs, description="indexing masks", transient=True):
            try:
                mask = read_mask(mask_path)
                width, height = image_size(image_path)
                if mask.shape != (height, width):
                    raise DataError(
                        f"{mask_path}: mask is {mask.shape[1]}x{mask.shape[0]} but its image is "
                        f"{width}x{height}; masks must have their image's size"
                    )
            except DataError as err:
                if not skip_bad:
                    raise
                skipped.append(Skipped(stem, str(err)))
                continue
            values[stem] = np.unique(mask)
        top = max((int(v.max()) for v in values.values()), default=0)
        if names is not None:
            binary = len(names) == 1 and top > 1
            if not binary and top > len(names):
                bad = next(s for s, v in values.items() if int(v.max()) > len(names))
                raise DataError(
                    f"{masks_dir / (bad + '.png')}: value {int(values[bad].max())} but classes.txt "
                    f"names {len(names)} classes; fix the mask or add the class name"
                )
        elif top <= MAX_INDEX_CLASSES:
            binary = False
            names = [str(k) for k in range(1, max(top, 1) + 1)]
        else:
            binary, names = True, ["defect"]
        self.binary = binary
        items = []
        for stem, image_path, mask_path in pairs:
            if stem not in values:
                continue
            mask_values = values[stem]
            if binary:
                class_ids = (1,) if binary_defect(mask_values).any() else ()
            else:
                class_ids = tuple(int(v) for v in mask_values if v > 0)
            items.append(Item(stem, image_path, class_ids, mask_path))
        notes = ["binary masks thresholded at 128: one class 'defect'"] if binary else []
        channels, notes = channels_and_notes([p for _, p, _ in pairs], channels, notes)
        super().__init__(
            kind="folder",
            spec=f"folder:{root}",
            root=root,
            classes=ClassTable(tuple(names)),
            channels=channels,
            items=items,
            skipped=skipped,
            notes=notes,
        )

    def load_masks(self, index: int) -> np.ndarray:
        item = self.items[index]
        mask = read_mask(item.mask_path)
        if self.binary:
            return binary_defect(mask)[None]
        return np.stack([mask == k for k in self.classes.ids])


class ClassFolderDataset(DefectDataset):
    def __init__(
        self,
        root: Path,
        *,
        skip_bad: bool = False,
        channels: int | None = None,
        free_folders: tuple[str, ...] | None = None,
    ):
        root = Path(root)
        folders = sorted(p for p in root.iterdir() if (p / "Imgs").is_dir())
        if not folders:
            raise DataError(f"{root}: no CLASS/Imgs/ folders; expected e.g. {root}/Scratch/Imgs/*.jpg")
        refuse_linked_folders(folders)
        prefix = _shared_prefix([f.name for f in folders])
        names = [f.name[len(prefix) :] for f in folders]
        if free_folders is None:
            is_free = [bool(FREE_FOLDER.match(n)) for n in names]
        else:
            is_free = [
                f.name in free_folders or n in free_folders for f, n in zip(folders, names, strict=True)
            ]
        defect_names = [n for n, free in zip(names, is_free, strict=True) if not free]
        try:
            classes = ClassTable(tuple(defect_names))
        except DataError as err:
            raise DataError(f"{root}: {err} (class names come from its folder names)") from None
        items: list[Item] = []
        skipped: list[Skipped] = []
        for folder, name, free in zip(folders, names, is_free, strict=True):
            class_ids = () if free else (classes.names.index(name) + 1,)
            for image_path in image_files(folder / "Imgs", exclude_suffix=".png"):
                item_id = f"{folder.name}/{image_path.stem}"
                mask_path = find_file(image_path.parent, f"{image_path.stem}.png")
                try:
                    inside(root, image_path, "image")
                    if present(mask_path, "mask"):
                        inside(root, mask_path, "mask")
                    elif not free:
                        raise DataError(f"{image_path}: no mask {mask_path.name} beside it")
                except DataError as err:
                    if not skip_bad:
                        raise
                    skipped.append(Skipped(item_id, str(err)))
                    continue
                items.append(
                    Item(item_id, image_path, class_ids, mask_path if present(mask_path, "mask") else None)
                )
        free_names = [f.name for f, free in zip(folders, is_free, strict=True) if free]
        notes = [f"defect-free folders: {', '.join(free_names) or 'none'}"]
        channels, notes = channels_and_notes([i.image_path for i in items], channels, notes)
        super().__init__(
            kind="class-folders",
            spec=f"folder:{root}",
            root=root,
            classes=classes,
            channels=channels,
            items=items,
            skipped=skipped,
            notes=notes,
        )

    def load_masks(self, index: int) -> np.ndarray:
        return one_class_masks(self, index)


def binary_defect(mask: np.ndarray) -> np.ndarray:
    """bool: the defect pixels of a binary mask: >= 128 (0/255 masks, soft edges), or 1 in a mask
    whose values are all 0/1 (masks saved as 0/1 would otherwise read as empty)."""
    return mask >= (1 if int(mask.max(initial=0)) == 1 else MASK_THRESHOLD)


def find_file(folder: Path, name: str) -> Path:
    """`folder / name`, or the file of `folder` whose name differs from it only in case
    (`000_mask.PNG` for `000_mask.png`); `folder / name` when there is none."""
    path = folder / name
    if path.is_file() or not folder.is_dir():
        return path
    wanted = name.lower()
    for entry in _listing(folder, folder.stat().st_mtime_ns):
        if entry.name.lower() == wanted and entry.is_file():
            return entry
    return path


@functools.lru_cache(maxsize=64)
def _listing(folder: Path, modified: int) -> tuple[Path, ...]:
    """The folder's entries, listed once per change of the folder (`modified`: its mtime)."""
    return tuple(sorted(folder.iterdir()))


def refuse_linked_folders(folders: list[Path]) -> None:
    """Refuse class folders of which two are one folder on disk (a link to another): its images
    would be read twice, under two classes."""
    seen: dict[Path, Path] = {}
    for folder in folders:
        try:
            real = folder.resolve()
        except (OSError, RuntimeError):
            continue  # a link that loops: the readers say so for its files
        if real in seen:
            raise DataError(
                f"{seen[real]} and {folder} are one folder (a link to the other), so its images would be "
                "read twice, under two classes; remove the link"
            )
        seen[real] = folder


def one_class_masks(dataset: DefectDataset, index: int) -> np.ndarray:
    """bool [K, H, W] for a layout with one class per item and a binary mask file (thresholded
    at 128) beside it; all false for a defect-free item."""
    item = dataset.items[index]
    height, width = dataset.check_image(index)
    masks = np.zeros((len(dataset.classes), height, width), dtype=bool)
    if item.class_ids and item.mask_path is not None:
        mask = read_mask(item.mask_path)
        if mask.shape != (height, width):
            raise DataError(
                f"{item.mask_path}: mask is {mask.shape[1]}x{mask.shape[0]} but its image is "
                f"{width}x{height}; masks must have their image's size"
            )
        masks[item.class_ids[0] - 1] = binary_defect(mask)
    return masks


def image_files(folder: Path, exclude_suffix: str | None = None) -> list[Path]:
    return [
        p
        for p in sorted(folder.iterdir())
        if p.suffix.lower() in IMAGE_SUFFIXES
        and p.suffix.lower() != exclude_suffix
        and not p.name.startswith(".")
        and not p.is_dir()  # a folder named like an image is not one
    ]


CHANNEL_SAMPLE = 16  # images, spread over the dataset, whose content decides grey or colour


def guess_channels(paths: list[Path]) -> tuple[int, list[str]]:
    """(1 for a grey dataset, 3 for colour; notes for the summary), judged from the content of
    up to `CHANNEL_SAMPLE` images spread over `paths`: grey when every readable one is grey
    (`imageio.stored_mode`), so grey images stored as RGB are read as grey, not painted with
    colour fringes. Unreadable files are left to the readers' own checks."""
    sample = paths[:: max(1, len(paths) // CHANNEL_SAMPLE)][:CHANNEL_SAMPLE]
    seen = []
    for path in sample:
        try:
            seen.append(stored_mode(path))
        except (DataError, OSError):
            continue
    if not all(grey for _, grey in seen):
        return 3, []
    colour = sorted({mode for mode, _ in seen if mode not in GRAY_MODES})
    if colour:
        return 1, [f"grey images stored as {'/'.join(colour)} files: read as grey (1 channel)"]
    return 1, []


def channels_and_notes(paths: list[Path], channels: int | None, notes: list[str]) -> tuple[int, list[str]]:
    """`channels` when the user gave it, else the content's (`guess_channels`), with its note."""
    if channels:
        return channels, notes
    guessed, more = guess_channels(paths)
    return guessed, [*notes, *more]


def _shared_prefix(names: list[str]) -> str:
    """'MT_' for ['MT_Blowhole', 'MT_Free']; only prefixes ending at '_' or '-' count."""
    if len(names) < 2:
        return ""
    common = names[0]
    for name in names[1:]:
        while not name.startswith(common):
            common = common[:-1]
    cut = max(common.rfind("_"), common.rfind("-"))
    return common[: cut + 1] if cut >= 0 else ""
