"""Severstal run-length encoding.

Format (Kaggle "Severstal: Steel Defect Detection"): space-separated `start length` pairs,
`start` 1-indexed into the image flattened *column-major* (top to bottom, then left to right),
for images of H = 256 rows and W = 1600 columns. Runs are sorted and do not overlap.

Both directions are vectorised numpy; `decode(encode(m)) == m` for every boolean mask.
`decode` validates everything a hostile or broken CSV can contain and raises `RLEError`
rather than guessing, and bounds its work by the image size (a string with millions of runs
is refused before it is parsed).
"""

from __future__ import annotations

import numpy as np

from defectgen.errors import RLEError

SEVERSTAL_SHAPE = (256, 1600)


def parse_runs(rle: str, shape: tuple[int, int] = SEVERSTAL_SHAPE) -> np.ndarray:
    """Validate `rle` and return its runs as int64 [R, 2] of (0-based start, length).

    Raises RLEError for non-numeric or odd-count tokens, start < 1, length < 1, unsorted or
    overlapping runs, and runs past the end of an image of `shape`.
    """
    n_pixels = int(shape[0]) * int(shape[1])
    text = rle.strip() if isinstance(rle, str) else ""
    if not isinstance(rle, str):
        raise RLEError(f"expected a string of 'start length' pairs, got {type(rle).__name__}")
    if not text:
        return np.zeros((0, 2), dtype=np.int64)
    # Cheap bound before tokenising: a valid string has at most n_pixels runs, i.e.
    # 2 * n_pixels tokens of at most len(str(n_pixels)) digits plus a separator each.
    max_chars = 2 * n_pixels * (len(str(n_pixels)) + 1)
    if len(text) > max_chars:
        raise RLEError(
            f"RLE string of {len(text):,} characters cannot describe a {shape[0]}x{shape[1]} "
            "image; the file is corrupt or not a Severstal CSV"
        )
    tokens = text.split()
    if len(tokens) % 2:
        raise RLEError(f"odd number of tokens ({len(tokens)}): RLE needs 'start length' pairs")
    if len(tokens) // 2 > n_pixels:
        raise RLEError(f"{len(tokens) // 2:,} runs cannot fit in {n_pixels:,} pixels")
    for token in tokens:
        # str.isdigit also accepts e.g. superscripts; isascii keeps it to 0-9.
        if not (token.isascii() and token.isdigit()):
            raise RLEError(f"token {token[:20]!r} is not a non-negative integer")
        if len(token) > 18:  # > int64 range; no valid run is that large anyway
            raise RLEError(f"number {token[:20]}... is far past the image end ({n_pixels:,})")
    values = np.array(tokens, dtype=np.int64).reshape(-1, 2)
    starts, lengths = values[:, 0], values[:, 1]
    if (bad := np.flatnonzero(starts < 1)).size:
        raise RLEError(f"run {bad[0] + 1} starts at {starts[bad[0]]}; starts are 1-indexed (>= 1)")
    if (bad := np.flatnonzero(lengths < 1)).size:
        raise RLEError(f"run {bad[0] + 1} has length {lengths[bad[0]]}; lengths must be >= 1")
    ends = starts + lengths - 1  # 1-based, inclusive
    if (bad := np.flatnonzero(ends > n_pixels)).size:
        i = bad[0]
        raise RLEError(
            f"run {i + 1} ({starts[i]} {lengths[i]}) ends at pixel {ends[i]:,}, past the image "
            f"end ({n_pixels:,} = {shape[0]}x{shape[1]}); is the image size right?"
        )
    if (bad := np.flatnonzero(starts[1:] <= ends[:-1])).size:
        i = bad[0] + 1
        kind = "is not sorted after" if starts[i] < starts[i - 1] else "overlaps"
        raise RLEError(f"run {i + 1} (start {starts[i]}) {kind} run {i} (start {starts[i - 1]})")
    return np.stack([starts - 1, lengths], axis=1)


def decode(rle: str, shape: tuple[int, int] = SEVERSTAL_SHAPE) -> np.ndarray:
    """RLE string -> bool mask [H, W]. Raises RLEError on malformed input."""
    runs = parse_runs(rle, shape)
    height, width = shape
    starts, lengths = runs[:, 0], runs[:, 1]
    # Every painted pixel index at once: for run r, start_r + 0..length_r-1. Work is
    # proportional to the painted area, not the image (a typical defect is ~1 % of a strip).
    first_in_run = np.cumsum(lengths) - lengths  # position of each run's first pixel in `index`
    index = np.arange(int(lengths.sum()), dtype=np.int64) + np.repeat(starts - first_in_run, lengths)
    flat = np.zeros(height * width, dtype=bool)
    flat[index] = True
    return np.ascontiguousarray(flat.reshape(width, height).T)  # column-major flattening


def encode(mask: np.ndarray) -> str:
    """Bool (or 0/1) mask [H, W] -> RLE string ('' for an empty mask)."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"encode expects a 2-D mask [H, W], got shape {mask.shape}")
    flat = np.concatenate([[False], mask.T.reshape(-1).astype(bool), [False]])
    changes = np.flatnonzero(flat[1:] != flat[:-1]) + 1  # 1-based positions of run edges
    starts, stops = changes[0::2], changes[1::2]
    pairs = np.stack([starts, stops - starts], axis=1).reshape(-1)
    return " ".join(map(str, pairs.tolist()))


def area(rle: str, shape: tuple[int, int] = SEVERSTAL_SHAPE) -> int:
    """Number of pixels an RLE string covers, without painting the mask."""
    return int(parse_runs(rle, shape)[:, 1].sum())
