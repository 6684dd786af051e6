"""Procedural defect shapes, fitted to the real masks of the training half.

Real shapes are few (a magnetic tile training half has ~35 cracks); procedural shapes give
the generator masks it has never seen, with the sizes and proportions of the real ones so a
synthetic crack is still crack-sized. Four families:

- stroke: a thin, gently bending polyline (scratches, cracks);
- blob: a smoothed random polygon around an ellipse (holes, spots, chips);
- patch: a large irregular region, thresholded smooth noise inside an ellipse (uneven areas);
- pits: a cluster of 2-4 small blobs (pitting), spread like the real clusters.

`ProceduralShapes.fit` keeps, per class, a sample of the real components' (area, elongation,
orientation) triples (see `bank.shape_stats`), their normalised centres (the position prior,
as in the bank) and the component counts per image. A drawn shape takes one real triple, so
the joint distribution of size, proportion and orientation is the real one; the family adds
the outline. Each class gets one family, chosen from its median statistics (`choose_family`);
pass `families={class_id: name}` to override. Small shapes are rendered 4x (or 2x)
supersampled and cut to exactly the sampled area, so even 5-pixel pits have smooth outlines
and the sizes match the real ones.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from defectgen.errors import ConfigError, DataError
from defectgen.geometry import MIN_AREA, find_components
from defectgen.masks.bank import (
    ComponentTable,
    PositionPrior,
    downsample,
    scan_components,
    shape_stats,
    supersampling,
    threshold_to_area,
)
from defectgen.masks.compose import CountDistribution, MaskComposer, place

FAMILIES = ("stroke", "blob", "patch", "pits")
PATCH_AREA = 0.015  # median component area / image area from which a class is drawn as patches
STROKE_ELONGATION = 4.0  # median elongation (length / width) from which a class is drawn as strokes
PITS_AREA = 0.005  # pits: small (median area fraction below this) ...
PITS_COUNT = 2.5  # ... and several per image (mean components per defect image at least this)
MAX_SAMPLES = 2000  # real (area, elongation, angle) triples kept per class


def choose_family(area_fraction: float, elongation: float, mean_count: float) -> str:
    """The family of a class from its medians: large -> patch, elongated -> stroke,
    small and many per image -> pits, otherwise blob (checked in this order)."""
    if area_fraction >= PATCH_AREA:
        return "patch"
    if elongation >= STROKE_ELONGATION:
        return "stroke"
    if area_fraction < PITS_AREA and mean_count >= PITS_COUNT:
        return "pits"
    return "blob"


@dataclass(frozen=True)
class ClassShapes:
    """What is fitted for one class."""

    family: str
    samples: np.ndarray  # float32 [n, 3]: (area px, elongation, angle deg) of real components
    prior: PositionPrior
    spread: float  # px: std of component centres around their image's mean (pits clusters)


class ProceduralShapes:
    """Procedural shapes with per-class parameters fitted to real components."""

    def __init__(self, models: dict[int, ClassShapes], num_classes: int, counts: CountDistribution):
        for class_id, model in models.items():
            if model.family not in FAMILIES:
                raise ConfigError(
                    f"class {class_id}: unknown shape family {model.family!r}; use one of {FAMILIES}"
                )
        self.models = dict(models)
        self.num_classes = int(num_classes)
        self.counts = counts
        self.class_ids = tuple(sorted(models))
        self._composer = MaskComposer({"shapes": self}, count_distribution=counts)

    @classmethod
    def fit(
        cls, dataset, indices: list[int], families: dict[int, str] | None = None, progress: bool = False
    ) -> ProceduralShapes:
        """Fit to the real components of `indices` (the training half)."""
        return cls.from_table(scan_components(dataset, indices, progress=progress), families)

    @classmethod
    def from_table(
        cls, table: ComponentTable, families: dict[int, str] | None = None, seed: int = 0
    ) -> ProceduralShapes:
        """Fit to a scanned component table (shared with a `RealMaskBank` in `mix` mode).

        `seed` only picks which triples are kept when a class has more than MAX_SAMPLES.
        """
        rng = np.random.default_rng(seed)
        families = families or {}
        models = {}
        for class_id in range(1, table.num_classes + 1):
            members = table.of_class(class_id)
            if not len(members):
                continue
            if len(members) > MAX_SAMPLES:
                members = np.sort(rng.choice(members, MAX_SAMPLES, replace=False))
            samples = np.stack(
                [table.areas[members], table.elongations[members], table.angles[members]], axis=1
            ).astype(np.float32)
            fractions = table.areas[members] / table.image_sizes[members].prod(axis=1)
            row = table.counts.per_class[class_id - 1]
            mean_count = float(np.dot(np.arange(len(row)), row))
            family = families.get(class_id) or choose_family(
                float(np.median(fractions)), float(np.median(samples[:, 1])), mean_count
            )
            models[class_id] = ClassShapes(
                family=family,
                samples=samples,
                prior=PositionPrior.fit(table.centres[members], table.relative_sizes(members)),
                spread=_cluster_spread(table, class_id),
            )
        unknown = set(families) - set(models)
        if unknown:
            raise ConfigError(f"families given for classes {sorted(unknown)} that have no real component")
        return cls(models, table.num_classes, table.counts)

    def family(self, class_id: int) -> str:
        return self._model(class_id).family

    def sample_shape(self, rng: np.random.Generator, class_id: int) -> np.ndarray:
        """bool [h, w]: one unplaced shape of `class_id`."""
        model = self._model(class_id)
        if model.family == "pits":
            return _pits(rng, model)
        area, elongation, angle = (float(v) for v in model.samples[rng.integers(len(model.samples))])
        angle += rng.normal(0.0, 10.0)  # a real orientation, not exactly
        return _render(rng, model.family, area, max(elongation, 1.0), angle)

    def draw_defect(self, rng: np.random.Generator, height: int, width: int, class_id: int) -> np.ndarray:
        """bool [H, W]: one shape of `class_id` placed by the class's position prior."""
        shape = self.sample_shape(rng, class_id)
        y, x = self._model(class_id).prior.sample(rng, (shape.shape[0] / height, shape.shape[1] / width))
        return place(shape, height, width, y * height, x * width)

    def draw(self, rng: np.random.Generator, height: int, width: int, classes: list[int] | None = None):
        """bool [K, H, W]: an image's defects, counts as in the fitted data."""
        return self._composer.draw(rng, height, width, classes)

    def fit_report(self, samples: int = 500, seed: int = 0) -> dict[int, dict]:
        """Per class: family, and area quantiles (p10/p50/p90, px) and median elongation of the
        real components vs at least `samples` sampled components, to judge the fit."""
        rng = np.random.default_rng(seed)
        report = {}
        for class_id, model in self.models.items():
            areas: list[int] = []
            elongations: list[float] = []
            for _ in range(50 * samples):  # bounded even if a shape came out empty
                if len(areas) >= samples:
                    break
                for _box, crop in find_components(self.sample_shape(rng, class_id), MIN_AREA):
                    areas.append(int(crop.sum()))
                    elongations.append(shape_stats(crop)[0])
            report[class_id] = {
                "family": model.family,
                "real_components": len(model.samples),
                "real_area": _quantiles(model.samples[:, 0]),
                "sampled_area": _quantiles(np.asarray(areas[:samples])),
                "real_elongation_p50": round(float(np.median(model.samples[:, 1])), 2),
                "sampled_elongation_p50": round(float(np.median(elongations[:samples])), 2),
            }
        return report

    def state_dict(self) -> dict[str, np.ndarray]:
        """Plain numpy arrays (np.savez without pickle can hold it)."""
        ids = list(self.class_ids)
        state = {
            "num_classes": np.asarray(self.num_classes),
            "class_ids": np.asarray(ids, dtype=np.int64),
            "families": np.asarray([FAMILIES.index(self.models[k].family) for k in ids], dtype=np.int64),
            "spreads": np.asarray([self.models[k].spread for k in ids], dtype=np.float64),
            "bandwidths": np.stack([self.models[k].prior.bandwidth for k in ids]),
            "sample_counts": np.asarray([len(self.models[k].samples) for k in ids], dtype=np.int64),
            "samples": np.concatenate([self.models[k].samples for k in ids]),
            "centre_counts": np.asarray([len(self.models[k].prior.centres) for k in ids], dtype=np.int64),
            "centres": np.concatenate([self.models[k].prior.centres for k in ids]),
            "sizes": np.concatenate([self.models[k].prior.sizes for k in ids]),
        }
        state.update({f"counts.{k}": v for k, v in self.counts.state_dict().items()})
        return state

    @classmethod
    def from_state_dict(cls, state: dict) -> ProceduralShapes:
        samples = np.split(state["samples"], np.cumsum(state["sample_counts"])[:-1])
        centres = np.split(state["centres"], np.cumsum(state["centre_counts"])[:-1])
        sizes = np.split(state["sizes"], np.cumsum(state["centre_counts"])[:-1])
        models = {}
        for i, class_id in enumerate(int(k) for k in state["class_ids"]):
            models[class_id] = ClassShapes(
                family=FAMILIES[int(state["families"][i])],
                samples=np.asarray(samples[i], dtype=np.float32),
                prior=PositionPrior(
                    np.asarray(centres[i], dtype=np.float32),
                    np.asarray(sizes[i], dtype=np.float32),
                    np.asarray(state["bandwidths"][i], dtype=np.float32),
                ),
                spread=float(state["spreads"][i]),
            )
        counts = {k[len("counts.") :]: v for k, v in state.items() if k.startswith("counts.")}
        return cls(models, int(state["num_classes"]), CountDistribution.from_state_dict(counts))

    def _model(self, class_id: int) -> ClassShapes:
        try:
            return self.models[class_id]
        except KeyError:
            raise DataError(
                f"no procedural shape was fitted for class {class_id} (no real component)"
            ) from None


