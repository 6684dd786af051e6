"""Defect severity: how strongly a defect stands out from the surface around it, as a quantile.

A defect's *contrast* is the absolute difference between the mean grey level of its pixels and
the mean grey level of a ring `RING_PX` wide around it (other defects' pixels left out), in
[0, 1] intensity units. Its *severity* is the rank of that contrast among the training half's
defects of the same class: 0 the faintest, 1 the strongest, so "0.9" means the same thing for
every class and every dataset, and drawing severities uniformly from [0, 1] reproduces the real
distribution.

A generator built with `model.generator.severity=true` takes a severity map as one more input
channel (each defect's severity on its pixels, 0 elsewhere). In training the map holds the
severity of the real defect it must repaint; `synth --severity LOW:HIGH` draws one per new
defect. The table of contrasts per class (`SeverityTable`) is what turns a measured contrast
into a severity and back.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from defectgen.geometry import components, dilate

RING_PX = 4  # width of the ring of surface a defect is compared with
QUANTILES = 101  # points kept per class in the table
DEFAULT_SEVERITY = 0.5  # what a severity-conditioned generator is told when no map is given
MIN_RING_PIXELS = 4  # a defect with less visible surface around it has no measurable contrast
TIE = 1e-6  # contrasts this close are equal (the table keeps 6 decimals)


def grey(image: np.ndarray) -> np.ndarray:
    """float32 [H, W] in [0, 1]: the mean over channels of a uint8 [H, W, C] image."""
    return image.astype(np.float32).mean(axis=2) / 255.0


def contrast(grey_image: np.ndarray, defect: np.ndarray, others: np.ndarray | None = None) -> float:
    """|mean grey inside bool `defect` [H, W] - mean grey of the ring around it| (NaN when the
    ring, minus `others` (bool [H, W], e.g. every defect's pixels), has under MIN_RING_PIXELS)."""
    ring = dilate(defect, RING_PX).astype(bool) & ~defect
    if others is not None:
        ring &= ~others
    if ring.sum() < MIN_RING_PIXELS or not defect.any():
        return float("nan")
    return float(abs(grey_image[defect].mean() - grey_image[ring].mean()))


def defect_contrasts(
    image: np.ndarray, masks: np.ndarray, others: np.ndarray | None = None
) -> list[tuple[int, np.ndarray, float]]:
    """(class_id, bool [H, W] component, contrast) for every defect component of bool `masks`
    [K, H, W] on uint8 `image` [H, W, C]; the ring of each leaves out every defect's pixels, and
    those of bool `others` [H, W] (defects not measured here)."""
    values = grey(image)
    union = masks.any(axis=0) if others is None else masks.any(axis=0) | others
    found = []
    for k in range(masks.shape[0]):
        if masks[k].any():
            found.extend((k + 1, part, contrast(values, part, union)) for part in components(masks[k]))
    return found


@dataclass(frozen=True)
class SeverityTable:
    """Per class id, the contrasts of the training half's defects at QUANTILES evenly spaced ranks
    (empty for a class without measurable defects)."""

    quantiles: dict[int, tuple[float, ...]]

    @classmethod
    def measure(cls, samples, num_classes: int) -> SeverityTable:
        """The table of `samples`, an iterable of (uint8 image [H, W, C], bool masks [K, H, W])."""
        found: dict[int, list[float]] = {k: [] for k in range(1, num_classes + 1)}
        for image, masks in samples:
            for class_id, _, value in defect_contrasts(image, masks):
                if np.isfinite(value):
                    found[class_id].append(value)
        ranks = np.linspace(0.0, 1.0, QUANTILES)
        return cls(
            {
                k: tuple(round(float(v), 6) for v in np.quantile(values, ranks)) if values else ()
                for k, values in found.items()
            }
        )

    def severity(self, class_id: int, value: float) -> float:
        """The severity in [0, 1] of contrast `value` for `class_id` (NaN without a table for it
        or for a NaN contrast)."""
        points = self.quantiles.get(class_id, ())
        if not points or not np.isfinite(value):
            return float("nan")
        points = np.asarray(points)
        # ties (a flat stretch of the table, to its 6 decimals) take the middle of their ranks
        low = np.searchsorted(points, value - TIE, "left")
        high = np.searchsorted(points, value + TIE, "right")
        if high > low:
            return float((low + high - 1) / 2 / (len(points) - 1))
        return float(np.interp(value, points, np.linspace(0.0, 1.0, len(points))))

    def severity_map(self, image: np.ndarray, masks: np.ndarray) -> np.ndarray:
        """float32 [1, H, W]: each defect's measured severity on its pixels (DEFAULT_SEVERITY where
        it cannot be measured), 0 off the defects."""
        return measured_map(self, image, masks)[0]

    def to_json(self) -> dict:
        return {str(k): list(v) for k, v in self.quantiles.items()}

    @classmethod
    def from_json(cls, data: dict) -> SeverityTable:
        return cls({int(k): tuple(float(x) for x in v) for k, v in data.items()})


def measured_map(
    table: SeverityTable, image: np.ndarray, masks: np.ndarray, others: np.ndarray | None = None
):
    """The severity map of the defects bool `masks` [K, H, W] as they are on uint8 `image`
    (DEFAULT_SEVERITY where one cannot be measured; bool `others` [H, W]: further defects, kept
    out of the rings). Returns (float32 [1, H, W], [(class_id, severity), ...] in class then
    component order)."""
    out = np.zeros((1, *masks.shape[1:]), dtype=np.float32)
    found = []
    for class_id, part, value in defect_contrasts(image, masks, others):
        level = table.severity(class_id, value)
        level = level if np.isfinite(level) else DEFAULT_SEVERITY
        out[0][part] = level
        found.append((class_id, round(level, 4)))
    return out, found


def drawn_map(masks: np.ndarray, low: float, high: float, rng: np.random.Generator):
    """A severity map for new defects: each component of bool `masks` [K, H, W] gets a severity
    drawn uniformly from [low, high]. Returns (float32 [1, H, W], [(class_id, severity), ...] in
    class then component order)."""
    out = np.zeros((1, *masks.shape[1:]), dtype=np.float32)
    drawn = []
    for k in range(masks.shape[0]):
        if masks[k].any():
            for part in components(masks[k]):
                level = float(rng.uniform(low, high))
                out[0][part] = level
                drawn.append((k + 1, round(level, 4)))
    return out, drawn


def parse_range(text: str) -> tuple[float, float]:
    """'LOW:HIGH' (or one value 'S') -> (low, high) within [0, 1]."""
    from defectgen.errors import ConfigError

    parts = str(text).split(":")
    try:
        values = [float(p) for p in parts]
    except ValueError:
        values = []
    if len(values) == 1:
        values = values * 2
    if len(values) != 2 or not all(np.isfinite(values)) or not 0 <= values[0] <= values[1] <= 1:
        raise ConfigError(
            f"--severity must be LOW:HIGH with 0 <= LOW <= HIGH <= 1 (quantiles of the real defects' "
            f"contrast within their class; 0:1 is the real distribution), or one value; got {text!r}"
        )
    return values[0], values[1]
