"""Reading images and masks from disk safely.

Every image defectgen reads from a dataset goes through `read_image` / `read_mask`: the
declared size is checked from the header *before* pixels are decoded (a decompression bomb
is refused without allocating it), and a missing, truncated or non-image file becomes a
`DataError` that names it.

Every file mode either reads as documented in `read_image` / `read_mask` or is refused with a
one-line `DataError` naming the file and saying what to do; nothing is clipped or guessed in
silence. For every file:
- the EXIF orientation is applied (as `PIL.ImageOps.exif_transpose` does), to images and masks
  alike, so a mask drawn on the displayed image lines up; `image_size` reports the displayed
  size. A PNG's EXIF counts only when it precedes the pixel data (found without decoding). A
  TIFF with an orientation other than 1 is refused: Pillow versions differ on applying it.
- a file with several frames (animated GIF / PNG / WebP, multi-page TIFF) is refused, since
  which frame is meant cannot be told; an MPO (a camera JPEG with embedded previews) reads its
  first frame, the primary image.
"""

from __future__ import annotations

import io
import re
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from defectgen.errors import DataError

# 64 Mpx: far above any defect image (a Severstal strip is 0.4 Mpx) and far below what would
# exhaust memory. Callers may lower it; PIL's own bomb check is made an error, not a warning.
MAX_PIXELS = 64_000_000
MEMORY_FORMATS = ("PNG", "JPEG", "BMP", "TIFF")  # what the readers' file suffixes name

