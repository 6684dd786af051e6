"""Every image and mask file mode reads as `imageio` documents, or is refused with one line
naming the file: 16-bit and float images, colour / alpha / 16-bit / float masks, EXIF
orientation, multi-frame files. Generated cases (Hypothesis) plus one explicit case per mode."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image, ImageOps

from defectgen.data import open_dataset
from defectgen.data.imageio import image_size, read_image, read_mask
from defectgen.errors import DataError

SETTINGS = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
SHAPES = st.tuples(st.integers(1, 12), st.integers(1, 12))


def refused(call, path: Path, match: str) -> str:
    """The DataError message of `call()`: one line, naming `path`, matching `match`."""
    with pytest.raises(DataError, match=match) as info:
        call()
    message = str(info.value)
    assert str(path) in message and "\n" not in message
    return message


# ---- 16-bit and float images ------------------------------------------------------------


@SETTINGS
@given(
    values=SHAPES.flatmap(lambda s: arrays(np.uint16, s)),
    suffix=st.sampled_from([".png", ".tif"]),
)
def test_16bit_gray_reads_its_high_byte(tmp_path, values, suffix):
    values.flat[0] = max(int(values.flat[0]), 4096)  # not 12-bit data (refused, tested below)
    path = tmp_path / f"g16{suffix}"
    Image.fromarray(values).save(path)
    assert Image.open(path).mode.startswith("I;16")
    expected = (values >> 8).astype(np.uint8)
    assert np.array_equal(read_image(path, 1)[:, :, 0], expected)
    assert np.array_equal(read_image(path, 3), np.repeat(expected[:, :, None], 3, axis=2))


def test_16bit_mid_gray_is_not_clipped_to_white(tmp_path):
    """The reported defect: PIL's convert('L') turned every 16-bit value above 255 into 255."""
    path = tmp_path / "mid.png"
    Image.fromarray(np.array([[0, 32768, 65535, 4096]], np.uint16)).save(path)
    assert read_image(path, 1)[0, :, 0].tolist() == [0, 128, 255, 16]


def test_16bit_big_endian_tiff_and_pgm(tmp_path):
    values = np.array([[0, 5000, 40000, 65535]], np.uint16)
    tiff = tmp_path / "be.tif"
    Image.fromarray(values.astype(">u2")).save(tiff)
    pgm = tmp_path / "g.pgm"
    cv2.imwrite(str(pgm), values)  # PIL opens a 16-bit PGM as mode I
    assert {Image.open(tiff).mode, Image.open(pgm).mode} == {"I;16B", "I"}
    for path in (tiff, pgm):
        assert read_image(path, 1)[0, :, 0].tolist() == [0, 19, 156, 255]


def test_16bit_colour_reads_like_16bit_gray(tmp_path):
    values = np.array([[0, 5000, 40000, 65535]], np.uint16)
    gray, colour = tmp_path / "g.png", tmp_path / "c.png"
    Image.fromarray(values).save(gray)
    cv2.imwrite(str(colour), np.repeat(values[:, :, None], 3, axis=2))
    assert Image.open(colour).mode == "RGB"
    assert np.array_equal(read_image(colour, 3), read_image(gray, 3))


@pytest.mark.parametrize("kind", ["gray", "colour"])
def test_12bit_data_in_16bit_file_refused(tmp_path, kind):
    values = np.array([[0, 1000, 4095]], np.uint16)  # would read 0, 3, 15: nearly black
    path = tmp_path / "twelve.png"
    if kind == "gray":
        Image.fromarray(values).save(path)
    else:
        cv2.imwrite(str(path), np.repeat(values[:, :, None], 3, axis=2))
    refused(lambda: read_image(path, 1), path, "values all lie below 4096")


def test_32bit_integer_image(tmp_path):
    path = tmp_path / "i32.tif"
    Image.fromarray(np.array([[0, 65535, 70000]], np.int32)).save(path)
    refused(lambda: read_image(path, 1), path, "values 0..70000, outside 16 bits")
    Image.fromarray(np.array([[0, 32768, 65535]], np.int32)).save(path)
    assert read_image(path, 1)[0, :, 0].tolist() == [0, 128, 255]


@SETTINGS
@given(values=SHAPES.flatmap(lambda s: arrays(np.float32, s, elements=st.floats(0, 1, width=32))))
def test_float_image_in_0_1_scales_by_255(tmp_path, values):
    path = tmp_path / "f.tif"
    Image.fromarray(values).save(path)
    assert Image.open(path).mode == "F"
    assert np.array_equal(read_image(path, 1)[:, :, 0], np.rint(values * 255).astype(np.uint8))


@pytest.mark.parametrize("bad", [1.5, -0.1, 255.0, np.nan, np.inf])
def test_float_image_outside_0_1_refused(tmp_path, bad):
    path = tmp_path / "f.tif"
    Image.fromarray(np.array([[0.0, 0.5, bad]], np.float32)).save(path)
    refused(lambda: read_image(path, 1), path, "float image with values")