def _quantiles(values: np.ndarray) -> dict[str, float]:
    if values.size == 0:
        return {"p10": 0.0, "p50": 0.0, "p90": 0.0}
    p10, p50, p90 = np.percentile(values, [10, 50, 90])
    return {"p10": round(float(p10), 1), "p50": round(float(p50), 1), "p90": round(float(p90), 1)}


def _cluster_spread(table: ComponentTable, class_id: int) -> float:
    """Median over images with >= 2 components of `class_id` of the px std of their centres."""
    members = table.of_class(class_id)
    centres = table.centres[members] * table.image_sizes[members]  # px (y, x)
    spreads = []
    for item in np.unique(table.items[members]):
        group = centres[table.items[members] == item]
        if len(group) >= 2:
            spreads.append(float(np.sqrt(group.var(axis=0).mean())))
    if spreads:
        return float(np.median(spreads))
    return 3.0 * float(np.sqrt(np.median(table.areas[members])))


def _render(
    rng: np.random.Generator, family: str, area: float, elongation: float, angle: float
) -> np.ndarray:
    """bool [h, w] of one stroke / blob / patch with `area` px, drawn supersampled."""
    factor = supersampling(area)
    big_area = area * factor**2
    if family == "stroke":
        canvas = _stroke(rng, big_area, elongation, angle)
    elif family == "blob":
        canvas = _blob(rng, big_area, elongation, angle)
    else:
        canvas = _patch(rng, big_area, elongation, angle)
    # Distance to the background ranks pixels from the core outwards: the exact-area cut then
    # trims the outline evenly (round caps and joints of a thick polyline add area).
    inside = cv2.distanceTransform((canvas > 0).astype(np.uint8), cv2.DIST_L2, 3)
    return threshold_to_area(downsample(inside, factor), round(area), pieces=1)


