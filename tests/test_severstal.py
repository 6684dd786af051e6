import csv
import os
from pathlib import Path

import numpy as np
import pytest

from conftest import write_gray
from defectgen.data import open_dataset, rle
from defectgen.data.severstal import SeverstalDataset
from defectgen.errors import DataError, RLEError

LABELLED = {
    "002fc4e19.jpg": (1, 2),
    "0046839bd.jpg": (3,),
    "008ef3d74.jpg": (1, 2),
    "00ac8372f.jpg": (1, 2),
    "03db6bbc3.jpg": (3, 4),
    "4e8e7a28c.jpg": (3,),
    "6fa9e1d65.jpg": (3, 4),
}
FREE = {"000789191.jpg", "002e73b3c.jpg", "005b92582.jpg", "017d75655.jpg", "0198ab92d.jpg"}


def test_labels_only_index(severstal_dir):
    dataset = open_dataset(f"severstal:{severstal_dir / 'train.csv'}")
    summary = dataset.summary()
    assert summary["items"] == 3260
    assert summary["images_per_class"] == {"1": 478, "2": 135, "3": 2550, "4": 526}
    with pytest.raises(DataError, match="no image folder"):
        dataset.load_image(0)


def test_real_labelled_images(severstal_dir):
    dataset = SeverstalDataset(severstal_dir / "train.csv", severstal_dir / "train_images", skip_bad=True)
    assert {i.item_id: i.class_ids for i in dataset.items if i.class_ids} == LABELLED
    assert {i.item_id for i in dataset.items if not i.class_ids} == FREE
    for index, item in enumerate(dataset.items):
        sample = dataset[index]
        assert sample.image.shape == (256, 1600, 1) and sample.image.dtype == np.uint8
        assert sample.masks.shape == (4, 256, 1600) and sample.masks.dtype == bool
        present = tuple(int(k) + 1 for k in np.flatnonzero(sample.masks.any(axis=(1, 2))))
        assert present == item.class_ids
        for class_id in item.class_ids:
            assert sample.masks[class_id - 1].sum() == rle.area(dataset.rle(item.item_id, class_id))
    assert len(dataset.skipped) == 3260 - 7


def test_missing_images_are_an_error_without_skip_bad(severstal_dir):
    with pytest.raises(DataError, match="3,253 images with rows are not in .*--skip-bad"):
        SeverstalDataset(severstal_dir / "train.csv", severstal_dir / "train_images")


def test_images_without_rows_are_not_silently_defect_free(severstal_dir):
    kwargs = dict(images_dir=severstal_dir / "train_images_no_rle", skip_bad=True)
    partial = SeverstalDataset(severstal_dir / "train.csv", labels_complete=False, **kwargs)
    assert len(partial) == 0
    assert any("11 images have no rows" in note for note in partial.notes)
    lines = (severstal_dir / "covered_image_ids.txt").read_text().splitlines()
    covered = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    by_list = SeverstalDataset(severstal_dir / "train.csv", covered_ids=covered, **kwargs)
    assert len(by_list) == 0
    # The real defect-free images are in the covered list, so they stay defect-free.
    real = SeverstalDataset(
        severstal_dir / "train.csv", severstal_dir / "train_images", covered_ids=covered, skip_bad=True
    )
    assert {i.item_id for i in real.items if not i.class_ids} == FREE
    # Saying the labels are complete is the user's call, and it is reported.
    complete = SeverstalDataset(severstal_dir / "train.csv", **kwargs)
    assert len(complete) == 11 and any("taken as defect-free" in n for n in complete.notes)


def _original_form(current_csv: Path, out: Path, image_ids: set[str]) -> Path:
    rows = {}
    with open(current_csv, newline="") as handle:
        for row in csv.DictReader(handle):
            if row["ImageId"] in image_ids:
                rows[(row["ImageId"], int(row["ClassId"]))] = row["EncodedPixels"]
    with open(out, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["ImageId_ClassId", "EncodedPixels"])
        for image_id in sorted(image_ids):
            for class_id in (1, 2, 3, 4):
                writer.writerow([f"{image_id}_{class_id}", rows.get((image_id, class_id), "")])
    return out


def test_both_csv_forms_agree(severstal_dir, tmp_path):
    ids = set(LABELLED) | FREE
    original = _original_form(severstal_dir / "train.csv", tmp_path / "train_original.csv", ids)
    old = SeverstalDataset(original, severstal_dir / "train_images", labels_complete=False)
    new = SeverstalDataset(severstal_dir / "train.csv", severstal_dir / "train_images", skip_bad=True)
    assert [(i.item_id, i.class_ids) for i in old.items] == [(i.item_id, i.class_ids) for i in new.items]
    for index in range(len(old)):
        assert np.array_equal(old.load_masks(index), new.load_masks(index))


# --- bad input: each names the file and row and says what to do -----------------------------


