"""An embedded, procedural demo dataset in the Severstal layout.

Real defect datasets cannot ship with defectgen, so `generate_demo` paints its own: grayscale
steel-like strips (256x1600 by default, the Severstal size) with four defect classes that look
and behave differently, written as

    out_dir/train_images/demo_00000.jpg ...   grayscale JPEG, quality 95
    out_dir/train.csv                         ImageId,ClassId,EncodedPixels (positive rows only)
    out_dir/README.txt                        what the classes are
    out_dir/demo.json                         the parameters it was generated with
    out_dir/shape.txt                         "H W", only when the size is not 256x1600

so `severstal:out_dir/train.csv,out_dir/train_images` (or just `out_dir`) reads it. The labels
are complete: an image without rows is defect-free.

Classes (Severstal ids 1..4, by analogy only):
1. scratch: one to three long, thin, slightly curved lines, bright or dark, any direction but
   mostly along the strip;
2. pits: a cluster of small dark round spots;
3. scale: a large irregular patch of changed brightness with a flaky texture and a dark rim;
4. crack: a dark, jagged, branching line running mostly top to bottom across the strip.

Labels are exact by construction: each defect's mask is drawn first, and the defect changes
pixels only inside it (`render_demo_image` returns the clean background too, so tests check
this). Classes never overlap: a defect that would touch an earlier one is moved or dropped.

Backgrounds imitate the real strips in ../shared/data: rolling marks as streaks *along the
rolling direction*, which in Severstal frames runs top to bottom (so the streaks are
vertical), grain at two scales, slow illumination gradients, and occasionally benign stains
and the dark margin past the strip's edge (defects are never placed there).

Randomness is explicit: one `numpy.random.SeedSequence(seed)` gives the plan (which images
have which defects) and one independent generator per image, so the output is identical
byte for byte whatever the thread scheduling.

Writes are atomic per file (temporary name + `os.replace`) and `train.csv` is written last,
so an interrupted run is simply redone. A folder that already holds a finished demo made with
the same parameters is returned as is; one made with other parameters (or a Severstal folder
defectgen did not make) is refused with a `DataError`: choose another folder or delete it.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from defectgen import ui
from defectgen.data.rle import SEVERSTAL_SHAPE, encode
from defectgen.errors import ConfigError, DataError
from defectgen.fileio import parse_json, write_atomic

FORMAT = "defectgen-demo/1"
GENERATOR_VERSION = 1  # bump when the pictures change, so old folders are not taken as current
N_CLASSES = 4
CLASS_NAMES = {1: "scratch", 2: "pits", 3: "scale", 4: "crack"}
JPEG_QUALITY = 95
MIN_SHAPE = (32, 128)  # smaller strips leave no room for a crack's branches or a scale patch


@dataclass
class _Defect:
    """One painted defect, in the box [top:top+h, left:left+w] of the image."""

    class_id: int
    top: int
    left: int
    mask: np.ndarray  # bool [h, w]
    alpha: np.ndarray  # float32 [h, w] in [0, 1], 0 outside `mask`
    delta: np.ndarray  # float32 [h, w], grey levels added where alpha = 1

    @property
    def box(self) -> tuple[slice, slice]:
        height, width = self.mask.shape
        return slice(self.top, self.top + height), slice(self.left, self.left + width)


# ---------------------------------------------------------------------------------------------
# Public API


def generate_demo(
    out_dir: Path,
    n_images: int = 240,
    defect_share: float = 0.5,
    height: int = 256,
    width: int = 1600,
    seed: int = 0,
    progress: bool = True,
) -> Path:
    """Write the demo dataset to `out_dir` (see the module docstring) and return `out_dir`.

    `defect_share` of the images (rounded) carry 1-3 defects each; the rest are defect-free.
    The first defect of each defect image cycles through the classes, so every class appears
    once there are at least four defect images.
    """
    out_dir = Path(out_dir)
    params = _check_params(n_images, defect_share, height, width, seed)
    if _existing_demo(out_dir, params):
        return out_dir

    images_dir = out_dir / "train_images"
    images_dir.mkdir(parents=True, exist_ok=True)
    _write_text(out_dir / "demo.json", json.dumps({"format": FORMAT, **params}, indent=2) + "\n")
    plan, image_seeds = demo_plan(n_images, defect_share, seed)
    names = [f"demo_{index:05d}.jpg" for index in range(n_images)]
    _remove_stale(out_dir, images_dir, set(names))

    def make(index: int) -> dict[int, str]:
        rng = np.random.default_rng(image_seeds[index])
        _, image, masks = render_demo_image(rng, height, width, plan[index])
        ok, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        if not ok:  # pragma: no cover - cv2 encodes any uint8 [H, W]
            raise RuntimeError("cv2 failed to encode a demo image as JPEG")
        _write_bytes(images_dir / names[index], jpeg.tobytes())
        return {k: encode(mask) for k, mask in enumerate(masks, start=1) if mask.any()}

    # numpy and cv2 release the GIL in the heavy calls, so threads give real parallelism.
    workers = max(1, min(4, os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = pool.map(make, range(n_images))
        if progress:
            results = ui.track(results, total=n_images, description="painting demo", transient=True)
        rles = list(results)

    _write_text(out_dir / "README.txt", _readme(params, plan))
    if (height, width) != SEVERSTAL_SHAPE:
        _write_text(out_dir / "shape.txt", f"{height} {width}\n")
    lines = ["ImageId,ClassId,EncodedPixels"]
    for name, per_class in zip(names, rles, strict=True):
        lines += [f"{name},{class_id},{rle}" for class_id, rle in sorted(per_class.items())]
    _write_text(out_dir / "train.csv", "\n".join(lines) + "\n")  # last: marks the run finished
    return out_dir


def demo_shape(out_dir: Path) -> tuple[int, int]:
    """(H, W) of the demo images in `out_dir`: 256x1600 unless `shape.txt` says otherwise."""
    path = Path(out_dir) / "shape.txt"
    if not path.is_file():
        return SEVERSTAL_SHAPE
    try:
        height, width = (int(v) for v in path.read_text().split())
    except ValueError:
        raise DataError(f"{path}: expected 'H W' (two integers); regenerate the demo") from None
    return height, width


def demo_plan(
    n_images: int, defect_share: float, seed: int
) -> tuple[list[list[int]], list[np.random.SeedSequence]]:
    """What `generate_demo` paints: per image, the defect classes ([] = defect-free) and the
    seed of its own generator. Image i is `render_demo_image(np.random.default_rng(seeds[i]),
    H, W, plan[i])`, so anyone can rebuild an image, its background and its masks exactly.
    """
    plan_seed, *image_seeds = np.random.SeedSequence(seed).spawn(n_images + 1)
    rng = np.random.default_rng(plan_seed)
    n_defect = int(round(n_images * defect_share))
    defect_images = np.sort(rng.permutation(n_images)[:n_defect])
    # First defect: classes in shuffled rounds of 1..4, so the classes are balanced.
    rounds = -(-n_defect // N_CLASSES)
    primary = np.concatenate([rng.permutation(N_CLASSES) + 1 for _ in range(max(rounds, 1))])
    plan: list[list[int]] = [[] for _ in range(n_images)]
    for number, index in enumerate(defect_images):
        n_defects = int(rng.choice([1, 2, 3], p=[0.5, 0.3, 0.2]))
        extra = rng.integers(1, N_CLASSES + 1, size=n_defects - 1)
        plan[index] = [int(primary[number]), *map(int, extra)]
    return plan, image_seeds


def render_demo_image(
    rng: np.random.Generator, height: int, width: int, classes: Sequence[int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Paint one strip with a defect of each class in `classes` (1-4, repeats allowed).

    Returns (clean background uint8 [H, W], image uint8 [H, W], masks bool [4, H, W]). The
    image differs from the background only inside the masks, and masks never overlap. The first
    defect is always placed; a later one that cannot find a free spot in a few tries is dropped,
    so `masks` may hold fewer defects than asked (never fewer than one if any was asked).
    """
    background, lo, hi = _background(rng, height, width)
    clean = np.clip(np.rint(background), 0, 255).astype(np.uint8)
    image = clean.astype(np.float32)
    masks = np.zeros((N_CLASSES, height, width), dtype=bool)
    occupied = np.zeros((height, width), dtype=bool)  # every mask so far, grown by a margin
    margin = max(2, min(height, width) // 64)
    for number, class_id in enumerate(classes):
        if class_id not in RENDERERS:
            raise ValueError(f"demo class ids are 1..{N_CLASSES}, got {class_id}")
        for _ in range(1 if number == 0 else 12):
            defect = RENDERERS[class_id](rng, image, lo, hi)
            box = defect.box
            if not (occupied[box] & defect.mask).any():
                break
        else:
            continue  # no free spot: drop this extra defect rather than clip it
        # Compose in float, from the already painted image: inside the mask only (alpha = 0
        # outside by construction, and the mask is where alpha is allowed to be non-zero).
        alpha = np.where(defect.mask, defect.alpha, 0.0).astype(np.float32)
        image[box] += alpha * defect.delta
        masks[class_id - 1][box] |= defect.mask
        grown = cv2.dilate(defect.mask.astype(np.uint8), _disk(margin)).astype(bool)
        occupied[box] |= grown
    painted = np.clip(np.rint(image), 0, 255).astype(np.uint8)
    image = np.where(masks.any(axis=0), painted, clean)
    return clean, image, masks


def write_demo_sheet(out_dir: Path, path: Path, n: int = 8) -> Path:
    """PNG contact sheet of `n` demo images with their CSV masks overlaid in class colours.

    Images are chosen so every class shows (when `n` allows), plus one defect-free strip.
    """
    from defectgen.data.severstal import SeverstalDataset
    from defectgen.viz import contact_sheet, overlay

    out_dir = Path(out_dir)
    if not (out_dir / "train.csv").is_file():
        raise DataError(f"{out_dir}: no finished demo dataset here; generate it first (generate_demo)")
    dataset = SeverstalDataset(
        out_dir / "train.csv", out_dir / "train_images", image_shape=demo_shape(out_dir)
    )
    chosen: list[int] = []
    defect = [i for i, item in enumerate(dataset.items) if item.class_ids]
    free = [i for i, item in enumerate(dataset.items) if not item.class_ids]
    n_defect = n - 1 if free and n >= 4 else n
    for class_id in range(1, N_CLASSES + 1):  # first, one image per class
        first = next((i for i in defect if class_id in dataset.items[i].class_ids and i not in chosen), None)
        if first is not None and len(chosen) < n_defect:
            chosen.append(first)
    chosen += [i for i in defect if i not in chosen][: n_defect - len(chosen)]
    chosen += free[: n - len(chosen)]
    tiles, captions = [], []
    for index in chosen:
        sample = dataset[index]
        tiles.append(overlay(sample.image, sample.masks))
        names = ", ".join(f"{k} {CLASS_NAMES[k]}" for k in sample.class_ids) or "defect-free"
        captions.append(f"{sample.item_id}: {names}")
    if not tiles:
        raise DataError(f"{out_dir}: the demo dataset has no images; regenerate it")
    sheet = contact_sheet(tiles, captions, columns=2 if len(tiles) > 1 else 1, tile_width=800)
    buffer = io.BytesIO()
    sheet.save(buffer, format="PNG")
    return write_atomic(Path(path), buffer.getvalue(), durable=False)


# ---------------------------------------------------------------------------------------------
# Plan, folder bookkeeping, atomic writes


def _check_params(n_images, defect_share, height, width, seed) -> dict:
    if int(n_images) != n_images or n_images < 1:
        raise ConfigError(f"n_images must be a positive integer, got {n_images}")
    if not 0.0 <= float(defect_share) <= 1.0:
        raise ConfigError(f"defect_share must be in [0, 1], got {defect_share}")
    if int(height) != height or int(width) != width or height < MIN_SHAPE[0] or width < MIN_SHAPE[1]:
        raise ConfigError(
            f"demo images must be at least {MIN_SHAPE[0]}x{MIN_SHAPE[1]} (HxW), got {height}x{width}"
        )
    if int(seed) != seed or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {seed}")
    return {
        "generator_version": GENERATOR_VERSION,
        "n_images": int(n_images),
        "defect_share": float(defect_share),
        "height": int(height),
        "width": int(width),
        "seed": int(seed),
    }


def _existing_demo(out_dir: Path, params: dict) -> bool:
    """True when `out_dir` already holds this exact demo; raise if it holds something else."""
    meta_path = out_dir / "demo.json"
    meta = None
    if meta_path.is_file():
        try:
            meta = parse_json(meta_path.read_text())
        except (OSError, ValueError):
            meta = None
    ours = isinstance(meta, dict) and meta.get("format") == FORMAT
    if (out_dir / "train.csv").exists():
        if not ours:
            raise DataError(
                f"{out_dir}: holds a train.csv that is not a defectgen demo; "
                "choose another folder for the demo"
            )
        old = {k: meta.get(k) for k in params}
        if old == params:
            return True
        diff = ", ".join(f"{k} {old[k]} (asked {params[k]})" for k in params if old[k] != params[k])
        raise DataError(
            f"{out_dir}: holds a demo dataset generated with other parameters: {diff}; "
            "choose another folder, or delete this one to regenerate it"
        )
    images_dir = out_dir / "train_images"
    if not ours and images_dir.is_dir() and any(images_dir.iterdir()):
        raise DataError(
            f"{images_dir}: holds files defectgen did not generate; choose another folder for the demo"
        )
    return False  # empty, new, or an interrupted demo run: (re)generate everything


def _remove_stale(out_dir: Path, images_dir: Path, names: set[str]) -> None:
    """After an interrupted run: drop its leftover temporaries and images this run won't write
    (they would otherwise be read as defect-free images)."""
    for path in images_dir.iterdir():
        stale_image = path.name.startswith("demo_") and path.suffix == ".jpg" and path.name not in names
        if stale_image or (path.name.startswith(".") and ".tmp" in path.name):
            path.unlink(missing_ok=True)
    for path in out_dir.glob(".*.tmp*"):
        path.unlink(missing_ok=True)
    (out_dir / "shape.txt").unlink(missing_ok=True)


def _readme(params: dict, plan: list[list[int]]) -> str:
    n_free = sum(1 for classes in plan if not classes)
    return (
        "defectgen demo dataset (procedural, synthetic: not real steel)\n"
        "==============================================================\n\n"
        f"{params['n_images']} grayscale strips of {params['height']}x{params['width']} (HxW), "
        f"seed {params['seed']}; {params['n_images'] - n_free} with 1-3 defects, {n_free} "
        "defect-free.\n"
        "Layout as Kaggle's Severstal: train_images/*.jpg and train.csv "
        "(ImageId,ClassId,EncodedPixels;\nRLE column-major, 1-indexed; positive rows only). "
        "Labels are complete: an image\nwithout rows is defect-free. Masks are exact: "
        "defects change pixels only inside them,\nand a pixel has at most one class.\n\n"
        "Classes\n"
        "  1 scratch  long thin slightly curved lines, bright or dark, mostly along the strip,\n"
        "             sometimes two or three side by side\n"
        "  2 pits     clusters of small dark round spots\n"
        "  3 scale    large irregular patches of changed brightness, flaky texture, dark rim\n"
        "  4 crack    dark jagged branching lines running mostly top to bottom\n\n"
        "Background: vertical rolling marks, grain at two scales, illumination gradients,\n"
        "occasional stains and dark margins past the strip edge (benign, not labelled).\n"
        + (
            f"\nImage size is not Severstal's 256x1600: see shape.txt ({params['height']} "
            f"{params['width']}).\n"
            if (params["height"], params["width"]) != SEVERSTAL_SHAPE
            else ""
        )
        + "\nRegenerate with defectgen.data.demo.generate_demo (parameters in demo.json).\n"
    )


def _write_bytes(path: Path, data: bytes) -> None:
    write_atomic(path, data, durable=False)  # a half-finished demo is regenerated, not resumed


def _write_text(path: Path, text: str) -> None:
    write_atomic(path, text, durable=False)


# ---------------------------------------------------------------------------------------------
# Background


def _noise(rng: np.random.Generator, height: int, width: int, cell_y: float, cell_x: float) -> np.ndarray:
    """Smooth Gaussian noise float32 [H, W], features about `cell_y` x `cell_x` pixels, std ~1:
    a coarse normal grid resized to the image with bicubic interpolation (one cv2 call, ~1 ms
    for a 256x1600 strip)."""
    rows = max(2, round(height / max(1.0, float(cell_y))) + 1)
    cols = max(2, round(width / max(1.0, float(cell_x))) + 1)
    coarse = rng.standard_normal((rows, cols), dtype=np.float32)
    out = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    # Interpolation shrinks the variance; restore std ~1 (estimated on a sparse grid) so that
    # amplitudes below read as grey levels.
    return out * np.float32(1.0 / max(float(out[::3, ::5].std()), 1e-3))


def _background(rng: np.random.Generator, height: int, width: int) -> tuple[np.ndarray, int, int]:
    """float32 [H, W] steel-like strip; (lo, hi): the columns that are steel (defects go there)."""
    scale = height / 256  # feature sizes follow the strip height
    y = np.linspace(-0.5, 0.5, height, dtype=np.float32)[:, None]
    x = np.linspace(-0.5, 0.5, width, dtype=np.float32)[None, :]
    level = rng.uniform(75, 135)
    image = np.full((height, width), level, dtype=np.float32)
    # Slow illumination: a tilted plane plus a broad bump across the width (the lamp).
    image += rng.uniform(-25, 25) * x + rng.uniform(-15, 15) * y
    image += rng.uniform(3, 12) * _noise(rng, height, width, height * 2, width / rng.uniform(1.5, 4))
    image += rng.uniform(0, 18) * np.exp(-(((x - rng.uniform(-0.4, 0.4)) / rng.uniform(0.1, 0.4)) ** 2))
    # Rolling marks: streaks along the rolling direction (top to bottom), long and thin, whose
    # intensity fades in and out along their length; three widths, each with its own strength.
    for cell_x, amplitude in ((1, (1.0, 3.5)), (rng.uniform(3, 8), (2, 7)), (rng.uniform(25, 90), (2, 9))):
        length = rng.uniform(0.3, 2.5) * height
        image += rng.uniform(*amplitude) * _noise(rng, height, width, length, cell_x * max(scale, 0.5))
    # Grain: pixel noise and a slightly coarser speckle.
    image += rng.uniform(1.5, 4.5) * rng.standard_normal((height, width), dtype=np.float32)
    image += rng.uniform(1.0, 4.0) * _noise(rng, height, width, 3 * scale, 2.5 * scale)
    # Benign texture variation: vertically elongated stains, darker or lighter, mottled.
    if rng.random() < 0.4:
        field = _noise(rng, height, width, rng.uniform(60, 160) * scale, rng.uniform(15, 45) * scale)
        stain = 1 / (1 + np.exp(-3 * (field - rng.uniform(0.8, 1.6))))
        mottle = 1 + 0.3 * _noise(rng, height, width, 6 * scale, 2 * scale)
        image += rng.choice([-1, 1]) * rng.uniform(5, 14) * stain * mottle
    # Sometimes the strip ends inside the frame: a near-black margin at one side.
    lo, hi = 0, width
    if rng.random() < 0.12:
        edge = int(rng.uniform(0.08, 0.35) * width)
        steel = np.clip((np.arange(width, dtype=np.float32) - edge) / rng.uniform(2, 6), 0, 1)
        if rng.random() < 0.5:
            steel = steel[::-1]
            hi = width - edge - 8
        else:
            lo = edge + 8
        dark = rng.uniform(3, 10) + 1.2 * rng.standard_normal((height, width), dtype=np.float32)
        image = image * steel[None, :] + dark * (1 - steel[None, :])
    return image, lo, hi


# ---------------------------------------------------------------------------------------------
# Defects. Each renderer draws the mask first, then alpha (soft, zero outside the mask) and the
# grey-level change; `image` is the strip painted so far (float32), read for context only.


def _disk(radius: int) -> np.ndarray:
    size = 2 * int(radius) + 1
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))


