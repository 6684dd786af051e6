"""Real mask shapes, re-placed and varied: the most realistic mask source.

`scan_components` reads the training half's masks once and keeps every connected component
of every class as a tight crop (bit-packed: the 5,175 components of 1,630 Severstal
training images take 8 MB), with its bounding-box centre normalised by the image size
(y/H, x/W), the image size, the borders it touches and shape statistics (area, elongation,
orientation) that `ProceduralShapes` fits to.

`RealMaskBank.draw_defect` picks a component of the class, varies it (flips, rotation within
±15°, isotropic scale 0.8–1.25, a smooth elastic warp) and places it at a position drawn from
the class's *position prior*: a kernel density estimate over the real normalised centres of
components of similar relative size (`PositionPrior`). Defects are not uniformly placed
(Severstal class 4 favours certain rows, magnetic tile frays sit at tile edges), and a
segmenter trained on uniformly placed synthetic defects would learn a wrong prior. Shapes
and places of similar-sized components recombine. A component cut by the image border keeps
its straight cut edge on a border (no rotation or warp; flips move it to the opposite one).

Sizes stay in pixels: a component keeps its pixel size (times the scale variation) on an
image of another size, because images of one dataset share a resolution, not a field of
view. A crop larger than the target image is cut by the border (see `compose.place`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from defectgen import ui
from defectgen.errors import DataError
from defectgen.geometry import MIN_AREA, count_components, find_components
from defectgen.masks.compose import CountDistribution, MaskComposer, place

TOP, BOTTOM, LEFT, RIGHT = 1, 2, 4, 8  # ComponentTable.borders bits
MIN_BANDWIDTH = 0.02  # of the image size: keeps a prior learned from one defect from being a point


def shape_stats(crop: np.ndarray) -> tuple[float, float]:
    """bool [h, w] -> (elongation >= 1, orientation in degrees [-90, 90)), from image moments.

    Elongation is sqrt(major / minor) eigenvalue of the pixel covariance (each pixel counted
    as a unit square, hence + 1/12), which is L / W for an L x W rectangle. Orientation is
    the major axis's angle from +x towards +y (image rows grow downwards).
    """
    ys, xs = np.nonzero(crop)
    cyy, cxx = ys.var() + 1 / 12, xs.var() + 1 / 12
    cxy = float(np.mean((ys - ys.mean()) * (xs - xs.mean())))
    spread = np.sqrt(((cxx - cyy) / 2) ** 2 + cxy**2)
    major, minor = (cxx + cyy) / 2 + spread, (cxx + cyy) / 2 - spread
    angle = np.degrees(0.5 * np.arctan2(2 * cxy, cxx - cyy))
    angle = (angle + 90.0) % 180.0 - 90.0
    return float(np.sqrt(major / max(minor, 1e-6))), float(angle)


@dataclass(frozen=True)
class PositionPrior:
    """Gaussian KDE over the normalised centres of one class, conditioned on size.

    `sample(rng, size)` draws the centre of one of the real components closest in relative
    size (h/H, w/W) to `size` (the nearest tenth, at least 5), plus Gaussian jitter with
    Scott's bandwidth. Conditioning matters because where a defect can sit depends on how
    large it is: a Severstal patch spanning the strip's height is centred on the middle row,
    while small ones reach the edges; an unconditioned prior pushes large shapes against the
    border and piles them up in the middle after clamping.
    """

    centres: np.ndarray  # float32 [N, 2] (y/H, x/W) in [0, 1]
    sizes: np.ndarray  # float32 [N, 2] relative size (h/H, w/W) of each component
    bandwidth: np.ndarray  # float32 [2]

    @classmethod
    def fit(cls, centres: np.ndarray, sizes: np.ndarray) -> PositionPrior:
        centres = np.asarray(centres, dtype=np.float32).reshape(-1, 2)
        sizes = np.asarray(sizes, dtype=np.float32).reshape(-1, 2)
        if len(centres) < 2:
            bandwidth = np.full(2, 0.1 if len(centres) else 0.5, dtype=np.float32)
        else:
            bandwidth = centres.std(axis=0) * len(centres) ** (-1 / 6)  # Scott, d = 2
        return cls(centres, sizes, np.maximum(bandwidth, MIN_BANDWIDTH).astype(np.float32))

    def sample(
        self, rng: np.random.Generator, size: tuple[float, float] | None = None
    ) -> tuple[float, float]:
        """A normalised (y, x) centre for a shape of relative `size` (h/H, w/W), or for any
        size when None; uniform when the class has no real centre."""
        count = len(self.centres)
        if count == 0:
            y, x = rng.random(2)
            return float(y), float(x)
        if size is None or count <= 5:
            pick = int(rng.integers(count))
        else:
            gap = np.abs(np.log(np.maximum(self.sizes, 1e-4)) - np.log(np.maximum(size, 1e-4))).sum(axis=1)
            nearest = np.argpartition(gap, max(5, count // 10) - 1)[: max(5, count // 10)]
            pick = int(nearest[rng.integers(len(nearest))])
        centre = self.centres[pick] + rng.normal(size=2) * self.bandwidth
        centre = 1.0 - np.abs(1.0 - np.abs(centre))  # reflect at 0 and 1
        y, x = np.clip(centre, 0.0, 1.0)
        return float(y), float(x)


@dataclass(frozen=True)
class ComponentTable:
    """Every real component of the scanned items, crops bit-packed one after another."""

    num_classes: int
    class_ids: np.ndarray  # int16 [N]
    items: np.ndarray  # int32 [N]: dataset index of the component's image
    shapes: np.ndarray  # int32 [N, 2] crop (h, w)
    centres: np.ndarray  # float32 [N, 2] bounding-box centre (y/H, x/W) in its image
    image_sizes: np.ndarray  # int32 [N, 2] (H, W) of its image
    borders: np.ndarray  # uint8 [N]: image borders it touches, TOP | BOTTOM | LEFT | RIGHT bits
    areas: np.ndarray  # int64 [N] pixels
    elongations: np.ndarray  # float32 [N], see shape_stats
    angles: np.ndarray  # float32 [N] degrees, see shape_stats
    bits: np.ndarray  # uint8 [total]: np.packbits of each crop, concatenated
    offsets: np.ndarray  # int64 [N+1]: crop i is bits[offsets[i]:offsets[i+1]]
    counts: CountDistribution  # components per defect image

    def __len__(self) -> int:
        return len(self.class_ids)

    def crop(self, index: int) -> np.ndarray:
        """bool [h, w] of component `index`."""
        h, w = (int(v) for v in self.shapes[index])
        packed = self.bits[self.offsets[index] : self.offsets[index + 1]]
        return np.unpackbits(packed, count=h * w).reshape(h, w).astype(bool)

    def box(self, index: int) -> tuple[slice, slice]:
        """The bounding box (rows, cols) of component `index` in its image."""
        h, w = (int(v) for v in self.shapes[index])
        height, width = (int(v) for v in self.image_sizes[index])
        top = int(round(float(self.centres[index, 0]) * height - h / 2))
        left = int(round(float(self.centres[index, 1]) * width - w / 2))
        return slice(top, top + h), slice(left, left + w)

    def relative_sizes(self, members: np.ndarray) -> np.ndarray:
        """float32 [n, 2]: (h/H, w/W) of components `members`."""
        return (self.shapes[members] / self.image_sizes[members]).astype(np.float32)

    def of_class(self, class_id: int) -> np.ndarray:
        """int [n]: indices of the components of `class_id`."""
        return np.flatnonzero(self.class_ids == class_id)

    def state_dict(self) -> dict[str, np.ndarray]:
        state = {name: getattr(self, name) for name in _TABLE_ARRAYS}
        state["num_classes"] = np.asarray(self.num_classes)
        state.update({f"counts.{k}": v for k, v in self.counts.state_dict().items()})
        return state

    @classmethod
    def from_state_dict(cls, state: dict) -> ComponentTable:
        counts = {k[len("counts.") :]: v for k, v in state.items() if k.startswith("counts.")}
        return cls(
            num_classes=int(state["num_classes"]),
            counts=CountDistribution.from_state_dict(counts),
            **{name: np.asarray(state[name]) for name in _TABLE_ARRAYS},
        )


_TABLE_ARRAYS = (
    "class_ids",
    "items",
    "shapes",
    "centres",
    "image_sizes",
    "borders",
    "areas",
    "elongations",
    "angles",
    "bits",
    "offsets",
)


def scan_components(
    dataset, indices: list[int], *, min_area: int = MIN_AREA, progress: bool = False
) -> ComponentTable:
    """Read the masks of the defect items among `indices` once and table their components.

    Defect-free items are skipped unread. Raises DataError when no component is found.
    """
    defect_indices = [i for i in indices if dataset.items[i].class_ids]
    rows: list[tuple] = []
    packed: list[np.ndarray] = []
    counts: list[list[int]] = []
    steps = ui.track(
        defect_indices, description="scanning defect masks", transient=True, disable=not progress
    )
    for index in steps:
        masks = dataset.load_masks(index)  # bool [K, H, W]
        height, width = masks.shape[1:]
        per_class = []
        for class_id, channel in enumerate(masks, start=1):
            found = find_components(channel, min_area)
            per_class.append(len(found))
            for (rows_slice, cols_slice), crop in found:
                centre = (
                    (rows_slice.start + rows_slice.stop) / 2 / height,
                    (cols_slice.start + cols_slice.stop) / 2 / width,
                )
                elongation, angle = shape_stats(crop)
                borders = (
                    TOP * (rows_slice.start == 0)
                    | BOTTOM * (rows_slice.stop == height)
                    | LEFT * (cols_slice.start == 0)
                    | RIGHT * (cols_slice.stop == width)
                )
                shape_row = (class_id, index, crop.shape, centre, (height, width), borders)
                rows.append((*shape_row, int(crop.sum()), elongation, angle))
                packed.append(np.packbits(crop, axis=None))
        counts.append(per_class)
    if not rows:
        raise DataError(
            f"{dataset.spec}: no defect component of at least {min_area} pixels in the {len(defect_indices)} "
            "defect images given; check the masks (are they empty, or is the split's training half wrong?)"
        )
    sizes = np.asarray([len(p) for p in packed], dtype=np.int64)
    return ComponentTable(
        num_classes=len(dataset.classes),
        class_ids=np.asarray([r[0] for r in rows], dtype=np.int16),
        items=np.asarray([r[1] for r in rows], dtype=np.int32),
        shapes=np.asarray([r[2] for r in rows], dtype=np.int32),
        centres=np.asarray([r[3] for r in rows], dtype=np.float32),
        image_sizes=np.asarray([r[4] for r in rows], dtype=np.int32),
        borders=np.asarray([r[5] for r in rows], dtype=np.uint8),
        areas=np.asarray([r[6] for r in rows], dtype=np.int64),
        elongations=np.asarray([r[7] for r in rows], dtype=np.float32),
        angles=np.asarray([r[8] for r in rows], dtype=np.float32),
        bits=np.concatenate(packed),
        offsets=np.concatenate([[0], np.cumsum(sizes)]),
        counts=CountDistribution.from_counts(np.asarray(counts)),
    )


def random_flips(
    rng: np.random.Generator, crop: np.ndarray, borders: int = 0
) -> tuple[np.ndarray, int, tuple[bool, bool]]:
    """Flip `crop` ([h, w, ...]) left-right, then top-bottom, each with probability 1/2 (two
    draws from `rng`, always made). Returns (crop, borders after the flips, (lr, tb) done)."""
    left_right, top_bottom = bool(rng.random() < 0.5), bool(rng.random() < 0.5)
    if left_right:
        crop = crop[:, ::-1]
        borders = (
            (borders & ~(LEFT | RIGHT)) | (LEFT if borders & RIGHT else 0) | (RIGHT if borders & LEFT else 0)
        )
    if top_bottom:
        crop = crop[::-1, :]
        borders = (
            (borders & ~(TOP | BOTTOM)) | (TOP if borders & BOTTOM else 0) | (BOTTOM if borders & TOP else 0)
        )
    return crop, borders, (left_right, top_bottom)


def prior_centre(
    rng: np.random.Generator,
    prior: PositionPrior,
    shape: tuple[int, int],
    borders: int,
    height: int,
    width: int,
) -> tuple[float, float]:
    """Centre (y, x) in pixels for a component of `shape` (h, w) on a height x width image:
    drawn from the class `prior`, except that a component cut by image borders goes back
    against the same borders (a cut edge in mid-image is a shape no real defect has)."""
    h, w = shape
    y, x = prior.sample(rng, (h / height, w / width))
    y, x = y * height, x * width
    if borders & (TOP | BOTTOM) != TOP | BOTTOM:
        y = h / 2 if borders & TOP else height - h / 2 if borders & BOTTOM else y
    if borders & (LEFT | RIGHT) != LEFT | RIGHT:
        x = w / 2 if borders & LEFT else width - w / 2 if borders & RIGHT else x
    return y, x


def rotate_scale(crop: np.ndarray, angle: float, scale: float, margin: int = 0) -> np.ndarray:
    """float32 [h, w] -> float32 [h', w'] rotated by `angle` degrees (counter-clockwise on
    screen) and scaled about its centre, on a canvas that holds all of it plus `margin`."""
    h, w = crop.shape
    cos, sin = abs(np.cos(np.radians(angle))), abs(np.sin(np.radians(angle)))
    out_w = int(np.ceil(scale * (w * cos + h * sin))) + 2 * margin + 2
    out_h = int(np.ceil(scale * (h * cos + w * sin))) + 2 * margin + 2
    matrix = cv2.getRotationMatrix2D((w / 2, h / 2), angle, scale)
    matrix[:, 2] += (out_w / 2 - w / 2, out_h / 2 - h / 2)
    return cv2.warpAffine(crop, matrix, (out_w, out_h), flags=cv2.INTER_LINEAR, borderValue=0.0)


def elastic(rng: np.random.Generator, image: np.ndarray, amplitude: float, grid: int = 4) -> np.ndarray:
    """Smooth random warp of float32 [h, w] (Simard et al. 2003, with a coarse grid for speed).

    Random displacements of up to `amplitude` px on a `grid` x `grid` lattice over the square
    that holds the crop (side = its longer side) are upsampled bicubically, and the crop's
    part of the square is used: neighbouring pixels move together on the scale of the whole
    shape, so a thin scratch bends without folding onto itself or changing its width.
    """
    h, w = image.shape
    side = max(h, w)
    resolution = min(side, 256)  # the field is smooth: a coarse raster is enough

    def window(extent: int) -> tuple[int, int]:
        start = int((side - extent) / 2 / side * resolution)
        return start, max(start + 1, int(round((side + extent) / 2 / side * resolution)))

    (y0, y1), (x0, x1) = window(h), window(w)
    coarse = rng.uniform(-1.0, 1.0, size=(2, grid, grid)).astype(np.float32) * amplitude
    dx, dy = (
        cv2.resize(
            cv2.resize(c, (resolution, resolution), interpolation=cv2.INTER_CUBIC)[y0:y1, x0:x1],
            (w, h),
            interpolation=cv2.INTER_LINEAR,
        )
        for c in coarse
    )
    xs, ys = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    return cv2.remap(image, xs + dx, ys + dy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def supersampling(pixels: float) -> int:
    """Supersampling factor for warping or rendering a shape of `pixels` pixels: fine for
    small shapes, none for large ones whose outline is already many pixels long."""
    return 4 if pixels < 2_000 else 2 if pixels < 20_000 else 1


def downsample(values: np.ndarray, factor: int) -> np.ndarray:
    """float32 [h, w] -> [ceil(h / f), ceil(w / f)]: mean of each f x f block (zero-padded)."""
    if factor == 1:
        return values
    h, w = values.shape
    padded = np.zeros((-(-h // factor) * factor, -(-w // factor) * factor), dtype=np.float32)
    padded[:h, :w] = values
    return padded.reshape(padded.shape[0] // factor, factor, padded.shape[1] // factor, factor).mean(
        axis=(1, 3)
    )


def threshold_to_area(values: np.ndarray, area: int, pieces: int | None = None) -> np.ndarray:
    """bool mask of the `area` largest positive entries of float `values` (ties kept), cropped
    to its bounding box. Thresholding at the area quantile instead of 0.5 keeps sizes exact
    under any scale; with `pieces`, the threshold is lowered until the mask has at most that
    many 8-connected components: the bilinear weights along a rotated 1-px scratch rise and
    fall, and a pure area cut would break it into dashes."""
    positive = values[values > 0]
    if positive.size == 0:
        return np.zeros((1, 1), dtype=bool)
    area = int(np.clip(area, 1, positive.size))
    cut = max(float(np.partition(positive, positive.size - area)[positive.size - area]), 1e-3)
    mask = values >= cut
    if pieces is not None:
        floor = max(float(positive.min()), 1e-3)
        while cut > floor and count_components(mask) > pieces:
            cut = max(cut * 0.8, floor)
            mask = values >= cut
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return mask[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]


def _stretch(shape: np.ndarray, height: int, width: int) -> np.ndarray:
    """bool [h, w] -> bool [height, width], nearest neighbour."""
    return cv2.resize(shape.astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST).astype(bool)


class RealMaskBank:
    """Real components, varied and re-placed (module docstring says how and why).

    flip: random horizontal and vertical flips. max_rotation: degrees, uniform in ±this.
    scale_range: isotropic scale, log-uniform. elastic_strength: warp amplitude as a fraction
    of the crop's longer side (0 disables).
    """

    def __init__(
        self,
        table: ComponentTable,
        *,
        flip: bool = True,
        max_rotation: float = 15.0,
        scale_range: tuple[float, float] = (0.8, 1.25),
        elastic_strength: float = 0.04,
    ):
        if not 0 < scale_range[0] <= scale_range[1]:
            raise ValueError(f"scale_range must be 0 < low <= high, got {scale_range}")
        self.table = table
        self.flip = bool(flip)
        self.max_rotation = float(max_rotation)
        self.scale_range = (float(scale_range[0]), float(scale_range[1]))
        self.elastic_strength = float(elastic_strength)
        self.num_classes = table.num_classes
        self._members = {k: table.of_class(k) for k in range(1, self.num_classes + 1)}
        self.class_ids = tuple(k for k, members in self._members.items() if len(members))
        self.priors = {
            k: PositionPrior.fit(table.centres[m], table.relative_sizes(m)) for k, m in self._members.items()
        }
        self._composer = MaskComposer({"real": self}, count_distribution=table.counts)

    @classmethod
    def from_dataset(cls, dataset, indices: list[int], progress: bool = True, **variation) -> RealMaskBank:
        """Scan the masks of `indices` (the training half) into a bank."""
        return cls(scan_components(dataset, indices, progress=progress), **variation)

    @property
    def counts(self) -> CountDistribution:
        return self.table.counts

    def vary(self, rng: np.random.Generator, crop: np.ndarray, borders: int = 0) -> tuple[np.ndarray, int]:
        """bool [h, w] -> (bool [h', w'], borders after flips): flipped, rotated, scaled,
        warped; area = old area x scale². A component cut by the image border (`borders` != 0)
        is only flipped and scaled, so its cut edge stays straight and can sit on a border."""
        if self.flip:
            crop, borders, _ = random_flips(rng, crop, borders)
        angle = 0.0 if borders else rng.uniform(-self.max_rotation, self.max_rotation)
        low, high = np.log(self.scale_range)
        scale = float(np.exp(rng.uniform(low, high)))
        # Warp `factor`x supersampled and average back down: the coverage of a thin scratch
        # then peaks on one pixel per column, so the area cut keeps it thin and whole.
        factor = supersampling(crop.size)
        h, w = crop.shape
        big = cv2.resize(crop.astype(np.float32), (w * factor, h * factor), interpolation=cv2.INTER_NEAREST)
        amplitude = 0.0 if borders else self.elastic_strength * max(big.shape) * scale
        warped = rotate_scale(big, angle, scale, int(np.ceil(amplitude)))
        if amplitude > 0:
            warped = elastic(rng, warped, amplitude)
        warped = downsample(warped, factor)
        area = round(int(crop.sum()) * scale**2)
        return threshold_to_area(warped, area, pieces=count_components(crop)), borders

    def draw_defect(self, rng: np.random.Generator, height: int, width: int, class_id: int) -> np.ndarray:
        """bool [H, W]: one varied real component of `class_id`, placed by the class prior.

        A component that was cut by image borders is put back against the same borders
        (after flips), and one that spanned the image's height or width is stretched to span
        the new image's: a cut edge in mid-image would be a shape no real defect has.
        """
        members = self._members.get(class_id)
        if members is None or not len(members):
            raise DataError(f"the mask bank has no component of class {class_id}")
        index = int(members[rng.integers(len(members))])
        shape, borders = self.vary(rng, self.table.crop(index), int(self.table.borders[index]))
        if borders & TOP and borders & BOTTOM:
            shape = _stretch(shape, height, shape.shape[1])
        if borders & LEFT and borders & RIGHT:
            shape = _stretch(shape, shape.shape[0], width)
        y, x = prior_centre(rng, self.priors[class_id], shape.shape, borders, height, width)
        return place(shape, height, width, y, x)

    def draw(self, rng: np.random.Generator, height: int, width: int, classes: list[int] | None = None):
        """bool [K, H, W]: an image's defects, counts as in the scanned data."""
        return self._composer.draw(rng, height, width, classes)

    def state_dict(self) -> dict[str, np.ndarray]:
        """Plain numpy arrays only (np.savez without pickle can hold it)."""
        state = self.table.state_dict()
        state["variation"] = np.asarray(
            [float(self.flip), self.max_rotation, *self.scale_range, self.elastic_strength], dtype=np.float64
        )
        return state

    @classmethod
    def from_state_dict(cls, state: dict) -> RealMaskBank:
        flip, max_rotation, low, high, strength = (float(v) for v in state["variation"])
        return cls(
            ComponentTable.from_state_dict(state),
            flip=bool(flip),
            max_rotation=max_rotation,
            scale_range=(low, high),
            elastic_strength=strength,
        )

    def save(self, path: str | Path) -> None:
        np.savez_compressed(Path(path), **self.state_dict())

    @classmethod
    def load(cls, path: str | Path) -> RealMaskBank:
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as data:
                return cls.from_state_dict({k: data[k] for k in data.files})
        except (OSError, KeyError, ValueError) as err:
            raise DataError(
                f"{path}: not a readable mask bank ({err}); save one with RealMaskBank.save"
            ) from err