def _stroke(rng: np.random.Generator, area: float, elongation: float, angle: float) -> np.ndarray:
    """float32 canvas: a polyline of 4 segments whose heading drifts by ~8° per segment.
    An L x W rectangle has elongation L / W and area L W, hence L and W below."""
    thickness = max(1, int(round(np.sqrt(area / elongation))))
    length = max(area / thickness, float(thickness))
    headings = np.radians(angle + np.cumsum(rng.normal(0.0, 8.0, size=4)))
    steps = np.stack([np.cos(headings), np.sin(headings)], axis=1) * (length / 4)  # (x, y)
    points = np.concatenate([np.zeros((1, 2)), np.cumsum(steps, axis=0)])
    return _polyline_canvas(points, thickness)


def _polyline_canvas(points: np.ndarray, thickness: int) -> np.ndarray:
    margin = thickness + 2
    points = points - points.min(axis=0) + margin
    w, h = (np.ceil(points.max(axis=0)) + margin).astype(int)
    canvas = np.zeros((h, w), dtype=np.float32)
    cv2.polylines(canvas, [np.round(points).astype(np.int32)], False, 1.0, thickness=thickness)
    return canvas


def _blob(rng: np.random.Generator, area: float, elongation: float, angle: float) -> np.ndarray:
    """float32 canvas: an ellipse of the area and elongation whose radius wobbles with three
    random low harmonics (a smoothed random polygon), rotated to `angle`."""
    a = np.sqrt(area * elongation / np.pi)
    b = np.sqrt(area / (np.pi * elongation))
    phi = np.linspace(0.0, 2 * np.pi, 32, endpoint=False)
    radius = np.ones_like(phi)
    for harmonic in (2, 3, 4):
        radius += rng.uniform(0.0, 0.12) * np.cos(harmonic * phi + rng.uniform(0.0, 2 * np.pi))
    x, y = a * radius * np.cos(phi), b * radius * np.sin(phi)
    theta = np.radians(angle)
    rotated = np.stack([x * np.cos(theta) - y * np.sin(theta), x * np.sin(theta) + y * np.cos(theta)], axis=1)
    margin = 2
    rotated = rotated - rotated.min(axis=0) + margin
    w, h = (np.ceil(rotated.max(axis=0)) + margin).astype(int)
    canvas = np.zeros((h, w), dtype=np.float32)
    cv2.fillPoly(canvas, [np.round(rotated).astype(np.int32)], 1.0)
    return canvas


