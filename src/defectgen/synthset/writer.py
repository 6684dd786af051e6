"""Writing a synthetic set, the one format `synth` and the studio both write:

    OUT/synth.json        the parameters it was made with (`claim`: a folder of other
                          parameters is refused)
    OUT/manifest.jsonl    one record per finished item (`append_record`; rewritten in index
                          order by `finish`)
    OUT/images/NAME.png   (.jpg in the Severstal format)
    OUT/masks/NAME.png    index masks, 0 = background (folder format)
    OUT/train.csv         RLE labels (Severstal format), written by `finish`
    OUT/classes.txt, OUT/contact_sheet.png
    OUT/.lock             held by the writing process (`locked`)

Files are written atomically (temporary name, then rename); an item's image is written last,
so an image with its manifest line marks the item done (`complete`).
"""

from __future__ import annotations

import errno
import fcntl
import io
import json
import os
import time
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from defectgen.data.rle import decode, encode
from defectgen.errors import DataError, DefectgenError
from defectgen.fileio import parse_json, write_atomic
from defectgen.geometry import count_components
from defectgen.synthset.reader import MANIFEST, PARAMS_FILE, read_records
from defectgen.viz import contact_sheet, overlay


class FolderBusy(DefectgenError):
    """Another process holds the set's lock."""


def claim(out_dir: Path, params: dict) -> bool:
    """Make `out_dir` (existing) a synthesis folder of `params`: an empty one gets them written as
    synth.json (returns True); one with synth.json must hold the same values (False); anything
    else is refused. Shared by `synth` and the studio's kept images."""
    params_path = out_dir / PARAMS_FILE
    if params_path.exists():
        try:
            existing = parse_json(params_path.read_text())
        except (OSError, ValueError) as err:
            raise DataError(f"{params_path}: unreadable ({err}); choose another --out") from err
        changed = sorted(k for k in params if not isinstance(existing, dict) or existing.get(k) != params[k])
        if changed:
            raise DataError(
                f"{out_dir} holds another synthesis run (another {', '.join(changed)}); "
                "choose another --out or delete that folder"
            )
        return False
    if any(p for p in out_dir.iterdir() if p.name != ".lock"):
        raise DataError(f"{out_dir} is not empty and holds no defectgen images; choose another --out")
    write_bytes(params_path, (json.dumps(params, indent=1) + "\n").encode())
    return True


def prepare(out_dir: Path, params: dict, n: int) -> dict[int, dict]:
    """Check the folder is ours (or empty), clean leftovers of a killed run, read the manifest."""
    claim(out_dir, params)
    for leftover in out_dir.rglob(".*.tmp*"):
        leftover.unlink(missing_ok=True)
    too_many = [i for i in read_records(out_dir) if i >= n]
    if too_many:
        raise DataError(
            f"{out_dir} already holds {max(too_many) + 1} items, more than --n {n}; use a larger --n"
        )
    return complete(out_dir, n)


def complete(out_dir: Path, n: int) -> dict[int, dict]:
    """The manifest's records of items < n whose files are all in place (every process's)."""
    return {
        index: record
        for index, record in read_records(out_dir).items()
        if index < n
        and all(
            (out_dir / f).is_file()
            for f in [record["image"]] + ([record["mask"]] if record.get("mask") else [])
        )
    }


def label_fields(masks: np.ndarray) -> dict:
    """The record's `classes` and `areas` (px per class id) of bool `masks` [K, H, W]."""
    present = [int(k) + 1 for k in np.flatnonzero(masks.any(axis=(1, 2)))]
    return {"classes": present, "areas": {str(k): int(masks[k - 1].sum()) for k in present}}


def painted_fields(painted: np.ndarray) -> dict:
    """The record's `painted` (Severstal RLE of bool [H, W]: the pixels the generator composited)
    and `painted_pixels`."""
    return {"painted": encode(painted), "painted_pixels": int(painted.sum())}