# Modes read as one channel when a dataset's channel count is guessed from its first image.
GRAY_MODES = frozenset({"1", "L", "LA", "P", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"})
_INTEGER_MODES = frozenset({"I", "I;16", "I;16L", "I;16B", "I;16N"})
_ORIENTATION = 0x0112  # the EXIF tag
_TRANSPOSE = {  # orientation -> what displays it upright; the table of ImageOps.exif_transpose
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_LOW_BITS = 4096  # a 16-bit image whose values all lie below this uses at most 12 bits
_MASK_ADVICE = "save masks as 8-bit grayscale or palette PNG (0 = background, class ids or 255)"


def image_size(path: Path, max_pixels: int = MAX_PIXELS) -> tuple[int, int]:
    """(width, height) as displayed (EXIF orientation applied), from the header alone."""
    with _open(path, max_pixels) as img:
        width, height = img.size
        return (height, width) if _orientation(img) in (5, 6, 7, 8) else (width, height)


def read_image(
    path: Path, channels: int, max_pixels: int = MAX_PIXELS, *, data: bytes | None = None
) -> np.ndarray:
    """Image file -> uint8 [H, W, C] with C = `channels` (1 = grayscale, 3 = RGB).

    With `data`, the file's bytes are read from memory instead (an upload): `path` only names it
    in messages, and only the formats the readers take (`MEMORY_FORMATS`) are decoded.

    - 8-bit modes (L, RGB, P, CMYK, YCbCr, 1, ...) convert as PIL converts them; an alpha
      channel is dropped, not composited (as OpenCV does).
    - 16-bit gray (I;16*, and I holding 0..65535) keeps the high byte, value >> 8, the scaling
      PIL itself uses for 16-bit colour files: the file's bit depth, not its value range, so
      every image of a dataset scales alike. A 16-bit file whose values all lie below 4096
      (10- or 12-bit camera data in a 16-bit container, which would read nearly black) is
      refused; so is I with values outside 0..65535.
    - float (F) must lie in 0..1 and is scaled by 255 and rounded; other ranges are refused.
    """
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    with _open(path, max_pixels, data) as img:
        deep_colour = _sixteen_bit_colour(img)
        img = _decode(img, path, "image")
        if img.mode in _INTEGER_MODES:
            gray = _scale_16bit(np.asarray(img), path)
        elif img.mode == "F":
            gray = _scale_float(np.asarray(img), path)
        else:
            try:
                pixels = np.asarray(img.convert("L" if channels == 1 else "RGB"))
            except ValueError as err:  # a mode PIL cannot convert
                raise DataError(
                    f"{path}: image mode {img.mode} cannot be read ({err}); save it as 8-bit gray or RGB"
                ) from err
            if deep_colour and pixels.max(initial=0) < _LOW_BITS >> 8:
                raise _low_bits_error(path)
            return pixels[:, :, None] if channels == 1 else pixels
    return gray[:, :, None] if channels == 1 else np.repeat(gray[:, :, None], 3, axis=2)


def read_mask(path: Path, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Mask file -> uint8 [H, W] of its values: class ids in index masks, 0/255 (or soft
    values) in binary ones. By mode:

    - L and P keep their raw values (a palette mask keeps its indices: the class ids); 1-bit
      masks read 0/255.
    - RGB reads as gray when every pixel has R == G == B; a colour mask (any other pixel) is
      refused, since its colours' meaning cannot be told. So is a 16-bit colour mask.
    - LA / RGBA: pixels with alpha < 128 are background (0) and the others read as L / RGB
      above. A fully opaque mask ignores its alpha. A mask with transparent pixels *and*
      opaque black ones (strokes painted black on a transparent layer) is refused: the
      strokes could not be told from the background.
    - 16-bit / 32-bit integer and float masks must hold whole numbers 0..255; else refused.
    - any other mode is refused.
    """
    with _open(path, max_pixels) as img:
        if _sixteen_bit_colour(img):  # PIL keeps only the high byte: small class ids read 0
            raise DataError(f"{path}: 16-bit colour mask; {_MASK_ADVICE}")
        img = _decode(img, path, "mask")
        mode, pixels = img.mode, np.asarray(img)
    if mode in ("L", "P"):
        return pixels.astype(np.uint8)
    if mode == "1":
        return pixels.astype(np.uint8) * 255
    if mode in ("LA", "RGB", "RGBA"):
        return _colour_mask(pixels.reshape(*pixels.shape[:2], -1), path)
    if mode in _INTEGER_MODES or mode == "F":
        lo, hi = pixels.min(initial=0), pixels.max(initial=0)
        if not (np.isfinite(pixels).all() and lo >= 0 and hi <= 255 and (pixels == np.round(pixels)).all()):
            raise DataError(f"{path}: mask values {lo}..{hi}, not all whole numbers 0..255; {_MASK_ADVICE}")
        return pixels.astype(np.uint8)
    raise DataError(f"{path}: mask mode {mode} is not supported; {_MASK_ADVICE}")


GREY_TOLERANCE = 2  # levels two channels of grey content may differ by (JPEG chroma rounding)


def stored_mode(path: Path, max_pixels: int = MAX_PIXELS) -> tuple[str, bool]:
    """(PIL mode from the header, whether the content is grey): a grey mode, or a colour file
    whose R, G and B differ by at most `GREY_TOLERANCE` levels at every pixel (grey content
    saved as colour, as Severstal's JPEGs and many steel sets are)."""
    with _open(path, max_pixels) as img:
        if img.mode in GRAY_MODES:
            return img.mode, True
        rgb = np.asarray(img.convert("RGB"), dtype=np.int16)
    spread = rgb.max(axis=2) - rgb.min(axis=2)
    return img.mode, bool(spread.max(initial=0) <= GREY_TOLERANCE)


def _colour_mask(pixels: np.ndarray, path: Path) -> np.ndarray:
    """[H, W, C] LA / RGB / RGBA mask -> uint8 [H, W] gray values, as `read_mask` says."""
    has_alpha = pixels.shape[2] in (2, 4)
    colour = pixels[:, :, :-1] if has_alpha else pixels
    opaque = pixels[:, :, -1] >= 128 if has_alpha else np.ones(pixels.shape[:2], bool)
    values = colour[:, :, 0]
    if ((colour != values[:, :, None]).any(axis=2) & opaque).any():
        raise DataError(f"{path}: colour mask (pixels with R, G, B unequal); {_MASK_ADVICE}")
    if opaque.all():
        return values
    if (opaque & (values == 0)).any():
        raise DataError(
            f"{path}: mask has transparent pixels and opaque black ones, so black strokes cannot be "
            f"told from the transparent background; paint defects white or {_MASK_ADVICE}"
        )
    return np.where(opaque, values, 0).astype(np.uint8)


def _scale_16bit(values: np.ndarray, path: Path) -> np.ndarray:
    """16-bit (or 32-bit integer) gray -> uint8 by the high byte, as `read_image` says."""
    lo, hi = int(values.min(initial=0)), int(values.max(initial=0))
    if lo < 0 or hi > 65535:
        raise DataError(
            f"{path}: integer image with values {lo}..{hi}, outside 16 bits; save it as 8- or 16-bit"
        )
    if hi < _LOW_BITS:
        raise _low_bits_error(path)
    return (values.astype(np.uint32) >> 8).astype(np.uint8)


def _scale_float(values: np.ndarray, path: Path) -> np.ndarray:
    """Float gray in 0..1 -> uint8 (x 255, rounded), as `read_image` says."""
    if not np.isfinite(values).all() or values.min(initial=0) < 0 or values.max(initial=0) > 1:
        lo, hi = np.nanmin(values), np.nanmax(values)
        raise DataError(
            f"{path}: float image with values {lo:g}..{hi:g} (or NaN / inf); defectgen reads float "
            "images as 0..1: scale it to 0..1 or save it as 8- or 16-bit"
        )
    return np.rint(values * 255).astype(np.uint8)


def _low_bits_error(path: Path) -> DataError:
    return DataError(
        f"{path}: 16-bit image whose values all lie below {_LOW_BITS} (10- or 12-bit data in a "
        "16-bit file?) would read nearly black; scale it to the full 16-bit range (x16 for "
        "12-bit) or save it as 8-bit"
    )


def _sixteen_bit_colour(img: Image.Image) -> bool:
    """An undecoded RGB / RGBA file with 16 bits a channel (PIL decodes it to the high byte)."""
    if img.mode not in ("RGB", "RGBA") or not img.tile:
        return False
    args = img.tile[0][3]  # the decoder arguments: the raw mode, alone or first
    rawmode = args if isinstance(args, str) else args[0] if isinstance(args, tuple) and args else ""
    return ";16" in str(rawmode)


def _orientation(img: Image.Image) -> int:
    """The EXIF orientation (1 = upright) from the header; a PNG's EXIF only when it precedes
    the pixels (Pillow would decode the whole image to look further)."""
    if img.format == "PNG" and "exif" not in img.info:
        return 1
    return int(img.getexif().get(_ORIENTATION, 1) or 1)


def _decode(img: Image.Image, path: Path, what: str) -> Image.Image:
    """The decoded image, turned upright by its EXIF orientation; a corrupt stream is a DataError."""
    method = _TRANSPOSE.get(_orientation(img))
    try:
        img.load()
    except (OSError, ValueError, SyntaxError) as err:  # truncated / corrupt stream
        raise DataError(f"{path}: cannot decode {what} ({err}); replace or remove it") from err
    return img.transpose(method) if method is not None else img


def _open(path: Path, max_pixels: int, data: bytes | None = None) -> Image.Image:
    path = Path(path)
    if data is None and not path.is_file():
        raise DataError(f"{path}: image file not found; check the dataset path")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(path) if data is None else Image.open(io.BytesIO(data), formats=MEMORY_FORMATS)
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as err:
        raise DataError(f"{path}: declared size is too large to decode safely ({err})") from err
    except (UnidentifiedImageError, OSError) as err:
        # PIL names an in-memory file by its object repr ("<_io.BytesIO object at 0x…>"): say what it is
        reason = re.sub(r"<_io\.BytesIO object at 0x[0-9a-fA-F]+>", "the data", str(err))
        raise DataError(f"{path}: not a readable image file ({reason}); replace or remove it") from err
    try:
        _check_header(img, path, max_pixels)
    except BaseException:
        img.close()
        raise
    return img


def _check_header(img: Image.Image, path: Path, max_pixels: int) -> None:
    """Refuse, before decoding, what `read_image` / `read_mask` cannot read faithfully."""
    width, height = img.size
    if width * height > max_pixels:
        raise DataError(
            f"{path}: declares {width}x{height} pixels, more than the limit of {max_pixels:,}; "
            "refusing to decode it (a decompression bomb or a wrong file)"
        )
    try:
        frames = getattr(img, "n_frames", 1)
        orientation = _orientation(img)
    except (OSError, ValueError, SyntaxError, EOFError) as err:
        raise DataError(f"{path}: not a readable image file ({err}); replace or remove it") from err
    if frames > 1 and img.format != "MPO":
        raise DataError(
            f"{path}: holds {frames} frames (an animation or multi-page file) and which one is "
            "meant cannot be told; save that frame alone as a PNG"
        )
    if img.format == "TIFF" and orientation != 1:
        raise DataError(
            f"{path}: TIFF with EXIF orientation {orientation}, which Pillow versions read "
            "differently; save it upright (orientation 1) or as PNG"
        )