def _from_strokes(class_id: int, core: np.ndarray, grow: int, blur: float, delta) -> _Defect:
    """Turn an antialiased uint8 drawing `core` [H, W] into a cropped `_Defect`: mask = the
    drawing grown by `grow` px, alpha = the drawing softened by `blur` and cut at the mask."""
    ys, xs = np.nonzero(core)
    if ys.size == 0:  # pragma: no cover - renderers always draw inside the image
        raise RuntimeError("demo renderer drew nothing")
    pad = grow + 3 * int(np.ceil(blur)) + 2
    top, bottom = max(0, ys.min() - pad), min(core.shape[0], ys.max() + pad + 1)
    left, right = max(0, xs.min() - pad), min(core.shape[1], xs.max() + pad + 1)
    crop = core[top:bottom, left:right]
    mask = cv2.dilate((crop > 0).astype(np.uint8), _disk(grow)).astype(bool) if grow else crop > 0
    alpha = crop.astype(np.float32) / 255
    if blur > 0:
        alpha = np.maximum(alpha, cv2.GaussianBlur(alpha, (0, 0), blur))
    alpha = np.where(mask, np.minimum(alpha * 1.15, 1.0), 0.0).astype(np.float32)
    if callable(delta):
        delta = delta(top, bottom, left, right)
    delta = np.broadcast_to(np.asarray(delta, dtype=np.float32), mask.shape).copy()
    return _Defect(class_id, int(top), int(left), mask, alpha, delta)