def studio_defects(masks: np.ndarray) -> list[dict]:
    """The `defects` field of an item whose masks were drawn by hand: one entry per class."""
    return [
        {
            "source": "studio",
            "class_id": k,
            "area": int(masks[k - 1].sum()),
            "components": count_components(masks[k - 1]),
        }
        for k in label_fields(masks)["classes"]
    ]


def write_files(out_dir: Path, record: dict, image: np.ndarray, masks: np.ndarray) -> None:
    """Write an item's label (the index mask `record["mask"]`, when the record names one) and
    then its image `record["image"]` (PNG, or JPEG for a .jpg name): the image comes last, so
    its presence (with the manifest line) marks the item done."""
    if record.get("mask"):
        index_mask = np.zeros(masks.shape[1:], dtype=np.uint8)
        for k, channel in enumerate(masks, start=1):
            index_mask[channel] = k
        write_bytes(out_dir / record["mask"], png_bytes(index_mask))
    name = str(record["image"])
    write_bytes(out_dir / name, jpeg_bytes(image) if name.endswith(".jpg") else png_bytes(image))


def write_item(out_dir, item, image, painted, fmt, suffix, mask_source, seed) -> dict:
    """Write one item `synth` painted (`item`: its index, masks, background, defects, judge
    scores, severities) and return its manifest record."""
    name = f"synth_{item['index']:06d}"
    masks = item["masks"]
    if item.get("erased") is not None:
        painted = painted | item["erased"]
    record = {
        "index": item["index"],
        "image": f"images/{name}{suffix}",
        "background": item["background"],
        **label_fields(masks),
        "mask_source": mask_source,
        "seed": seed,
        "defects": item["info"]["defects"],
        **painted_fields(painted),
        **{k: item[k] for k in ("label_score", "label_accepted") if k in item},
        **({"attempt": item["attempt"]} if item.get("attempt") else {}),
        **({"severity": [[int(k), v] for k, v in item["severities"]]} if "severities" in item else {}),
    }
    if fmt == "folder":
        record["mask"] = f"masks/{name}.png"
    else:
        record["rle"] = {str(k): encode(masks[k - 1]) for k in record["classes"]}
    write_files(out_dir, record, image, masks)
    return record


def append_record(out_dir: Path, record: dict) -> None:
    """One manifest line, in one O_APPEND write, so that processes (torchrun ranks, a studio)
    append side by side; a last line cut by a kill first gets its newline, or the new line
    would be lost with it."""
    path = out_dir / MANIFEST
    line = (json.dumps(record) + "\n").encode()
    try:
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":
                line = b"\n" + line
            if os.write(fd, line) != len(line):
                raise OSError(errno.EIO, "short write")
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as err:
        raise write_error(path, err) from err


def finish(out_dir: Path, records: dict[int, dict], fmt: str, dataset, n: int, params: dict) -> dict:
    ordered = [records[i] for i in sorted(records)]
    write_bytes(out_dir / MANIFEST, "".join(json.dumps(r) + "\n" for r in ordered).encode())
    if fmt == "severstal":
        lines = ["ImageId,ClassId,EncodedPixels"]
        for record in ordered:
            for class_id, rle in record["rle"].items():
                lines.append(f"{Path(record['image']).name},{class_id},{rle}")
        write_bytes(out_dir / "train.csv", ("\n".join(lines) + "\n").encode())
    else:
        write_bytes(out_dir / "classes.txt", dataset.classes.to_classes_txt())
    sheet = _sheet(out_dir, ordered[:8], fmt, dataset)
    per_class = {name: 0 for name in dataset.classes.names}
    for record in ordered:
        for class_id in record["classes"]:
            per_class[dataset.classes.name(class_id)] += 1
    judged = [r for r in ordered if "label_accepted" in r]
    return {
        "out": str(out_dir),
        "items": len(ordered),
        "accepted_by_judge": sum(1 for r in judged if r["label_accepted"]) if judged else None,
        "images_per_class": per_class,
        "contact_sheet": str(sheet),
        "format": fmt,
        "mask_source": params["mask_source"],
        "seed": params["seed"],
    }


