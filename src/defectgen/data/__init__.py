"""Dataset readers. `open_dataset(spec)` is the one entry point commands use.

Dataset specs:
- `severstal:CSV` (labels only) or `severstal:CSV,IMAGES_DIR`;
- `folder:PATH`: `PATH/images` + `PATH/masks`, or the per-class `PATH/CLASS/Imgs` layout;
- `coco:JSON[,IMAGES_DIR]`: COCO segmentation annotations (polygons or RLE);
- `mvtec:PATH`: one MVTec AD category (`PATH/train/good`, `PATH/test/TYPE`,
  `PATH/ground_truth/TYPE`);
- a bare path: a `.csv` file is Severstal, a `.json` file is COCO, a folder with `train.csv` +
  `train_images/` is Severstal, an MVTec AD category folder is MVTec, any other folder is a
  folder dataset.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from defectgen.data.classes import ClassTable
from defectgen.data.coco import CocoDataset, looks_like_coco
from defectgen.data.dataset import DefectDataset, Item, Sample, Skipped
from defectgen.data.folder import ClassFolderDataset, FolderDataset
from defectgen.data.mvtec import MVTecDataset, is_mvtec_category, mvtec_categories
from defectgen.data.severstal import SeverstalDataset
from defectgen.errors import DataError
from defectgen.fileio import read_text

__all__ = [
    "ClassTable",
    "DefectDataset",
    "Item",
    "Sample",
    "Skipped",
    "open_dataset",
    "SeverstalDataset",
    "FolderDataset",
    "ClassFolderDataset",
    "MVTecDataset",
    "CocoDataset",
]


def open_dataset(
    spec: str,
    *,
    skip_bad: bool = False,
    labels_complete: bool = True,
    covered_ids: Iterable[str] | Path | None = None,
    channels: int | None = None,
    image_shape: tuple[int, int] | None = None,
) -> DefectDataset:
    """Index the dataset named by `spec` (see module docstring); nothing is decoded yet.

    `labels_complete`, `covered_ids` and `image_shape` (H, W) are for Severstal CSVs only: see
    `SeverstalDataset`. `covered_ids` may be a path to a text file with one ImageId per line.
    """
    spec = str(spec)
    if isinstance(covered_ids, str | Path):
        path = Path(covered_ids)
        if not path.is_file():
            raise DataError(f"{path}: covered-ids file not found")
        lines = read_text(path, "covered-ids file").splitlines()
        covered_ids = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    dataset = _open(spec, skip_bad, labels_complete, covered_ids, channels, image_shape)
    if image_shape is not None and dataset.kind != "severstal":
        raise DataError(
            f"{spec}: an image size is for Severstal-style CSVs; {dataset.kind} datasets take "
            "each image's size from its file"
        )
    if not dataset.items:
        raise DataError(
            f"{spec}: the dataset is empty (no usable images found"
            + (f"; {len(dataset.skipped)} bad items skipped" if dataset.skipped else "")
            + (f"; {'; '.join(dataset.notes)}" if dataset.notes else "")
            + ")"
        )
    return dataset


def _open(spec, skip_bad, labels_complete, covered_ids, channels, image_shape) -> DefectDataset:
    def severstal(csv_path: Path, images_dir: Path | None) -> DefectDataset:
        return SeverstalDataset(
            csv_path,
            images_dir,
            labels_complete=labels_complete,
            covered_ids=covered_ids,
            skip_bad=skip_bad,
            image_shape=image_shape,
        )

    def coco(json_path: Path, images_dir: Path | None) -> DefectDataset:
        return CocoDataset(json_path, images_dir, skip_bad=skip_bad, channels=channels)

    # A bare path is opened as it is: a comma in a folder name must not split it.
    path = Path(spec)
    if path.exists():
        if looks_like_coco(path):
            return coco(path, None)
        if path.suffix.lower() == ".csv" and path.is_file():
            return severstal(path, None)
        if path.is_dir():
            if (path / "train.csv").is_file() and (path / "train_images").is_dir():
                return severstal(path / "train.csv", path / "train_images")
            return _open_folder(path, skip_bad, channels)
    kind, _, rest = spec.partition(":")
    if kind == "severstal" and rest:
        csv_path, _, images_dir = rest.partition(",")
        return severstal(Path(csv_path), Path(images_dir) if images_dir else None)
    if kind == "coco" and rest:
        json_path, _, images_dir = rest.partition(",")
        return coco(Path(json_path), Path(images_dir) if images_dir else None)
    if kind == "folder" and rest:
        return _open_folder(Path(rest), skip_bad, channels)
    if kind == "mvtec" and rest:
        return MVTecDataset(Path(rest), skip_bad=skip_bad, channels=channels)
    raise DataError(
        f"{spec}: not a dataset; use severstal:CSV[,IMAGES_DIR], coco:JSON[,IMAGES_DIR], folder:PATH, "
        "mvtec:PATH, or an existing folder (images/ + masks/, CLASS/Imgs/, or an MVTec AD category)"
    )


def _open_folder(root: Path, skip_bad: bool, channels: int | None) -> DefectDataset:
    if not root.is_dir():
        raise DataError(f"{root}: folder not found")
    if (root / "images").is_dir():
        dataset: DefectDataset = FolderDataset(root, skip_bad=skip_bad, channels=channels)
    elif is_mvtec_category(root):
        dataset = MVTecDataset(root, skip_bad=skip_bad, channels=channels)
    elif categories := mvtec_categories(root):
        raise DataError(
            f"{root} holds {len(categories)} MVTec AD categories ({', '.join(categories[:5])}"
            f"{', ...' if len(categories) > 5 else ''}); name one, e.g. {root / categories[0]}"
        )
    else:
        dataset = ClassFolderDataset(root, skip_bad=skip_bad, channels=channels)
    return dataset