def test_alpha_of_an_image_is_dropped(tmp_path):
    rgba = np.array([[[10, 20, 30, 0], [200, 100, 50, 255]]], np.uint8)
    path = tmp_path / "rgba.png"
    Image.fromarray(rgba).save(path)
    assert np.array_equal(read_image(path, 3), rgba[:, :, :3])


# ---- masks ------------------------------------------------------------------------------


@SETTINGS
@given(values=SHAPES.flatmap(lambda s: arrays(np.uint8, s)))
def test_gray_rgb_mask_reads_as_gray(tmp_path, values):
    path = tmp_path / "m.png"
    Image.fromarray(np.repeat(values[:, :, None], 3, axis=2)).save(path)
    assert Image.open(path).mode == "RGB"
    assert np.array_equal(read_mask(path), values)


@pytest.mark.parametrize("colour", [(255, 0, 0), (0, 0, 255), (255, 255, 254)])
def test_colour_mask_refused(tmp_path, colour):
    """Red strokes on black read as defect-free before (convert('L') of red is 76 < 128)."""
    mask = np.zeros((8, 8, 3), np.uint8)
    mask[2:5, 2:6] = colour
    path = tmp_path / "red.png"
    Image.fromarray(mask).save(path)
    refused(lambda: read_mask(path), path, "colour mask")


@SETTINGS
@given(
    data=SHAPES.flatmap(
        lambda s: st.tuples(
            arrays(np.uint8, s),  # alpha
            arrays(np.uint8, (*s, 3)),  # colour under transparent pixels: ignored
            st.sampled_from([1, 2, 255]),  # the strokes' value: a class id or white
            st.sampled_from(["RGBA", "LA"]),
        )
    )
)
def test_alpha_mask_transparent_is_background(tmp_path, data):
    alpha, noise, value, mode = data
    alpha.flat[0] = 0  # some transparency, so alpha counts
    opaque = alpha >= 128
    colour = np.where(opaque[:, :, None], value, noise).astype(np.uint8)
    if mode == "LA":
        colour = colour[:, :, :1]
    path = tmp_path / "alpha.png"
    Image.fromarray(np.concatenate([colour, alpha[:, :, None]], axis=2), mode).save(path)
    assert Image.open(path).mode == mode
    assert np.array_equal(read_mask(path), np.where(opaque, value, 0))


def test_transparent_background_no_longer_reads_as_all_defect(tmp_path):
    mask = np.zeros((8, 8, 4), np.uint8)
    mask[:, :, :3] = 255  # white everywhere, transparent except the stroke
    mask[2:4, 2:6, 3] = 255
    path = tmp_path / "stroke.png"
    Image.fromarray(mask).save(path)
    assert int((read_mask(path) == 255).sum()) == 8 and read_mask(path).sum() == 8 * 255


def test_opaque_alpha_is_ignored(tmp_path):
    mask = np.zeros((4, 4, 4), np.uint8)
    mask[:, :, 3] = 255
    mask[1, 1, :3] = 2
    path = tmp_path / "opaque.png"
    Image.fromarray(mask).save(path)
    assert read_mask(path).tolist() == np.where(np.arange(16).reshape(4, 4) == 5, 2, 0).tolist()


def test_black_strokes_on_transparent_layer_refused(tmp_path):
    mask = np.zeros((8, 8, 4), np.uint8)
    mask[2:4, 2:6, 3] = 255  # opaque black stroke, transparent elsewhere
    path = tmp_path / "black.png"
    Image.fromarray(mask).save(path)
    refused(lambda: read_mask(path), path, "opaque black")


def test_palette_mask_keeps_indices_whatever_the_colours(tmp_path):
    index = np.array([[0, 1, 2, 3]], np.uint8)
    img = Image.fromarray(index, "P")
    img.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255])
    path = tmp_path / "p.png"
    img.save(path)
    assert Image.open(path).mode == "P"
    assert read_mask(path).tolist() == [[0, 1, 2, 3]]


def test_one_bit_mask_reads_0_255(tmp_path):
    path = tmp_path / "bits.png"
    Image.fromarray(np.array([[True, False, True]])).save(path)
    assert Image.open(path).mode == "1"
    assert read_mask(path).tolist() == [[255, 0, 255]]


@pytest.mark.parametrize("dtype, suffix", [(np.uint16, ".png"), (np.int32, ".tif"), (np.float32, ".tif")])
def test_deep_mask_with_class_ids_reads(tmp_path, dtype, suffix):
    path = tmp_path / f"ids{suffix}"
    Image.fromarray(np.array([[0, 1, 3, 255]], dtype)).save(path)
    assert read_mask(path).tolist() == [[0, 1, 3, 255]]


