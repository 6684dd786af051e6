"""Masks a StyleGAN generator draws (`--mask-source learned:RUN`): the shapes of real defects as a
class-conditional StyleGAN2 (`train --model stylegan`) learned them, placed where the training
half's defects of that class lie.

Per defect: the StyleGAN generator draws a crop of the class from noise (z and noise seeded from the mask
generator `rng`, so the same seed gives the same masks); its mask channel of that class is
thresholded at 0.5 (`decoded`); the connected component nearest the crop's centre (the StyleGAN generator
learned from crops centred on a defect) is cut out and placed by the class's position prior,
exactly as the real mask bank places a varied real component. A draw with no mask of the
class, or whose component is cut by the crop's border (a straight edge no placed defect
should have), is drawn again, up to `MAX_DRAWS` times; a cut one is kept only if no draw gave
a whole one. Classes are those the StyleGAN generator trained on and the training half holds; each is
tried once when the source is built, so a class the StyleGAN generator cannot draw stops synthesis
before anything is written.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from defectgen.errors import ConfigError, DataError
from defectgen.geometry import MIN_AREA, components, find_components
from defectgen.masks.bank import RealMaskBank, prior_centre
from defectgen.masks.compose import place
from defectgen.tensors import tensor_to_image

MAX_DRAWS = 16


def decoded(output: torch.Tensor, image_channels: int) -> tuple[np.ndarray, np.ndarray]:
    """A StyleGAN generator output [1, C + K, R, R] -> (uint8 image [R, R, C], bool masks [K, R, R]): per
    pixel the most likely class if above probability 0.5 (`binarised`), specks under `MIN_AREA`
    px dropped per class."""
    from defectgen.models.stylegan import binarised, mask_probability

    image = tensor_to_image(output[0, :image_channels].clamp(-1, 1))
    masks = binarised(mask_probability(output, image_channels))[0].detach().cpu().numpy() > 0.5
    for k, mask in enumerate(masks):
        kept = np.zeros_like(mask)
        for box, crop in find_components(mask, MIN_AREA):
            kept[box] |= crop
        masks[k] = kept
    return image, masks


def central_component(mask: np.ndarray) -> tuple[np.ndarray, bool]:
    """(bool [h, w], cut): the bounding-box crop of the connected component of bool `mask`
    [R, R] nearest its centre (by the component's nearest pixel), and whether it touches the
    border of `mask`; `mask` must hold one."""
    parts = components(mask)
    labels = np.zeros(mask.shape, dtype=np.int32)
    for number, part in enumerate(parts, start=1):
        labels[part] = number
    ys, xs = np.nonzero(labels)
    centre = (np.asarray(mask.shape) - 1) / 2
    nearest = labels[ys, xs][np.argmin((ys - centre[0]) ** 2 + (xs - centre[1]) ** 2)]
    rows, cols = np.nonzero(labels == nearest)
    cut = (
        rows.min() == 0
        or cols.min() == 0
        or rows.max() == mask.shape[0] - 1
        or cols.max() == mask.shape[1] - 1
    )
    return (labels == nearest)[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1], bool(cut)


def stylegan_checkpoint(run: str | Path) -> Path:
    """The checkpoint `learned:RUN` names: RUN itself, or a run folder's last checkpoint."""
    path = Path(run)
    return path / "checkpoints" / "last.pt" if path.is_dir() else path


class LearnedMasks:
    """A mask source (like `RealMaskBank`: `draw_defect`, `class_ids`, `num_classes`) whose
    shapes come from a StyleGAN generator `G` and whose positions come from `bank`'s class priors."""

    def __init__(
        self, G, bank: RealMaskBank, trained_classes: list[int] | None = None, only: list[int] | None = None
    ):
        if not getattr(G, "is_stylegan", False):
            raise ConfigError("learned masks need a StyleGAN generator (train --model stylegan)")
        if G.num_classes != bank.num_classes:
            raise ConfigError(f"the StyleGAN has {G.num_classes} classes, the data {bank.num_classes}")
        self.G = G
        self.bank = bank
        self.num_classes = bank.num_classes
        known = bank.class_ids if trained_classes is None else set(trained_classes)
        self.class_ids = tuple(k for k in bank.class_ids if k in known and (only is None or k in only))
        for class_id in self.class_ids:  # a class it cannot draw fails now, not mid-run (`only`: those asked)
            self.shape(np.random.default_rng([class_id]), class_id)

    @classmethod
    def from_run(
        cls, run: str | Path, bank: RealMaskBank, classes, only: list[int] | None = None
    ) -> LearnedMasks:
        """The StyleGAN generator of `run` (a run folder: its last checkpoint; or a checkpoint file),
        checked against the data's class table `classes`; `only`: the class ids to draw (default:
        every class it trained on that the data's training part holds)."""
        from defectgen.gan.checkpoint import load_checkpoint, load_generator

        path = stylegan_checkpoint(run)
        G, trained, _, _ = load_generator(path, "cpu", expect="stylegan")
        if trained != classes:
            raise DataError(
                f"{path} was trained for classes {list(trained.names)}; this data has {list(classes.names)}"
            )
        return cls(G, bank, load_checkpoint(path).get("trained_classes"), only)

    def shape(self, rng: np.random.Generator, class_id: int) -> np.ndarray:
        """bool [h, w]: one StyleGAN-drawn defect shape of `class_id` (the central component of
        its class's mask; one not cut by the crop border when a draw gives one)."""
        cut_shape = None
        for _ in range(MAX_DRAWS):
            generator = torch.Generator().manual_seed(int(rng.integers(2**63 - 1)))
            z = self.G.draw_style(1, generator)
            with torch.no_grad():
                output = self.G(z, torch.tensor([class_id - 1]), generator=generator)
            mask = decoded(output, self.G.image_channels)[1][class_id - 1]
            if not mask.any():
                continue
            shape, cut = central_component(mask)
            if not cut:
                return shape
            cut_shape = shape if cut_shape is None else cut_shape
        if cut_shape is not None:
            return cut_shape
        raise DataError(
            f"the StyleGAN drew no mask of class {class_id} in {MAX_DRAWS} draws; train it longer, leave the "
            "class out (--classes), or use --mask-source real"
        )

    def draw_defect(self, rng: np.random.Generator, height: int, width: int, class_id: int) -> np.ndarray:
        """bool [H, W]: one StyleGAN-drawn shape of `class_id`, placed by the class prior."""
        if class_id not in self.class_ids:
            raise DataError(f"no training defect of class {class_id}: the mask source cannot place one")
        shape = self.shape(rng, class_id)
        y, x = prior_centre(rng, self.bank.priors[class_id], shape.shape, 0, height, width)
        return place(shape, height, width, y, x)