def _dataset_dir(
    tmp_path: Path,
    rows: list[str],
    header: str = "ImageId,ClassId,EncodedPixels",
    images: dict[str, tuple[int, int]] | None = None,
) -> Path:
    images_dir = tmp_path / "train_images"
    images_dir.mkdir()
    for name, (height, width) in ({"a.jpg": (256, 1600)} if images is None else images).items():
        write_gray(images_dir / name, np.full((height, width), 128))
    (tmp_path / "train.csv").write_text("\n".join([header, *rows]) + "\n")
    return tmp_path


@pytest.mark.parametrize(
    "row, message",
    [
        ("a.jpg,1,1 x", r"row 2.*not a non-negative integer"),
        ("a.jpg,1,1 2 3", r"row 2.*odd number"),
        ("a.jpg,1,0 3", r"row 2.*1-indexed"),
        ("a.jpg,1,5 0", r"row 2.*length 0"),
        ("a.jpg,1,9 2 3 2", r"row 2.*not sorted"),
        ("a.jpg,1,1 5 3 2", r"row 2.*overlaps"),
        ("a.jpg,1,409600 2", r"row 2.*past the image end"),
        ("a.jpg,7,1 2", r"row 2.*unknown ClassId 7"),
        ("a.jpg,x,1 2", r"row 2.*not an integer"),
        ("../a.jpg,1,1 2", r"row 2.*not a plain file name"),
        ("sub/a.jpg,1,1 2", r"row 2.*not a plain file name"),
        ("a.jpg,1", r"row 2.*expected 3 fields"),
        ("a.jpg,1,", r"row 2.*empty EncodedPixels"),
    ],
)
def test_bad_rows(tmp_path, row, message):
    root = _dataset_dir(tmp_path, [row])
    with pytest.raises(DataError, match=message) as info:
        SeverstalDataset(root / "train.csv", root / "train_images")
    assert "train.csv" in str(info.value)


def test_rle_errors_keep_their_type(tmp_path):
    root = _dataset_dir(tmp_path, ["a.jpg,1,1 2 3"])
    with pytest.raises(RLEError):
        SeverstalDataset(root / "train.csv", root / "train_images")


def test_skip_bad_reports_and_continues(tmp_path):
    images = {"a.jpg": (256, 1600), "b.jpg": (256, 1600)}
    root = _dataset_dir(tmp_path, ["a.jpg,1,1 x", "b.jpg,3,1 20"], images=images)
    dataset = SeverstalDataset(
        root / "train.csv", root / "train_images", skip_bad=True, labels_complete=False
    )
    assert [i.item_id for i in dataset.items] == ["b.jpg"]
    assert [s.item_id for s in dataset.skipped] == ["a.jpg"]


def test_skip_bad_never_turns_a_defect_image_into_a_free_one(tmp_path):
    images = {"a.jpg": (256, 1600), "b.jpg": (256, 1600)}
    root = _dataset_dir(
        tmp_path, ["a.jpg,1,1 10", "a.jpg,7,1 10", "a.jpg ,x,1 10", "b.jpg,2,1 5"], images=images
    )
    for kwargs in ({"images_dir": root / "train_images"}, {"covered_ids": ["a.jpg", "b.jpg"]}):
        dataset = SeverstalDataset(root / "train.csv", skip_bad=True, **kwargs)
        assert [(i.item_id, i.class_ids) for i in dataset.items] == [("b.jpg", (2,))]
        assert [s.item_id for s in dataset.skipped] == ["a.jpg"]  # reported once


def test_long_rows_and_covered_ids_that_are_not_image_names(tmp_path):
    mask = np.zeros((400, 600), bool)
    mask[::2] = True  # 120,000 runs: a row far past csv's default field limit
    (tmp_path / "big.csv").write_text(f"ImageId,ClassId,EncodedPixels\nbig.png,1,{rle.encode(mask)}\n")
    labels = open_dataset(str(tmp_path / "big.csv"), image_shape=(400, 600))
    assert np.array_equal(labels.load_masks(0)[0], mask)
    with pytest.raises(DataError, match="'10' is not an image file name"):
        open_dataset(str(tmp_path / "big.csv"), covered_ids=["a.jpg", "10"])


def test_duplicate_rows(tmp_path):
    root = _dataset_dir(tmp_path, ["a.jpg,1,1 2", "a.jpg,1,10 2"])
    with pytest.raises(DataError, match="row 3: second row"):
        SeverstalDataset(root / "train.csv", root / "train_images")


def test_wrong_header(tmp_path):
    root = _dataset_dir(tmp_path, ["a.jpg,1,1 2"], header="id,cls,rle")
    with pytest.raises(DataError, match="neither ImageId,ClassId,EncodedPixels"):
        SeverstalDataset(root / "train.csv", root / "train_images")


