"""Reading images and masks from disk safely.

Every image defectgen reads from a dataset goes through `read_image` / `read_mask`: the
declared size is checked from the header *before* pixels are decoded (a decompression bomb
is refused without allocating it), and a missing, truncated or non-image file becomes a
`DataError` that names it.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from defectgen.errors import DataError

# 64 Mpx: far above any defect image (a Severstal strip is 0.4 Mpx) and far below what would
# exhaust memory. Callers may lower it; PIL's own bomb check is made an error, not a warning.
MAX_PIXELS = 64_000_000


def image_size(path: Path, max_pixels: int = MAX_PIXELS) -> tuple[int, int]:
    """(width, height) from the file header, without decoding pixels."""
    with _open(path, max_pixels) as img:
        return img.size


def read_image(path: Path, channels: int, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Image file -> uint8 [H, W, C] with C = `channels` (1 = grayscale, 3 = RGB)."""
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    with _open(path, max_pixels) as img:
        try:
            pixels = np.asarray(img.convert("L" if channels == 1 else "RGB"))
        except (OSError, ValueError) as err:  # truncated / corrupt stream
            raise DataError(f"{path}: cannot decode image ({err}); replace or remove it") from err
    return pixels[:, :, None] if channels == 1 else pixels


def read_mask(path: Path, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Mask file -> uint8 [H, W] of its raw values (index masks keep their class ids)."""
    with _open(path, max_pixels) as img:
        try:
            if img.mode not in ("L", "P", "1", "I", "I;16"):
                img = img.convert("L")
            pixels = np.asarray(img)
        except (OSError, ValueError) as err:
            raise DataError(f"{path}: cannot decode mask ({err}); replace or remove it") from err
    if pixels.dtype == bool:
        return pixels.astype(np.uint8) * 255
    if pixels.max(initial=0) > 255:
        raise DataError(f"{path}: mask values above 255; save masks as 8-bit PNG")
    return pixels.astype(np.uint8)


def read_image_pil_mode(path: Path, max_pixels: int = MAX_PIXELS) -> str:
    """The PIL mode ('L', 'RGB', ...) from the header, used to guess a dataset's channels."""
    with _open(path, max_pixels) as img:
        return img.mode


def _open(path: Path, max_pixels: int) -> Image.Image:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: image file not found; check the dataset path")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(path)
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as err:
        raise DataError(f"{path}: declared size is too large to decode safely ({err})") from err
    except (UnidentifiedImageError, OSError) as err:
        raise DataError(f"{path}: not a readable image file ({err}); replace or remove it") from err
    width, height = img.size
    if width * height > max_pixels:
        img.close()
        raise DataError(
            f"{path}: declares {width}x{height} pixels, more than the limit of {max_pixels:,}; "
            "refusing to decode it (a decompression bomb or a wrong file)"
        )
    return img