@pytest.mark.parametrize(
    "values, dtype", [([0, 65535], np.uint16), ([0, 300], np.int32), ([0.0, 0.5], np.float32)]
)
def test_deep_mask_other_values_refused(tmp_path, values, dtype):
    path = tmp_path / "deep.tif"
    Image.fromarray(np.array([values], dtype)).save(path)
    refused(lambda: read_mask(path), path, "not all whole numbers 0..255")


def test_16bit_colour_mask_refused(tmp_path):
    path = tmp_path / "c16.png"
    cv2.imwrite(str(path), np.ones((4, 4, 3), np.uint16))  # class id 1, would read 0
    refused(lambda: read_mask(path), path, "16-bit colour mask")


def test_cmyk_mask_refused(tmp_path):
    path = tmp_path / "cmyk.tif"
    Image.new("CMYK", (4, 4)).save(path)
    refused(lambda: read_mask(path), path, "mask mode CMYK is not supported")


# ---- orientation and frames -------------------------------------------------------------

STORED = np.arange(4 * 6, dtype=np.uint8).reshape(4, 6) * 10  # 6 wide, 4 high, all distinct
UPRIGHT = {  # EXIF orientation -> what a viewer shows for STORED
    1: STORED,
    2: STORED[:, ::-1],
    3: STORED[::-1, ::-1],
    4: STORED[::-1],
    5: STORED.T,
    6: np.rot90(STORED, -1),
    7: STORED[::-1, ::-1].T,
    8: np.rot90(STORED, 1),
}


def _save_oriented(path: Path, array: np.ndarray, orientation: int, **kw) -> Path:
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(array).save(path, exif=exif, **kw)
    return path


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_applied_to_images_and_masks(tmp_path, orientation):
    path = _save_oriented(tmp_path / "o.png", STORED, orientation)
    shown = np.asarray(ImageOps.exif_transpose(Image.open(path)))
    assert np.array_equal(shown, UPRIGHT[orientation])  # the test's table agrees with PIL's
    assert np.array_equal(read_image(path, 1)[:, :, 0], shown)
    assert np.array_equal(read_mask(path), shown)
    assert image_size(path) == (shown.shape[1], shown.shape[0])


def test_rotated_jpeg_lines_up_with_a_mask_drawn_on_the_displayed_image(tmp_path):
    """A phone JPEG stored 24x16 with orientation 6 displays 16x24; the mask is drawn on that."""
    root = tmp_path / "ds"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    stored = np.full((16, 24), 200, np.uint8)
    stored[:, :4] = 0  # dark band on the stored left edge: the displayed top after rotation
    _save_oriented(root / "images" / "a.jpg", stored, 6, quality=95)
    mask = np.zeros((24, 16), np.uint8)  # displayed: 16 wide, 24 high
    mask[:4, :] = 1  # the defect is the dark band, at the displayed top
    Image.fromarray(mask).save(root / "masks" / "a.png")
    dataset = open_dataset(f"folder:{root}")
    sample = dataset[0]
    assert sample.image.shape == (24, 16, 1) and sample.masks.shape == (1, 24, 16)
    assert sample.image[sample.masks[0], 0].max() < 40 and sample.image[~sample.masks[0], 0].min() > 160


def test_rotated_tiff_refused(tmp_path):
    path = _save_oriented(tmp_path / "o.tif", STORED, 6)
    for call in (lambda: image_size(path), lambda: read_image(path, 1), lambda: read_mask(path)):
        refused(call, path, "TIFF with EXIF orientation 6")


@pytest.mark.parametrize("suffix", [".gif", ".tif", ".png"])
def test_multi_frame_files_refused(tmp_path, suffix):
    frames = [Image.fromarray(np.full((4, 4), v, np.uint8)) for v in (0, 100, 200)]
    path = tmp_path / f"anim{suffix}"
    frames[0].save(path, save_all=True, append_images=frames[1:])
    for call in (lambda: image_size(path), lambda: read_image(path, 1), lambda: read_mask(path)):
        refused(call, path, "holds 3 frames")


def test_single_frame_gif_reads(tmp_path):
    path = tmp_path / "one.gif"
    Image.fromarray(np.array([[0, 1, 2]], np.uint8), "P").save(path)
    assert read_mask(path).tolist() == [[0, 1, 2]]


# ---- through a folder dataset -----------------------------------------------------------


def test_folder_dataset_reads_alpha_masks_and_16bit_images(tmp_path):
    root = tmp_path / "ds"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    image = np.full((8, 8), 30000, np.uint16)
    Image.fromarray(image).save(root / "images" / "a.png")
    mask = np.zeros((8, 8, 4), np.uint8)
    mask[:, :, :3] = 255
    mask[2:4, 2:6, 3] = 255
    Image.fromarray(mask).save(root / "masks" / "a.png")
    dataset = open_dataset(f"folder:{root}")
    assert dataset.channels == 1 and dataset.classes.names == ("defect",)
    sample = dataset[0]
    assert int(sample.image.max()) == 30000 >> 8
    assert sample.class_ids == (1,) and int(sample.masks.sum()) == 8