def test_any_image_size_from_the_headers(tmp_path):
    """Runs are checked against each image's own size; masks come out at that size."""
    height, width = 320, 480
    mask = np.zeros((height, width), dtype=bool)
    mask[10:40, 100:200] = True
    rows = [f"a.jpg,2,{rle.encode(mask)}", f"b.jpg,1,{height * width - 4} 5"]
    root = _dataset_dir(tmp_path, rows, images={"a.jpg": (height, width), "b.jpg": (height, width)})
    dataset = open_dataset(str(root))
    assert dataset.image_shape == (height, width)
    sample = dataset[dataset.index_of("a.jpg")]
    assert sample.masks.shape == (4, height, width) and np.array_equal(sample.masks[1], mask)
    assert dataset.check_image(0) == (height, width)
    last = dataset[dataset.index_of("b.jpg")].masks[0]
    assert last.sum() == 5 and last[-5:, -1].all()  # column-major: the last pixels are the last column


def test_rows_past_their_own_image_are_refused(tmp_path):
    """A run valid for a 1600x256 strip is refused for a smaller image, naming row and size."""
    images = {"a.jpg": (256, 1600), "b.jpg": (64, 96)}
    root = _dataset_dir(tmp_path, ["a.jpg,1,400000 2", "b.jpg,1,6140 10"], images=images)
    with pytest.raises(RLEError, match=r"row 3 \(ImageId b.jpg, class 1, image 96x64\).*past the image end"):
        SeverstalDataset(root / "train.csv", root / "train_images")
    dataset = SeverstalDataset(root / "train.csv", root / "train_images", skip_bad=True)
    assert [i.item_id for i in dataset.items] == ["a.jpg"]
    assert "96x64" in dataset.skipped[0].reason


def test_mixed_sizes_have_no_common_shape(tmp_path):
    images = {"a.jpg": (256, 1600), "b.jpg": (64, 96), "c.jpg": (64, 96)}
    root = _dataset_dir(tmp_path, ["a.jpg,1,1 2", "b.jpg,3,1 20"], images=images)
    dataset = SeverstalDataset(root / "train.csv", root / "train_images")
    assert dataset.image_shape is None
    assert any("2 sizes" in note for note in dataset.notes)
    assert [dataset[i].masks.shape for i in range(3)] == [(4, 256, 1600), (4, 64, 96), (4, 64, 96)]


def test_given_size_is_a_check_with_images_and_the_size_without(tmp_path):
    root = _dataset_dir(tmp_path, ["a.jpg,1,1 2"], images={"a.jpg": (100, 1600)})
    with pytest.raises(DataError, match=r"a.jpg: image is 1600x100, but the image size given is 1600x256"):
        SeverstalDataset(root / "train.csv", root / "train_images", image_shape=(256, 1600))
    (root / "train.csv").write_text("ImageId,ClassId,EncodedPixels\nx.jpg,1,5000 10\n")
    with pytest.raises(RLEError, match="past the image end"):  # Kaggle's size is not assumed away
        open_dataset(str(root / "train.csv"), image_shape=(32, 64))
    labels = open_dataset(str(root / "train.csv"), image_shape=(100, 64))
    assert labels.image_shape == (100, 64) and labels.load_masks(0).shape == (4, 100, 64)
    assert open_dataset(str(root / "train.csv")).image_shape == (256, 1600)
    with pytest.raises(DataError, match="not a usable image size"):
        open_dataset(str(root / "train.csv"), image_shape=(0, 64))


def test_image_size_is_refused_for_folder_datasets(tmp_path):
    write_gray(tmp_path / "images" / "a.png", np.zeros((8, 8)))
    write_gray(tmp_path / "masks" / "a.png", np.zeros((8, 8)))
    with pytest.raises(DataError, match="each image's size from its file"):
        open_dataset(str(tmp_path), image_shape=(8, 8))


def test_corrupt_and_missing_images(tmp_path):
    root = _dataset_dir(tmp_path, ["a.jpg,1,1 2"])
    (root / "train_images" / "a.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.raises(DataError, match="a.jpg: not a readable image file"):
        SeverstalDataset(root / "train.csv", root / "train_images")  # its header is read at open
    kwargs = dict(skip_bad=True, labels_complete=False)
    skipped = SeverstalDataset(root / "train.csv", root / "train_images", **kwargs)
    assert not skipped.items and "not a readable image file" in skipped.skipped[0].reason
    truncated = tmp_path / "t"
    truncated.mkdir()
    root2 = _dataset_dir(truncated, ["a.jpg,1,1 2"])
    data = (root2 / "train_images" / "a.jpg").read_bytes()
    (root2 / "train_images" / "a.jpg").write_bytes(data[: len(data) // 3])
    with pytest.raises(DataError, match="a.jpg: cannot decode"):
        SeverstalDataset(root2 / "train.csv", root2 / "train_images")[0]


def test_symlink_out_of_the_folder_is_refused(tmp_path):
    root = _dataset_dir(tmp_path, ["a.jpg,1,1 2"])
    outside = write_gray(tmp_path / "elsewhere" / "secret.jpg", np.zeros((256, 1600)))
    os.symlink(outside, root / "train_images" / "b.jpg")
    with pytest.raises(DataError, match="points outside the dataset folder"):
        SeverstalDataset(root / "train.csv", root / "train_images")


def test_empty_dataset(tmp_path):
    root = _dataset_dir(tmp_path, [], images={})
    with pytest.raises(DataError, match="empty"):
        open_dataset(str(root))
