"""What `defectgen studio` does behind its page: one generator, the training half's backgrounds
and mask bank, generation jobs run off the request loop, and kept results written to a folder.

`StudioSession` holds everything; the web layer (`studio.app`) only parses requests. Every
image a client names is an index into lists built here (backgrounds, uploads, jobs): no client
string ever becomes a path. Kept results go to `out_dir` in the layout `synth --format folder`
writes (`images/`, index `masks/`, `classes.txt`, `manifest.jsonl`, `synth.json`), under a
thread lock and an exclusive file lock, so two browser tabs (or two studios) never write one
name twice or cut a manifest line.
"""

from __future__ import annotations

import base64
import io
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from defectgen.data.dataset import DefectDataset
from defectgen.data.imageio import read_image
from defectgen.data.lineage import DatasetCopies, check_lineage, lineage
from defectgen.data.split import Split
from defectgen.distributed import parse_device, resolve_bf16
from defectgen.errors import DataError, DefectgenError
from defectgen.fileio import file_digest, write_atomic
from defectgen.gan.checkpoint import checkpoint_lineage, load_generator
from defectgen.geometry import components, hole_of, hole_radius
from defectgen.painter import paint_one
from defectgen.severity import DEFAULT_SEVERITY
from defectgen.studio_config import StudioConfig
from defectgen.synthset import read_records, writer
from defectgen.synthset.writer import png_bytes

MAX_UPLOAD_BYTES = 20_000_000
MAX_UPLOAD_PIXELS = 16_000_000  # the studio paints whole images on a CPU: a 4000x4000 photo at most
MIN_SIDE = 16
MAX_DRAWS = 8
LOCK_WAIT = 10.0  # s
MAX_UPLOADS = 32  # kept in memory; the oldest is forgotten first
MAX_JOBS = 16  # finished jobs kept for Keep; the oldest is forgotten first


