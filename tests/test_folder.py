import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from conftest import write_gray
from defectgen.data import ClassFolderDataset, FolderDataset, open_dataset
from defectgen.errors import DataError

MAGNETIC_COUNTS = {"Blowhole": 115, "Break": 85, "Crack": 57, "Fray": 32, "Uneven": 103}


def test_magnetic_tile_layout(magnetic_tile_dir):
    dataset = open_dataset(str(magnetic_tile_dir))
    assert isinstance(dataset, ClassFolderDataset)
    assert dataset.classes.names == tuple(MAGNETIC_COUNTS)
    summary = dataset.summary()
    assert summary["items"] == 1344 and summary["defect_free"] == 952
    assert summary["images_per_class"] == MAGNETIC_COUNTS
    assert dataset.channels == 1


def test_magnetic_tile_soft_masks_thresholded_at_128(magnetic_tile_dir):
    dataset = open_dataset(f"folder:{magnetic_tile_dir}")
    index = dataset.index_of(
        "MT_Crack/" + sorted((magnetic_tile_dir / "MT_Crack" / "Imgs").glob("*.png"))[0].stem
    )
    sample = dataset[index]
    raw = np.asarray(Image.open(dataset.items[index].mask_path))
    assert len(np.unique(raw)) > 2  # really soft-edged
    crack = dataset.classes.names.index("Crack")
    assert np.array_equal(sample.masks[crack], raw >= 128)
    assert not np.delete(sample.masks, crack, axis=0).any()
    assert sample.image.shape == (*raw.shape, 1)


def test_magnetic_tile_free_images_have_empty_masks(magnetic_tile_dir):
    dataset = open_dataset(str(magnetic_tile_dir))
    free = [i for i, item in enumerate(dataset.items) if not item.class_ids][:3]
    for index in free:
        assert not dataset[index].masks.any()


def _folder(tmp_path, masks: dict[str, np.ndarray], classes: list[str] | None = None):
    for stem, mask in masks.items():
        write_gray(tmp_path / "images" / f"{stem}.png", np.full(mask.shape, 100))
        write_gray(tmp_path / "masks" / f"{stem}.png", mask)
    if classes:
        (tmp_path / "classes.txt").write_text("\n".join(classes) + "\n")
    return tmp_path


def test_index_masks(tmp_path):
    a = np.zeros((16, 24), np.uint8)
    a[2:5, 3:9] = 1
    a[10:12, 10:20] = 3
    b = np.zeros((16, 24), np.uint8)
    root = _folder(tmp_path, {"a": a, "b": b}, classes=["scratch", "pit", "patch"])
    dataset = open_dataset(str(root))
    assert isinstance(dataset, FolderDataset)
    assert dataset.classes.names == ("scratch", "pit", "patch")
    assert [(i.item_id, i.class_ids) for i in dataset.items] == [("a", (1, 3)), ("b", ())]
    sample = dataset[0]
    assert sample.masks.shape == (3, 16, 24)
    assert sample.masks[0].sum() == 18 and sample.masks[2].sum() == 20 and not sample.masks[1].any()
    assert np.array_equal(sample.index_mask, a)


def test_binary_soft_masks_without_class_file(tmp_path):
    mask = np.zeros((8, 8), np.uint8)
    mask[2:6, 2:6] = 255
    mask[1, 1] = 127  # soft edge below the threshold
    mask[1, 2] = 128
    dataset = open_dataset(str(_folder(tmp_path, {"a": mask})))
    assert dataset.classes.names == ("defect",)
    assert dataset[0].masks[0].sum() == 17


def test_mask_size_mismatch_and_missing_mask(tmp_path):
    root = _folder(tmp_path, {"a": np.zeros((8, 8), np.uint8)})
    write_gray(root / "masks" / "a.png", np.zeros((9, 8)))
    with pytest.raises(DataError, match=r"a.png: mask is 8x9 but its image is 8x8"):
        open_dataset(str(root))
    write_gray(root / "images" / "c.png", np.zeros((8, 8)))
    with pytest.raises(DataError, match="no mask"):
        FolderDataset(root)
    dataset = FolderDataset(root, skip_bad=True)
    assert sorted(s.item_id for s in dataset.skipped) == ["a", "c"]