def _patch(rng: np.random.Generator, area: float, elongation: float, angle: float) -> np.ndarray:
    """float32 field: an elliptic dome of the area and elongation plus smooth noise, so the
    area-threshold cuts an irregular outline; only its largest piece is kept."""
    a = np.sqrt(area * elongation / np.pi) * 1.4
    b = np.sqrt(area / (np.pi * elongation)) * 1.4
    theta = np.radians(angle)
    half_w = int(np.ceil(abs(a * np.cos(theta)) + abs(b * np.sin(theta)))) + 1
    half_h = int(np.ceil(abs(a * np.sin(theta)) + abs(b * np.cos(theta)))) + 1
    ys, xs = np.mgrid[-half_h : half_h + 1, -half_w : half_w + 1].astype(np.float32)
    u = (xs * np.cos(theta) + ys * np.sin(theta)) / a
    v = (-xs * np.sin(theta) + ys * np.cos(theta)) / b
    noise = rng.uniform(-1.0, 1.0, size=(6, 6)).astype(np.float32)
    noise = cv2.resize(noise, (xs.shape[1], xs.shape[0]), interpolation=cv2.INTER_CUBIC)
    field = np.clip(1.0 - (u**2 + v**2) + 0.45 * noise, 0.0, None).astype(np.float32)
    keep = threshold_to_area(field, round(area))  # largest piece of the exact-area cut
    pieces = find_components(keep, 1)
    if len(pieces) > 1:
        box, crop = max(pieces, key=lambda piece: int(piece[1].sum()))
        keep = np.zeros_like(keep)
        keep[box] = crop
    return keep.astype(np.float32)


def _pits(rng: np.random.Generator, model: ClassShapes) -> np.ndarray:
    """bool [h, w]: 2-4 small blobs scattered with the class's real cluster spread."""
    dots = []
    for _ in range(int(rng.integers(2, 5))):
        area, elongation, angle = (float(v) for v in model.samples[rng.integers(len(model.samples))])
        dots.append(_render(rng, "blob", area, max(elongation, 1.0), angle + rng.normal(0.0, 10.0)))
    offsets = rng.normal(0.0, model.spread, size=(len(dots), 2))  # px (y, x) of each dot's centre
    tops = np.round(offsets - [[d.shape[0] / 2, d.shape[1] / 2] for d in dots]).astype(int)
    bottoms = tops + [d.shape for d in dots]
    origin = tops.min(axis=0)
    h, w = bottoms.max(axis=0) - origin
    canvas = np.zeros((h, w), dtype=bool)
    for dot, (top, left) in zip(dots, tops - origin, strict=True):
        canvas[top : top + dot.shape[0], left : left + dot.shape[1]] |= dot
    return canvas