def _sheet(out_dir: Path, records: list[dict], fmt: str, dataset) -> Path:
    tiles, captions = [], []
    for record in records:
        image = np.asarray(
            Image.open(out_dir / record["image"]).convert("L" if dataset.channels == 1 else "RGB")
        )
        image = image[:, :, None] if image.ndim == 2 else image
        masks = np.zeros((len(dataset.classes), *image.shape[:2]), dtype=bool)
        if fmt == "folder":
            index_mask = np.asarray(Image.open(out_dir / record["mask"]))
            for k in dataset.classes.ids:
                masks[k - 1] = index_mask == k
        else:
            for class_id, rle in record["rle"].items():
                masks[int(class_id) - 1] = decode(rle, image.shape[:2])
        tiles.append(overlay(image, masks))
        names = "+".join(dataset.classes.name(c) for c in record["classes"]) or "none"
        captions.append(f"{Path(record['image']).name} [{names}]")
    path = out_dir / "contact_sheet.png"
    if tiles:
        wide = tiles[0].shape[1] > 4 * tiles[0].shape[0]
        buffer = io.BytesIO()
        contact_sheet(tiles, captions, columns=2 if wide else 4, tile_width=640 if wide else 256).save(
            buffer, "PNG"
        )
        write_bytes(path, buffer.getvalue())
    return path


PNG_COMPRESSION = 1  # zlib level: lossless either way; level 6 (PIL's default) costs ~4x the CPU


def png_bytes(pixels: np.ndarray) -> bytes:
    """uint8 [H, W], [H, W, 1] or [H, W, 3] (RGB) -> PNG file bytes. OpenCV's encoder: 30 % less
    CPU than PIL's at the same level on a 1600x256 strip (benchmarks/RESULTS.md)."""
    pixels = np.ascontiguousarray(pixels)
    if pixels.ndim == 3 and pixels.shape[2] == 3:
        pixels = pixels[:, :, ::-1]  # OpenCV writes BGR order
    ok, encoded = cv2.imencode(".png", pixels, [cv2.IMWRITE_PNG_COMPRESSION, PNG_COMPRESSION])
    if not ok:
        raise DefectgenError(f"could not encode a {pixels.shape} image as PNG")
    return encoded.tobytes()


def jpeg_bytes(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels[:, :, 0] if pixels.shape[2] == 1 else pixels).save(buffer, "JPEG", quality=95)
    return buffer.getvalue()


def write_bytes(path: Path, data: bytes) -> None:
    try:
        write_atomic(path, data)
    except OSError as err:
        raise write_error(path, err) from err


def write_error(path: Path, err: OSError) -> DefectgenError:
    if err.errno == errno.ENOSPC:
        return DefectgenError(
            f"disk full while writing {path}; free some space and run the same command again: "
            "finished items are kept and only the rest is generated"
        )
    return DefectgenError(f"cannot write {path} ({err}); fix the problem and run the same command again")


@contextmanager
def locked(out_dir: Path, wait: float = 0.0, who: str = "synth"):
    """Exclusive lock on OUT/.lock while the block runs, across processes: `synth` holds it for
    its whole run and gives up at once when another holds it (`wait` 0); the studio holds it
    per kept image and waits up to `wait` s. Busy past that: `FolderBusy`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    created = not (out_dir / ".lock").exists()
    handle = open(out_dir / ".lock", "a+")
    deadline = time.monotonic() + wait
    while True:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() >= deadline:
                handle.close()
                raise FolderBusy(
                    f"another defectgen {who} is writing to {out_dir}; wait for it to finish or choose "
                    "another --out"
                ) from None
            time.sleep(0.05)
    try:
        yield
    except BaseException:
        if created and not (out_dir / PARAMS_FILE).exists():  # refused before it was ours: leave no trace
            (out_dir / ".lock").unlink(missing_ok=True)
        raise
    finally:
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()