def test_class_value_beyond_class_file(tmp_path):
    mask = np.zeros((8, 8), np.uint8)
    mask[0, 0] = 4
    with pytest.raises(DataError, match="value 4 but classes.txt names 2 classes"):
        open_dataset(str(_folder(tmp_path, {"a": mask}, classes=["x", "y"])))


def test_class_folders_with_symlink_outside(tmp_path):
    write_gray(tmp_path / "ds" / "Scratch" / "Imgs" / "a.jpg", np.zeros((8, 8)))
    write_gray(tmp_path / "ds" / "Scratch" / "Imgs" / "a.png", np.zeros((8, 8)))
    write_gray(tmp_path / "ds" / "OK" / "Imgs" / "b.jpg", np.zeros((8, 8)))
    dataset = open_dataset(str(tmp_path / "ds"))
    assert dataset.classes.names == ("Scratch",)
    assert [(i.item_id, i.class_ids) for i in dataset.items] == [("OK/b", ()), ("Scratch/a", (1,))]
    outside = write_gray(tmp_path / "secret.jpg", np.zeros((8, 8)))
    os.symlink(outside, tmp_path / "ds" / "OK" / "Imgs" / "c.jpg")
    with pytest.raises(DataError, match="points outside the dataset folder"):
        open_dataset(str(tmp_path / "ds"))


def test_decompression_bomb_refused_before_decoding(tmp_path):
    from defectgen.data.imageio import read_image

    path = tmp_path / "bomb.png"
    Image.new("L", (10, 10)).save(path)
    with pytest.raises(DataError, match="refusing to decode"):
        read_image(path, channels=1, max_pixels=50)


def test_unknown_spec():
    with pytest.raises(DataError, match="not a dataset"):
        open_dataset("/no/such/place")


def _rgb_folder(root, images, suffix=".png"):
    """images/ + masks/ of the given uint8 [H, W, 3] arrays, one class."""
    (root / "images").mkdir(parents=True)
    for i, image in enumerate(images):
        Image.fromarray(image, "RGB").save(root / "images" / f"im{i}{suffix}", quality=95)
        mask = np.zeros(image.shape[:2], np.uint8)
        mask[2:6, 2:6] = 1 if i % 2 else 0
        write_gray(root / "masks" / f"im{i}.png", mask)
    return root


def test_grey_content_stored_as_colour_is_read_as_grey(tmp_path):
    """#32 item 14: grey images saved as RGB (PNG exactly, JPEG within rounding) are a grey
    dataset, said in the notes; one image with colour in the sample makes it colour."""
    rng = np.random.default_rng(0)
    grey = [np.repeat(rng.integers(0, 256, (32, 48, 1), dtype=np.uint8), 3, axis=2) for _ in range(6)]
    for suffix in (".png", ".jpg"):
        dataset = open_dataset(str(_rgb_folder(tmp_path / suffix[1:], grey, suffix)))
        assert dataset.channels == 1 and dataset[0].image.shape == (32, 48, 1)
        assert any("grey images stored as RGB" in note for note in dataset.notes)
    tinted = [image.copy() for image in grey]
    tinted[3][10, 10, 0] = tinted[3][10, 10, 1] ^ 0x40  # one pixel of colour
    colour = open_dataset(str(_rgb_folder(tmp_path / "colour", tinted)))
    assert colour.channels == 3 and not any("grey images" in note for note in colour.notes)


@settings(max_examples=40, deadline=None)
@given(
    shape=st.tuples(st.integers(1, 20), st.integers(1, 20)),
    seed=st.integers(0, 2**32 - 1),
    shift=st.integers(-255, 255),
)
def test_a_colour_file_is_grey_exactly_when_its_channels_agree(tmp_path_factory, shape, seed, shift):
    from defectgen.data.imageio import GREY_TOLERANCE, stored_mode

    rng = np.random.default_rng(seed)
    image = np.repeat(rng.integers(0, 256, (*shape, 1), dtype=np.uint8), 3, axis=2)
    y, x = rng.integers(0, shape[0]), rng.integers(0, shape[1])
    image[y, x, 2] = np.clip(int(image[y, x, 2]) + shift, 0, 255)
    path = tmp_path_factory.mktemp("grey") / "image.png"
    Image.fromarray(image, "RGB").save(path)
    spread = int(image[y, x].max()) - int(image[y, x].min())
    assert stored_mode(path) == ("RGB", spread <= GREY_TOLERANCE)