class StudioError(DefectgenError):
    """A request the studio refuses; `status` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


@dataclass
class Job:
    """One Generate press: `draws` results of one mask, class and background."""

    background: str
    class_id: int
    seeds: list[int]
    masks: np.ndarray  # bool [K, H, W]: the label (a training background's own defects included)
    hole: np.ndarray | None = None  # bool [H, W] to repaint; None: the masks dilated
    severity: float | None = None  # the new defect's severity in [0, 1]; None: no severity input
    parts: int = 1  # components of the new defect's mask (one severity each in the record)
    results: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)  # (image, region)
    pictures: list[str] = field(default_factory=list)  # each result as a PNG data URL, for the page
    error: str | None = None
    kept: dict[int, str] = field(default_factory=dict)  # draw -> file written

    @property
    def done(self) -> int:
        return len(self.pictures)

    @property
    def finished(self) -> bool:
        return self.error is not None or self.done == len(self.seeds)


class StudioSession:
    def __init__(
        self,
        checkpoint: Path,
        dataset: DefectDataset,
        split: Split,
        out_dir: Path,
        config: StudioConfig | None = None,
    ):
        config = config or StudioConfig()
        config.validate()
        self.device = parse_device(config.device)
        self.use_bf16 = resolve_bf16(config.precision, self.device)
        G, classes, channels, config = load_generator(checkpoint, self.device, expect="inpainter")
        if classes != dataset.classes or channels != dataset.channels:
            raise DataError(
                f"{checkpoint} was trained for classes {list(classes.names)} with {channels} channel(s); "
                f"{dataset.spec} has {list(dataset.classes.names)} with {dataset.channels}: use a checkpoint "
                "trained on this dataset"
            )
        split.check(dataset)
        generator = checkpoint_lineage(checkpoint)
        fix = "train a generator with this split (`defectgen train --split`) or use the split it had"
        check_lineage(generator, f"checkpoint {checkpoint}", dataset, split, fix)
        self.G, self.dataset, self.classes, self.channels = G, dataset, classes, channels
        self.hole_radius = hole_radius(config.max_dilation)
        train = split.indices(dataset, "train")
        free = [i for i in train if not dataset.items[i].class_ids]
        self.background_note = (
            "defect-free training images"
            if free
            else "the training half has no defect-free images: these hold defects of their own"
        )
        self._backgrounds = {f"train:{dataset.items[i].item_id}": i for i in (free or train)}
        self._bank_lock = threading.Lock()
        self._train = train
        self._bank = None
        self._uploads: dict[str, np.ndarray] = {}
        self._copies, self._test_ids = DatasetCopies(dataset), set(split.test)
        self._jobs: dict[str, Job] = {}
        self._generator_lock = threading.Lock()
        self._state_lock = threading.Lock()
        self._keep_lock = threading.Lock()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="studio-generate")
        self.writer = KeptWriter(
            Path(out_dir),
            dataset,
            {
                "format": "folder",
                "checkpoint_sha256": file_digest(checkpoint),
                "dataset": dataset.spec,
                "split_fingerprint": split.fingerprint,
                "lineage": lineage(split, split.train, generator=generator),
                "mask_source": "studio",
                "hole_dilation": self.hole_radius,
                "class_table": dataset.classes.to_json(),
            },
        )

    # --- what the page shows ---------------------------------------------------------------

    def info(self) -> dict:
        return {
            "classes": [{"id": k, "name": self.classes.name(k)} for k in self.classes.ids],
            "backgrounds": [{"id": key, "name": key.partition(":")[2]} for key in self._backgrounds],
            "background_note": self.background_note,
            "max_draws": MAX_DRAWS,
            "severity": bool(self.G.severity),  # the generator takes a severity (defectgen.severity)
            "hole_dilation": self.hole_radius,
            "out": str(self.writer.out_dir),
            "kept": self.writer.count(),
        }

    def background(self, key: str) -> np.ndarray:
        """uint8 [H, W, C] of a listed training image or an upload."""
        if key in self._backgrounds:
            return self.dataset.load_image(self._backgrounds[key])
        with self._state_lock:
            if key in self._uploads:
                return self._uploads[key]
        raise StudioError(f"no background {key!r}; pick one from the list or open an image", 404)

    def upload(self, data: bytes) -> dict:
        """An image of the user's own, checked with the readers' rules; returns its key and size."""
        if not data:
            raise StudioError("the upload is empty")
        if len(data) > MAX_UPLOAD_BYTES:
            raise StudioError(f"the upload is larger than {MAX_UPLOAD_BYTES // 1_000_000} MB", 413)
        try:  # decoded in memory, by the readers' rules and formats: nothing is written
            image = read_image(Path("upload"), self.channels, max_pixels=MAX_UPLOAD_PIXELS, data=data)
        except DataError as err:
            raise StudioError(str(err).replace("upload: ", "the upload: ", 1)) from None
        copies = [self.dataset.items[i] for i in self._copies.find(data)]
        if any(item.item_id in self._test_ids for item in copies):
            raise StudioError(
                f"the image is {copies[0].item_id} of this split's test half; test images must not reach "
                "training: open another image"
            )
        height, width = image.shape[:2]
        if min(height, width) < MIN_SIDE:
            raise StudioError(f"the image is {width}x{height}; both sides must be at least {MIN_SIDE} px")
        key = f"upload:{uuid.uuid4().hex[:12]}"
        with self._state_lock:
            if len(self._uploads) >= MAX_UPLOADS:
                self._uploads.pop(next(iter(self._uploads)))
            self._uploads[key] = image
        answer = {"id": key, "name": "your image", "width": width, "height": height}
        if any(item.class_ids for item in copies):
            answer["warning"] = (
                f"the image is the training image {copies[0].item_id}, which holds defects; an upload is "
                "taken as defect-free, so they are not labelled: pick it from the list instead"
            )
        return answer

    def existing(self, key: str) -> np.ndarray | None:
        """bool [K, H, W]: the defects a training background already holds (None for an upload:
        its labels are unknown, so it is taken as defect-free)."""
        index = self._backgrounds.get(key)
        if index is None or not self.dataset.items[index].class_ids:
            return None
        return self.dataset.load_masks(index)

    def real_shape(self, key: str, class_id: int, seed: int) -> np.ndarray:
        """bool [H, W]: a real training defect of `class_id` (mask bank: varied and placed by
        the class's position prior) for background `key`."""
        self._check_class(class_id)
        if not 0 <= seed < 2**63:
            raise StudioError(f"seed must be 0..2**63-1, got {seed}")
        height, width = self.background(key).shape[:2]
        bank = self._mask_bank()
        if class_id not in bank.class_ids:
            raise StudioError(f"the training half has no defect of class {self.classes.name(class_id)}")
        return bank.draw_defect(np.random.default_rng(seed), height, width, class_id)

    # --- generation --------------------------------------------------------------------------

    def start(
        self, key: str, mask: np.ndarray, class_id: int, seed: int, draws: int, severity: float | None = None
    ) -> str:
        """Queue a job painting `mask` (bool [H, W]) as `class_id`, `draws` seeds from `seed`, at
        `severity` (None: the generator's default, the median)."""
        self._check_class(class_id)
        if severity is not None:
            if not self.G.severity:
                raise StudioError("this generator was trained without severity; leave severity unset")
            if not 0.0 <= severity <= 1.0:  # NaN fails too
                raise StudioError(f"severity must be in 0..1, got {severity}")
        if not 1 <= draws <= MAX_DRAWS:
            raise StudioError(f"draws must be 1..{MAX_DRAWS}, got {draws}")
        if not 0 <= seed <= 2**31 - MAX_DRAWS:
            raise StudioError(f"seed must be 0..{2**31 - MAX_DRAWS}, got {seed}")
        image = self.background(key)
        if mask.shape != image.shape[:2]:
            raise StudioError(
                f"the mask is {mask.shape[1]}x{mask.shape[0]}, "
                f"its background {image.shape[1]}x{image.shape[0]}"
            )
        existing = self.existing(key)
        if existing is not None:  # a defect image: its defects stay, labelled, and are not repainted
            mask = mask & ~existing.any(axis=0)
        if not mask.any():
            raise StudioError(
                "the mask is empty: paint where the new defect goes first (not over an old one)"
            )
        masks = np.zeros((len(self.classes), *mask.shape), dtype=bool)
        masks[class_id - 1] = mask
        hole = None
        if existing is not None:
            hole = hole_of(masks, self.hole_radius)[0] > 0
            hole &= ~existing.any(axis=0)
            masks |= existing
        if severity is None and self.G.severity:
            severity = DEFAULT_SEVERITY  # the median, on the new defect only (synth's rule)
        parts = len(components(mask))
        job = Job(key, class_id, list(range(seed, seed + draws)), masks, hole, severity=severity, parts=parts)
        job_id = uuid.uuid4().hex[:12]
        with self._state_lock:
            if len(self._jobs) >= MAX_JOBS:
                oldest = next((k for k, j in self._jobs.items() if j.finished), None)
                if oldest is None:
                    raise StudioError("too many jobs are still running; wait for one to finish", 429)
                self._jobs.pop(oldest)
            self._jobs[job_id] = job
        self._executor.submit(self._run, job, image)
        return job_id

    def job(self, job_id: str) -> Job:
        with self._state_lock:
            job = self._jobs.get(job_id)
        if job is None:
            raise StudioError(f"no job {job_id!r} (finished jobs are forgotten after {MAX_JOBS})", 404)
        return job

    def _run(self, job: Job, image: np.ndarray) -> None:
        amp = torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.use_bf16)
        try:
            for seed in job.seeds:
                with self._generator_lock:
                    result = paint_one(
                        self.G, image, job.masks, seed, self.hole_radius, self.device, amp,
                        hole=job.hole, severity=job.severity,
                    )  # fmt: skip
                job.results.append(result)
                job.pictures.append(
                    "data:image/png;base64," + base64.b64encode(png_bytes(result[0])).decode()
                )
        except Exception as err:  # reported to the page; the server keeps serving
            job.error = f"generation failed: {err}"

    def keep(self, job_id: str, draw: int) -> dict:
        """Write draw `draw` of a finished job into the output folder; returns its record."""
        job = self.job(job_id)
        if not 0 <= draw < len(job.results):
            raise StudioError(f"job {job_id} has no finished draw {draw}", 404)
        with self._keep_lock:  # two tabs pressing Keep on one draw write it once
            if draw in job.kept:
                return {"image": job.kept[draw], "again": True}
            image, region = job.results[draw]
            severities = [(job.class_id, job.severity)] * job.parts if job.severity is not None else []
            record = self.writer.keep(image, job.masks, region, job.background, job.seeds[draw], severities)
            job.kept[draw] = record["image"]
        return record

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    def _check_class(self, class_id: int) -> None:
        if class_id not in self.classes.ids:
            raise StudioError(f"class id {class_id} is not one of {list(self.classes.ids)}")

    def _mask_bank(self):
        from defectgen.masks import RealMaskBank, scan_components

        with self._bank_lock:  # its own lock: scanning the masks must not stall job polls
            if self._bank is None:
                self._bank = RealMaskBank(scan_components(self.dataset, self._train))
            return self._bank