def _bezier(p0, p1, p2, n: int) -> np.ndarray:
    t = np.linspace(0, 1, n)[:, None]
    return (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t**2 * p2


def _polyline(canvas: np.ndarray, points: np.ndarray, thickness: int, value: int = 255) -> None:
    shift = 4  # sub-pixel coordinates for smooth antialiased curves
    pts = np.rint(points * (1 << shift)).astype(np.int32).reshape(-1, 1, 2)
    cv2.polylines(canvas, [pts], False, value, max(1, int(thickness)), cv2.LINE_AA, shift)


def _scratch(rng: np.random.Generator, image: np.ndarray, lo: int, hi: int) -> _Defect:
    """Class 1: long thin slightly curved lines (1-3 side by side), bright or dark."""
    height, width = image.shape
    span = hi - lo
    length = rng.uniform(0.12, 0.45) * span
    # Mostly along the strip's width, sometimes steep: any angle within +-50 degrees of
    # horizontal, which keeps scratches apart from the top-to-bottom cracks.
    angle = rng.uniform(-0.87, 0.87) if rng.random() < 0.75 else rng.uniform(-0.3, 0.3)
    direction = np.array([np.cos(angle), np.sin(angle)])
    extent = np.abs(direction) * length / 2
    centre = np.array(
        [
            rng.uniform(lo + min(extent[0], span / 2 - 1), hi - min(extent[0], span / 2 - 1)),
            rng.uniform(min(extent[1], height / 2 - 1), height - min(extent[1], height / 2 - 1)),
        ]
    )
    normal = np.array([-direction[1], direction[0]])
    bend = rng.uniform(-0.08, 0.08) * length
    core = np.zeros((height, width), np.uint8)
    n_lines = int(rng.choice([1, 2, 3], p=[0.6, 0.25, 0.15]))
    offsets = np.cumsum(rng.uniform(3, 9, size=n_lines)) * (height / 256) ** 0.5
    for number in range(n_lines):
        shrink = 1.0 if number == 0 else rng.uniform(0.4, 0.9)
        along = rng.uniform(-0.2, 0.2) * length if number else 0.0
        mid = centre + normal * (offsets[number] - offsets[0]) + direction * along
        p0 = mid - direction * length * shrink / 2
        p2 = mid + direction * length * shrink / 2
        p1 = mid + normal * bend * shrink
        points = _bezier(p0, p1, p2, 96)
        _polyline(core, points, int(rng.choice([1, 1, 2])))
    sign = -1.0 if rng.random() < 0.55 else 1.0
    amplitude = rng.uniform(35, 80)

    def delta(top, bottom, left, right):
        # Intensity fades in and out along the line: pressure of the scratching edge.
        fade = _noise(rng, bottom - top, right - left, 40, 40)
        return sign * amplitude * (0.35 + 0.65 / (1 + np.exp(-2 * fade - 1)))

    return _from_strokes(1, core, grow=1, blur=0.7, delta=delta)


def _pits(rng: np.random.Generator, image: np.ndarray, lo: int, hi: int) -> _Defect:
    """Class 2: a cluster of small dark round spots, each with a faint bright lip."""
    height, width = image.shape
    scale = max(height / 256, 0.35)
    spread = np.array([rng.uniform(12, 55), rng.uniform(8, 35)]) * scale
    keep_x = min(2 * spread[0], (hi - lo) / 2 - 1)  # keep most of the cluster inside the steel
    keep_y = min(2 * spread[1], height / 2 - 1)
    centre = np.array([rng.uniform(lo + keep_x, hi - keep_x), rng.uniform(keep_y, height - keep_y)])
    n_pits = int(rng.integers(6, 32))
    points = centre + rng.standard_normal((n_pits, 2)) * spread
    points[:, 0] = np.clip(points[:, 0], lo + 3, hi - 4)
    points[:, 1] = np.clip(points[:, 1], 3, height - 4)
    radii = np.clip(rng.gamma(3.0, 0.9, size=n_pits) * scale**0.5, 1.0, 7.0)
    depth = rng.uniform(0.55, 1.0, size=n_pits)
    core = np.zeros((height, width), np.uint8)
    shift = 4
    fixed = np.rint(np.concatenate([points, radii[:, None]], axis=1) * (1 << shift)).astype(int)
    for (px, py, radius), d in zip(fixed.tolist(), depth, strict=True):
        cv2.circle(core, (px, py), radius, int(255 * d), -1, cv2.LINE_AA, shift)
    amplitude = rng.uniform(45, 95)
    defect = _from_strokes(2, core, grow=1, blur=0.8, delta=-amplitude)
    # A bright lip on the lower-right of each pit (light from the upper left): the ring
    # between the spot and its grown mask, shifted, stays inside the mask.
    spot = defect.alpha > 0.5
    lip = defect.mask & ~spot & np.roll(np.roll(spot, 1, axis=0), 1, axis=1)
    defect.delta[lip] = amplitude * rng.uniform(0.15, 0.35)
    defect.alpha[lip] = np.maximum(defect.alpha[lip], 0.8)
    return defect


def _scale(rng: np.random.Generator, image: np.ndarray, lo: int, hi: int) -> _Defect:
    """Class 3: a large irregular patch of changed brightness with flaky texture and a rim."""
    height, width = image.shape
    span = hi - lo
    ry = rng.uniform(0.15, 0.45) * height
    rx = min(rng.uniform(0.04, 0.2) * width, span / 2 - 2)
    cx = rng.uniform(lo + rx * 0.6, hi - rx * 0.6)
    cy = rng.uniform(ry * 0.5, height - ry * 0.5)
    top, bottom = int(max(0, cy - 1.4 * ry)), int(min(height, cy + 1.4 * ry + 1))
    left, right = int(max(lo, cx - 1.4 * rx)), int(min(hi, cx + 1.4 * rx + 1))
    h, w = bottom - top, right - left
    yy = (np.arange(top, bottom, dtype=np.float32)[:, None] - cy) / ry
    xx = (np.arange(left, right, dtype=np.float32)[None, :] - cx) / rx
    distance = np.sqrt(yy**2 + xx**2)
    cell = max(4.0, min(rx, ry) / 2.5)
    field = (
        1.0
        - distance
        + 0.28 * _noise(rng, h, w, cell, cell)
        + 0.10 * _noise(rng, h, w, cell / 4, cell / 4)
        + 0.03 * rng.standard_normal((h, w), dtype=np.float32)
    )
    mask = field > 0
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if count > 1:  # keep the main body and sizeable flakes, drop specks
        keep = np.flatnonzero(stats[:, cv2.CC_STAT_AREA] >= max(12, stats[1:, cv2.CC_STAT_AREA].max() // 20))
        mask = np.isin(labels, keep[keep > 0])
    if not mask.any():  # pragma: no cover - the centre is inside unless the noise is extreme
        mask = distance < 0.8
    inside = cv2.distanceTransform(mask.astype(np.uint8), cv2.DIST_L2, 3)
    ramp = rng.uniform(1.5, 4.0)
    alpha = np.clip(inside / ramp, 0, 1).astype(np.float32)
    # Scale is mostly darker (oxide), sometimes lighter (flaked-off bright metal); its surface
    # is rough: a fine grain, lumps a few pixels across, sparse bright flakes and dark pores.
    offset = -rng.uniform(22, 55) if rng.random() < 0.75 else rng.uniform(18, 40)
    grain = rng.uniform(4, 9) * _noise(rng, h, w, 1.5, 1.5)
    lumps = rng.uniform(4, 10) * _noise(rng, h, w, rng.uniform(4, 10), rng.uniform(3, 8))
    specks = _noise(rng, h, w, 2.5, 2.5)
    flakes = rng.uniform(15, 35) * np.clip(specks - 1.6, 0, 1)  # bright, lifted
    flakes -= rng.uniform(10, 25) * np.clip(-specks - 1.8, 0, 1)  # dark pores
    rim = -rng.uniform(10, 30) * np.exp(-(inside - 1) / 1.5)
    local = image[top:bottom, left:right]
    # Contrast of the underlying steel drops inside the scale (its streaks are covered).
    flatten = rng.uniform(0.3, 0.7) * (float(local.mean()) - local)
    delta = offset + grain + lumps + flakes + rim + flatten
    alpha = np.where(mask, alpha, 0).astype(np.float32)
    return _Defect(3, top, left, mask, alpha, delta.astype(np.float32))


def _crack(rng: np.random.Generator, image: np.ndarray, lo: int, hi: int) -> _Defect:
    """Class 4: a dark jagged line, mostly top to bottom, with a few short branches."""
    height, width = image.shape
    step = max(2.0, height / 64)
    y_start = rng.uniform(-0.1, 0.25) * height
    y_end = y_start + rng.uniform(0.55, 1.15) * height
    ys = np.arange(y_start, y_end, step)
    slope = np.tan(rng.normal(0, 0.3))
    jag = rng.uniform(0.6, 1.4) * step
    # Jagged: a random walk in x with sharp turns, on top of a gentle drift.
    walk = np.cumsum(rng.standard_normal(ys.size) * jag)
    walk -= np.linspace(0, walk[-1], ys.size)  # end where the drift says
    span_x = abs(slope) * (y_end - y_start) + 3 * jag * np.sqrt(ys.size)
    margin = min(span_x / 2 + 4, (hi - lo) / 2 - 1)
    x_mid = rng.uniform(lo + margin, hi - margin)
    xs = np.clip(x_mid + slope * (ys - ys.mean()) + walk, lo + 2, hi - 3)
    main = np.stack([xs, ys], axis=1)
    core = np.zeros((height, width), np.uint8)
    thickness = np.clip(rng.normal(1.8, 0.6, size=ys.size), 1, 3).round().astype(int) * max(1, height // 256)
    for i in range(ys.size - 1):  # thickness varies along the crack
        _polyline(core, main[i : i + 2], thickness[i])
    for _ in range(int(rng.integers(1, 5))):
        start = main[rng.integers(ys.size // 6, max(ys.size // 6 + 1, ys.size - 2))]
        turn = rng.choice([-1, 1]) * rng.uniform(0.5, 1.1)
        heading = np.arctan2(1.0, slope) + turn  # angle of (dx, dy) relative to the x axis
        n_steps = int(rng.integers(4, 14))
        angles = heading + np.cumsum(rng.normal(0, 0.35, size=n_steps))
        steps = np.stack([np.cos(angles), np.sin(angles)], axis=1) * step * rng.uniform(0.8, 1.3)
        branch = start + np.concatenate([[[0, 0]], np.cumsum(steps, axis=0)])
        branch[:, 0] = np.clip(branch[:, 0], lo + 2, hi - 3)
        _polyline(core, branch, 1, value=int(rng.integers(150, 256)))
    amplitude = rng.uniform(50, 100)

    def delta(top, bottom, left, right):
        fade = _noise(rng, bottom - top, right - left, 30, 30)
        return -amplitude * (0.6 + 0.4 / (1 + np.exp(-2 * fade)))

    return _from_strokes(4, core, grow=1, blur=0.9, delta=delta)


RENDERERS = {1: _scratch, 2: _pits, 3: _scale, 4: _crack}
