"""Composing several defects into one image's masks, with the counts of the real data.

A *mask source* (real-mask bank, procedural shapes, user masks) knows how to draw one defect
of a class at a plausible place (`draw_defect`). The `MaskComposer` decides how many defects
of which classes an image gets, asks the sources for them one at a time and keeps the classes
exclusive. Counts follow the training half (`defect_count_histogram`): how many classes a
defect image has, and how many connected components each present class has. A synthetic set
whose images all hold exactly one defect would teach a segmenter that defects come alone.

Components are counted as everywhere else (`defectgen.geometry`): 8-connected, specks under
`MIN_AREA` pixels ignored.

Every source satisfies this protocol (duck-typed, nothing to inherit):

    num_classes: int                         # K, the class table's length
    class_ids: tuple[int, ...]               # the classes it can draw
    draw_defect(rng, height, width, class_id) -> bool [H, W]   # one placed defect
    draw(rng, height, width, classes=None) -> bool [K, H, W]   # a whole image's masks
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from defectgen.errors import ConfigError, DataError
from defectgen.geometry import MIN_AREA, count_components, find_components

PLACEMENT_TRIES = 5  # redraws of a defect that would touch an earlier one


def place(shape: np.ndarray, height: int, width: int, centre_y: float, centre_x: float) -> np.ndarray:
    """Put bool crop [h, w] into an empty bool [H, W] canvas, centred near (centre_y, centre_x) px.

    A crop that fits is shifted so it lies wholly inside (a defect sampled at an edge ends up
    touching that edge, as real edge defects do); a crop larger than the image along an axis is
    cut by the image border (the image is a window on a larger surface).
    """
    canvas = np.zeros((height, width), dtype=bool)
    h, w = shape.shape
    top, left = top_left((h, w), height, width, centre_y, centre_x)
    y0, x0 = max(top, 0), max(left, 0)
    y1, x1 = min(top + h, height), min(left + w, width)
    canvas[y0:y1, x0:x1] = shape[y0 - top : y1 - top, x0 - left : x1 - left]
    return canvas


def top_left(
    shape: tuple[int, int], height: int, width: int, centre_y: float, centre_x: float
) -> tuple[int, int]:
    """Where `place` puts the top-left corner of a crop of `shape` (h, w) (may be negative
    when the crop is larger than the image)."""
    h, w = shape
    return _offset(centre_y - h / 2, h, height), _offset(centre_x - w / 2, w, width)


def _offset(start: float, size: int, limit: int) -> int:
    start = int(round(start))
    if size <= limit:
        return min(max(start, 0), limit - size)
    return min(max(start, limit - size), 0)  # larger than the image: the crop covers it


def _sample(rng: np.random.Generator, histogram: np.ndarray) -> int:
    return int(rng.choice(len(histogram), p=histogram / histogram.sum()))


def _normalise(counts: np.ndarray) -> np.ndarray:
    counts = np.asarray(counts, dtype=np.float64)
    total = counts.sum(axis=-1, keepdims=True)
    return np.divide(counts, total, out=np.zeros_like(counts), where=total > 0)


@dataclass(frozen=True)
class CountDistribution:
    """How many defects a real defect image has, from the training half.

    `classes_per_image` empty means "pooled only" (a plain histogram was given): then each
    defect's class is drawn independently.
    """

    components: np.ndarray  # float64 [N+1]: P(n components, all classes) per defect image
    per_class: np.ndarray  # float64 [K, M+1]: row k-1 = P(n components of k | k present); 0-row = no data
    classes_per_image: np.ndarray  # float64 [C+1]: P(c distinct classes) per defect image; [] = pooled
    class_frequency: np.ndarray  # float64 [K]: share of defect images that contain class k
    images: int  # defect images counted

    @classmethod
    def from_counts(cls, counts: np.ndarray) -> CountDistribution:
        """int [images, K] components per class per defect image -> the distribution."""
        counts = np.asarray(counts, dtype=np.int64).reshape(len(counts), -1)
        counts = counts[counts.sum(axis=1) > 0]  # images whose masks were all specks count as free
        if len(counts) == 0:
            raise DataError("no defect components in the given items; the training half needs defect masks")
        num_classes = counts.shape[1]
        per_class = np.zeros((num_classes, int(counts.max()) + 1))
        for k in range(num_classes):
            present = counts[counts[:, k] > 0, k]
            if present.size:
                per_class[k] = _normalise(np.bincount(present, minlength=per_class.shape[1]))
        return cls(
            components=_normalise(np.bincount(counts.sum(axis=1))),
            per_class=per_class,
            classes_per_image=_normalise(np.bincount((counts > 0).sum(axis=1))),
            class_frequency=(counts > 0).mean(axis=0),
            images=len(counts),
        )

    @classmethod
    def from_histogram(cls, histogram, num_classes: int) -> CountDistribution:
        """A plain histogram P(n defects per image): classes are then drawn per defect."""
        histogram = np.asarray(histogram, dtype=np.float64)
        if histogram.ndim != 1 or (histogram < 0).any() or histogram[1:].sum() <= 0:
            raise ConfigError(
                f"a count histogram needs non-negative weights with some n >= 1, got {histogram}"
            )
        histogram = histogram.copy()
        histogram[0] = 0.0  # it describes defect images: at least one defect
        return cls(
            components=_normalise(histogram),
            per_class=np.zeros((num_classes, 1)),
            classes_per_image=np.zeros(0),
            class_frequency=np.zeros(num_classes),
            images=0,
        )

    @property
    def num_classes(self) -> int:
        return len(self.class_frequency)

    def mean_components(self) -> float:
        """Expected components per defect image (pooled over classes)."""
        return float(np.dot(np.arange(len(self.components)), self.components))

    def plan(
        self, rng: np.random.Generator, allowed: list[int], class_weights: np.ndarray | None = None
    ) -> list[tuple[int, int]]:
        """[(class_id, components wanted)] for one image; `class_weights` float [K] or None."""
        weights = class_weights if class_weights is not None else self.class_frequency
        weights = np.asarray([weights[k - 1] for k in allowed], dtype=np.float64)
        if weights.sum() <= 0:
            weights = np.ones(len(allowed))
        weights = weights / weights.sum()
        if self.classes_per_image.size == 0:
            drawn = rng.choice(allowed, size=max(_sample(rng, self.components), 1), p=weights)
            return [(int(k), 1) for k in drawn]
        how_many = min(max(_sample(rng, self.classes_per_image), 1), len(allowed))
        chosen = rng.choice(allowed, size=how_many, replace=False, p=weights)
        plan = []
        for class_id in sorted(int(k) for k in chosen):
            row = self.per_class[class_id - 1]
            plan.append((class_id, max(_sample(rng, row if row.sum() > 0 else self.components), 1)))
        return plan

    def state_dict(self) -> dict[str, np.ndarray]:
        return {
            "components": self.components,
            "per_class": self.per_class,
            "classes_per_image": self.classes_per_image,
            "class_frequency": self.class_frequency,
            "images": np.asarray(self.images),
        }

    @classmethod
    def from_state_dict(cls, state: dict) -> CountDistribution:
        return cls(
            components=np.asarray(state["components"], dtype=np.float64),
            per_class=np.asarray(state["per_class"], dtype=np.float64),
            classes_per_image=np.asarray(state["classes_per_image"], dtype=np.float64),
            class_frequency=np.asarray(state["class_frequency"], dtype=np.float64),
            images=int(state["images"]),
        )


def defect_count_histogram(dataset, indices: list[int], min_area: int = MIN_AREA) -> CountDistribution:
    """Count components per class in the defect images among `indices` (the training half).

    `.components` is the plain histogram of components per defect image; the rest keeps the
    class mix. Defect-free items are skipped without reading them.
    """
    rows = []
    for index in indices:
        if not dataset.items[index].class_ids:
            continue
        masks = dataset.load_masks(index)  # bool [K, H, W]
        rows.append([len(find_components(channel, min_area)) for channel in masks])
    if not rows:
        raise DataError(f"{dataset.spec}: the given items hold no defect images to count")
    return CountDistribution.from_counts(np.asarray(rows))


class MaskComposer:
    """Draws a whole image's masks from one or several sources.

    sources: name -> mask source (see the module docstring); all must share K.
    weights: name -> relative weight; per defect one source is picked among those that can
        draw its class (the `mix` mode). Default: equal weights.
    count_distribution: a `CountDistribution` (components per class, as in the real data), a
        plain histogram float [N+1] of components per image, or None: one `draw_defect` per
        image, kept whole however many components it has (a user's mask file).
    class_weights: class_id -> relative weight of a class when an image's classes are picked.
        Default: how often each class occurs in the real defect images (uniform without data).
    """

    def __init__(
        self,
        sources: dict,
        weights: dict[str, float] | None = None,
        count_distribution: CountDistribution | np.ndarray | list | None = None,
        class_weights: dict[int, float] | None = None,
    ):
        if not sources:
            raise ConfigError("a mask composer needs at least one mask source")
        sizes = {name: source.num_classes for name, source in sources.items()}
        if len(set(sizes.values())) != 1:
            raise ConfigError(f"mask sources disagree on the number of classes: {sizes}")
        self.sources = dict(sources)
        self.num_classes = next(iter(sizes.values()))
        weights = weights or {name: 1.0 for name in sources}
        unknown = set(weights) - set(sources)
        if unknown or any(w < 0 for w in weights.values()):
            raise ConfigError(
                f"mask source weights {weights} must be >= 0 and name sources of {list(sources)}"
            )
        self.weights = {name: float(weights.get(name, 0.0)) for name in sources}
        if count_distribution is not None and not isinstance(count_distribution, CountDistribution):
            count_distribution = CountDistribution.from_histogram(count_distribution, self.num_classes)
        self.counts: CountDistribution | None = count_distribution
        self.class_weights = None
        if class_weights is not None:
            self.class_weights = np.zeros(self.num_classes)
            for class_id, weight in class_weights.items():
                self._check_class(class_id)
                self.class_weights[class_id - 1] = weight

    @property
    def class_ids(self) -> tuple[int, ...]:
        """Classes some source with a positive weight can draw."""
        drawable = {k for name, s in self.sources.items() if self.weights[name] > 0 for k in s.class_ids}
        return tuple(sorted(drawable))

    def draw(self, rng: np.random.Generator, height: int, width: int, classes: list[int] | None = None):
        """bool [K, H, W] for one image (see `compose` for the per-defect record)."""
        return self.compose(rng, height, width, classes)[0]

    def compose(
        self,
        rng: np.random.Generator,
        height: int,
        width: int,
        classes: list[int] | None = None,
        avoid: np.ndarray | None = None,
    ) -> tuple[np.ndarray, dict]:
        """-> (masks bool [K, H, W], {"defects": [{source, class_id, area, components}], "plan": ...}).

        A defect that would touch an earlier one (overlap or 8-neighbour contact, either of
        which merges or hides components) is redrawn up to `PLACEMENT_TRIES` times, so an image
        gets the planned number of separate components; a class's progress is its component
        count in the result, and a defect with more pieces than still wanted (a pits cluster)
        keeps a random subset of them. A defect that still touches keeps only the pixels no
        other class holds: a pixel belongs to at most one class, the earlier defect wins.

        `avoid` (bool [H, W]) is where no defect may go (the defects an image already holds,
        with a margin): a defect touching it is redrawn like one touching an earlier defect,
        and one that still does loses the pixels inside it.
        """
        allowed = self._allowed(classes)
        if self.counts is None:
            weights = self.class_weights if self.class_weights is not None else np.ones(self.num_classes)
            weights = np.asarray([weights[k - 1] for k in allowed], dtype=np.float64)
            weights = (
                weights / weights.sum() if weights.sum() > 0 else np.full(len(allowed), 1 / len(allowed))
            )
            plan: list[tuple[int, int | None]] = [(int(rng.choice(allowed, p=weights)), None)]
        else:
            plan = list(self.counts.plan(rng, allowed, self.class_weights))
        masks = np.zeros((self.num_classes, height, width), dtype=bool)  # [K, H, W]
        taken = np.zeros((height, width), dtype=bool)  # any class
        near = np.zeros((height, width), dtype=bool)  # taken, grown by one pixel
        if avoid is not None:
            if np.shape(avoid) != (height, width):
                raise ValueError(f"avoid must be bool [H, W] = {(height, width)}, got {np.shape(avoid)}")
            near |= np.asarray(avoid, dtype=bool)
        defects: list[dict] = []
        for class_id, wanted in plan:
            channel = masks[class_id - 1]  # a view: painting it paints `masks`
            if wanted is None:  # one draw, whole
                self._add(rng, class_id, channel, taken, near, defects, None, avoid)
                continue
            target = count_components(channel) + wanted
            for _ in range(2 * wanted + 2):  # bounded: a source may return nothing usable
                missing = target - count_components(channel)
                if missing <= 0:
                    break
                self._add(rng, class_id, channel, taken, near, defects, missing, avoid)
        return masks, {"defects": defects, "plan": plan}

    def _add(self, rng, class_id, channel, taken, near, defects, most, avoid=None) -> None:
        """Draw one defect of `class_id` and paint it into `channel` (bool [H, W], in place),
        keeping at most `most` of its components (None: all)."""
        height, width = channel.shape
        name = self._pick_source(rng, class_id)
        for _ in range(PLACEMENT_TRIES):
            shape = self.sources[name].draw_defect(rng, height, width, class_id)  # bool [H, W]
            if not (shape & near).any():
                break
        shape &= ~(taken & ~channel)  # never paint over another class
        if avoid is not None:
            shape &= ~avoid
        pieces = find_components(shape, 1)
        if most is not None and len(pieces) > most:
            shape = np.zeros_like(shape)
            for chosen in sorted(rng.choice(len(pieces), size=most, replace=False)):
                box, crop = pieces[chosen]
                shape[box] |= crop
            pieces = pieces[:most]
        area = int(shape.sum())
        if area == 0:
            return
        channel |= shape
        taken |= shape
        near |= cv2.dilate(shape.view(np.uint8), np.ones((3, 3), np.uint8)).view(bool)  # 8-neighbours
        defects.append({"source": name, "class_id": class_id, "area": area, "components": len(pieces)})

    def _allowed(self, classes: list[int] | None) -> list[int]:
        drawable = self.class_ids
        if classes is None:
            if not drawable:
                raise ConfigError("no mask source can draw any class (all weights are zero?)")
            return list(drawable)
        classes = sorted({int(k) for k in classes})
        for class_id in classes:
            self._check_class(class_id)
        missing = [k for k in classes if k not in drawable]
        if missing or not classes:
            raise ConfigError(
                f"no mask source can draw class(es) {missing or classes}: the real training masks have no "
                f"component of them and no user mask holds them; drawable classes: {list(drawable)}"
            )
        return classes

    def _check_class(self, class_id: int) -> None:
        if not 1 <= int(class_id) <= self.num_classes:
            raise ConfigError(f"class id {class_id} is outside 1..{self.num_classes}")

    def _pick_source(self, rng: np.random.Generator, class_id: int) -> str:
        names = [n for n, s in self.sources.items() if class_id in s.class_ids and self.weights[n] > 0]
        weights = np.asarray([self.weights[n] for n in names])
        return names[int(rng.choice(len(names), p=weights / weights.sum()))]