def mask_from_png(data: bytes, shape: tuple[int, int]) -> np.ndarray:
    """bool [H, W] from a PNG the page sent (alpha or gray > 127 is painted)."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            if img.format != "PNG":
                raise StudioError("the mask must be a PNG")
            if img.size != (shape[1], shape[0]):
                raise StudioError(
                    f"the mask is {img.size[0]}x{img.size[1]}, its background {shape[1]}x{shape[0]}"
                )
            img.load()
            pixels = np.asarray(img.getchannel("A") if "A" in img.getbands() else img.convert("L"))
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as err:
        raise StudioError(f"the mask is not a readable PNG ({err})") from None
    return pixels > 127


class KeptWriter:
    """Writes kept results as a synthetic set (`synthset.writer`, the layout of `synth --format
    folder`); safe across threads and processes."""

    def __init__(self, out_dir: Path, dataset: DefectDataset, params: dict):
        self.out_dir, self.dataset, self.params = out_dir, dataset, params
        self._lock = threading.Lock()
        out_dir.mkdir(parents=True, exist_ok=True)
        with self._locked():
            if writer.claim(out_dir, params):
                write_atomic(out_dir / "classes.txt", dataset.classes.to_classes_txt())

    def count(self) -> int:
        return len(read_records(self.out_dir))

    def keep(
        self,
        image: np.ndarray,
        masks: np.ndarray,
        region: np.ndarray,
        background: str,
        seed: int,
        severities: list[tuple[int, float]] = (),
    ) -> dict:
        """Write one kept result; `severities`: (class id, severity) per new defect component,
        recorded as synth records them."""
        with self._lock, self._locked():
            index = 1 + max(read_records(self.out_dir), default=-1)
            name = f"studio_{index:06d}"
            record = {
                "index": index,
                "image": f"images/{name}.png",
                "mask": f"masks/{name}.png",
                "background": background,
                **writer.label_fields(masks),
                "mask_source": "studio",
                "seed": seed,
                "defects": writer.studio_defects(masks),
                **writer.painted_fields(region),
            }
            if severities:
                record["severity"] = [[int(k), round(float(v), 4)] for k, v in severities]
            write_atomic(self.out_dir / "classes.txt", self.dataset.classes.to_classes_txt())
            writer.write_files(self.out_dir, record, image, masks)
            writer.append_record(self.out_dir, record)
            return record

    @contextmanager
    def _locked(self):
        """The set's lock (`synthset.writer.locked`), waited for up to `LOCK_WAIT` s: another
        process (a `synth` run, another studio) holding it longer is an error."""
        try:
            with writer.locked(self.out_dir, wait=LOCK_WAIT, who="process"):
                yield
        except writer.FolderBusy as err:
            raise StudioError(str(err), 409) from None
