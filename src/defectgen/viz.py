"""Pictures for people: masks overlaid in class colours, contact sheets of many images."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

# Distinct, colour-blind-friendly-ish hues (Okabe-Ito); class k uses CLASS_COLOURS[(k-1) % n].
CLASS_COLOURS = [
    (230, 159, 0),
    (86, 180, 233),
    (0, 158, 115),
    (240, 228, 66),
    (0, 114, 178),
    (213, 94, 0),
    (204, 121, 167),
]


def class_colour(class_id: int) -> tuple[int, int, int]:
    return CLASS_COLOURS[(class_id - 1) % len(CLASS_COLOURS)]


def overlay(image: np.ndarray, masks: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """uint8 image [H, W, C] + bool masks [K, H, W] -> uint8 RGB [H, W, 3], each class tinted
    in its colour with its outline drawn fully opaque so thin defects stay visible."""
    rgb = np.repeat(image, 3, axis=2) if image.shape[2] == 1 else image.copy()
    rgb = rgb.astype(np.float32)
    for k, mask in enumerate(masks, start=1):
        if not mask.any():
            continue
        colour = np.array(class_colour(k), dtype=np.float32)
        rgb[mask] = (1 - alpha) * rgb[mask] + alpha * colour
        edge = mask & ~_erode(mask)
        rgb[edge] = colour
    return rgb.clip(0, 255).astype(np.uint8)


def contact_sheet(
    tiles: list[np.ndarray], captions: list[str], columns: int = 4, tile_width: int = 320
) -> Image.Image:
    """RGB uint8 tiles of any sizes -> one sheet; each tile scaled to `tile_width`, captioned."""
    if not tiles:
        raise ValueError("contact_sheet needs at least one tile")
    scaled = []
    for tile in tiles:
        height = max(1, round(tile.shape[0] * tile_width / tile.shape[1]))
        scaled.append(Image.fromarray(tile).resize((tile_width, height), Image.Resampling.BILINEAR))
    caption_height = 14
    rows = [scaled[i : i + columns] for i in range(0, len(scaled), columns)]
    row_heights = [max(t.height for t in row) + caption_height for row in rows]
    sheet = Image.new(
        "RGB", (columns * (tile_width + 4) + 4, sum(row_heights) + 4 * len(rows) + 4), (24, 24, 24)
    )
    draw = ImageDraw.Draw(sheet)
    y = 4
    index = 0
    for row, row_height in zip(rows, row_heights, strict=True):
        x = 4
        for tile in row:
            sheet.paste(tile, (x, y + caption_height))
            draw.text((x + 2, y + 1), captions[index][:60], fill=(235, 235, 235))
            x += tile_width + 4
            index += 1
        y += row_height + 4
    return sheet


def _erode(mask: np.ndarray) -> np.ndarray:
    """4-neighbour binary erosion (pixels outside the image count as background)."""
    padded = np.pad(mask, 1)
    return padded[1:-1, 1:-1] & padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
