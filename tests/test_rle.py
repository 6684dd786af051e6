import csv

import numpy as np
import pytest

from defectgen.data import rle
from defectgen.errors import RLEError


def test_decode_is_column_major_and_one_indexed():
    mask = rle.decode("1 3 6 1", shape=(4, 2))
    # Column-major: pixels 1..3 are rows 0..2 of column 0; pixel 6 is row 1 of column 1.
    expected = np.array([[1, 0], [1, 1], [1, 0], [0, 0]], dtype=bool)
    assert np.array_equal(mask, expected)
    assert rle.encode(expected) == "1 3 6 1"


def test_round_trip_random_masks(rng):
    for shape in [(256, 1600), (7, 5), (1, 1), (3, 11)]:
        for density in (0.0, 0.01, 0.5, 0.99, 1.0):
            mask = rng.random(shape) < density
            text = rle.encode(mask)
            assert np.array_equal(rle.decode(text, shape), mask)
            assert rle.area(text, shape) == int(mask.sum())


def test_round_trip_blocky_masks(rng):
    mask = np.zeros((256, 1600), dtype=bool)
    for _ in range(20):
        y, x = rng.integers(0, 240), rng.integers(0, 1580)
        mask[y : y + rng.integers(1, 16), x : x + rng.integers(1, 20)] = True
    mask[:, -1] = True  # touches the last pixel
    mask[0, 0] = True  # and the first
    assert np.array_equal(rle.decode(rle.encode(mask)), mask)


def test_all_real_rows(severstal_dir):
    with open(severstal_dir / "train.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 3689
    for row in rows:
        runs = rle.parse_runs(row["EncodedPixels"])
        assert runs[0, 0] >= 0 and (runs[:, 0] + runs[:, 1]).max() <= 256 * 1600
        assert np.all(np.diff(runs[:, 0]) > 0)
        mask = rle.decode(row["EncodedPixels"])
        assert mask.sum() == runs[:, 1].sum() > 0
        # Real files may split one run in two where runs touch; compare masks, not strings.
        assert np.array_equal(rle.decode(rle.encode(mask)), mask)


@pytest.mark.parametrize(
    "text, message",
    [
        ("1 a", "not a non-negative integer"),
        ("1 2 3", "odd number"),
        ("0 5", "1-indexed"),
        ("5 0", "length 0"),
        ("-1 4", "not a non-negative integer"),
        ("10 2 5 2", "not sorted"),
        ("1 5 3 2", "overlaps"),
        ("409590 20", "past the image end"),
        ("1 99999999999999999999999", "far past the image end"),
        ("1.5 2", "not a non-negative integer"),
    ],
)
def test_bad_rle_is_refused(text, message):
    with pytest.raises(RLEError, match=message):
        rle.decode(text)


def test_huge_rle_refused_before_parsing():
    # Millions of runs for a tiny image: refused by the length bound, not by allocating.
    text = "1 1 " * 2_000_000
    with pytest.raises(RLEError, match="cannot"):
        rle.decode(text, shape=(16, 16))


def test_encode_empty_and_bad_shape():
    assert rle.encode(np.zeros((3, 3), bool)) == ""
    assert not rle.decode("", (3, 3)).any()
    with pytest.raises(ValueError, match="2-D"):
        rle.encode(np.zeros((2, 3, 3), bool))


# --- property-based: any mask round-trips; any text is decoded or refused with RLEError -------

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.extra.numpy import arrays  # noqa: E402


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 24).flatmap(lambda h: st.integers(1, 24).flatmap(
    lambda w: arrays(bool, (h, w)))))  # fmt: skip
def test_any_mask_round_trips(mask):
    text = rle.encode(mask)
    assert np.array_equal(rle.decode(text, mask.shape), mask)
    assert rle.area(text, mask.shape) == int(mask.sum())


RLE_TEXT = st.one_of(
    st.text(max_size=40),
    st.lists(st.integers(-5, 700), max_size=12).map(lambda xs: " ".join(map(str, xs))),
    st.lists(st.sampled_from(["1", "0", "-1", "99999999999999999999", "1e3", "0x10", "٣", " ", "\t", "\n"]),
             max_size=10).map(" ".join),
)  # fmt: skip


@settings(max_examples=400, deadline=None)
@given(text=RLE_TEXT, height=st.integers(1, 30), width=st.integers(1, 30))
def test_any_text_decodes_inside_the_image_or_is_refused(text, height, width):
    try:
        mask = rle.decode(text, (height, width))
    except RLEError as err:
        assert str(err)  # refused with a reason
        return
    assert mask.shape == (height, width) and mask.dtype == bool
    lengths = [int(token) for token in text.split()[1::2]]
    assert int(mask.sum()) == sum(lengths)  # accepted runs are disjoint and inside the image
