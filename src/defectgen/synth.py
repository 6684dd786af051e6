"""Synthesis: `defectgen synth` turns defect-free images and new masks into a labelled dataset.

For item i (0 <= i < n) everything is a function of (seed, i): which background, which masks
(`defectgen.masks`), which noise for the generator. Items are therefore independent, so the
run is resumable: after a kill -9 the same command regenerates only what is missing.

Files are written atomically (temporary name, then rename) and an item is recorded in
`manifest.jsonl` only once its files are in place; the CSV (Severstal format), the class table
and the contact sheet are rewritten from the manifest at the end. A lock file keeps two
processes from writing the same folder.

The work runs as a pipeline so that the generator, the costly part, never waits: a thread
composes the next batches (backgrounds, masks; `prefetched`), the main thread paints, and
`WRITER_THREADS` threads encode and write finished items (`_Writer`), each stage bounded so
memory stays flat. Items are independent functions of (seed, i), so the order in which they
finish changes no file; the manifest is rewritten in index order at the end.

Each manifest record also names the region that was painted (`painted`: Severstal RLE of the
bool [H, W] hole that was composited, the label masks dilated by `hole_dilation` px, and
`painted_pixels`), so an evaluation can ignore painted pixels outside the label
(`painted_region`, `read_manifest`).

The generator runs on the whole image (it is fully convolutional: whole 1600x256 Severstal
strips work), batched, under bf16 autocast where supported. `tile` instead paints one window
around each defect (for images too large for memory — and much less work when defects are
small compared with the image).

Backgrounds (`background_source`): `free`, the training half's defect-free images; `labelled`,
its defect images as they are, new defects kept away from the old ones (a margin of the hole
dilation + 1 px) and the label the union of old and new; `cleaned`, its defect images with their
defects first erased by the same generator (hole = the defects dilated by the hole dilation + 2
px, condition = background), then painted like a defect-free image; the erased pixels are
recorded as painted. `auto` takes `free` when the training half holds at least `MIN_FREE`
defect-free images and `AUTO_FALLBACK` otherwise. A `--backgrounds DIR` of defect-free images
replaces the training half.

A StyleGAN generator checkpoint (`train --model stylegan`) has no background to paint on: each item is one
crop the StyleGAN generator draws whole for a class drawn uniformly from those it trained on
(`--classes` narrows it), labelled by its mask channels thresholded at 0.5, redrawn (attempt a
keyed by (seed, i, a)) while the mask of that class comes out empty. `painted` records the
label dilated by the hole dilation, as for painted defects, so an evaluation ignores the
uncertain edge of the drawn mask.

Two modes: `paint` (default) paints new defects into masks drawn from the mask source;
`harmonize` pastes real training defects (`defectgen.paste`: real counts, position prior,
flips) and lets the generator repaint only the seam: a band of `band` px around each pasted
defect and a rim of `rim` px inside it, conditioned on the defect's class. The defect keeps its
real texture; the label is the pasted mask; `painted` records the band and rim.
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from rich.progress import Progress

from defectgen import geometry
from defectgen.checkpoint import load_generator
from defectgen.data.dataset import IMAGE_SUFFIXES, DefectDataset
from defectgen.data.imageio import read_image
from defectgen.data.split import Split
from defectgen.distributed import (
    LONG_WAIT,
    Context,
    init,
    on_main,
    parse_device,
    resolve_bf16,
    settle,
    shutdown,
)
from defectgen.errors import ConfigError, DataError
from defectgen.fileio import file_digest
from defectgen.geometry import hole_of
from defectgen.masks import build_mask_source
from defectgen.masks.learned import decoded, stylegan_checkpoint
from defectgen.painter import item_seed, paint_batch, seam
from defectgen.paste import DefectPaster
from defectgen.severity import SeverityTable, drawn_map, measured_map, parse_range
from defectgen.synth_config import SynthConfig
from defectgen.synthset.reader import read_params
from defectgen.synthset.writer import append_record, complete, finish, locked, prepare, write_item

MIN_FREE = 8  # defect-free training images below which `auto` paints on the defect images instead
AUTO_FALLBACK = "labelled"  # as good as cleaned, one generator pass cheaper (RESULTS.md, round four)
ERASE_MARGIN = 2  # px beyond the hole dilation that erasing covers (soft defect edges)
CLEANED_CACHE = 256  # erased backgrounds kept in memory
SEVERITY_STREAM = 11  # seed-sequence word of an item's severity draws (the masks' stream is untouched)


@dataclass(frozen=True)
class Background:
    key: str  # item id or file name: recorded in the manifest
    load: object  # () -> uint8 [H, W, C]
    load_masks: object = None  # () -> bool [K, H, W], the defects it holds (labelled / cleaned)
    load_erased: object = None  # () -> bool [H, W] the generator repainted to erase them (cleaned)


def synthesize(
    checkpoint: Path,
    dataset: DefectDataset,
    split: Split,
    out_dir: Path,
    config: SynthConfig,
    progress: bool = True,
) -> dict:
    """Write `config.n` synthetic images with their labels to `out_dir`; returns a summary dict.

    With `judge` (an evaluation folder, see `defectgen.evaluate.judge`), each item is scored by
    that evaluation's real-trained U-Net; the scores go into the manifest, and up to `attempts`
    draws of item i (attempt a keyed by (seed, i, a)) are painted until one is recognised; when
    none is, the draw whose weakest defect came closest is kept and marked as not accepted.

    `mode="harmonize"` pastes real training defects instead of drawing masks and repaints a
    `band` px ring outside each (default: the generator's own hole dilation) and a `rim` px ring
    inside it (see the module docstring). `background_source` picks what is painted on (see the
    module docstring). `severity` ("LOW:HIGH" or a pair, quantiles of the real defects' contrast
    within their class, `defectgen.severity`) is the range each new defect's severity is drawn
    from; default 0:1, the real distribution. It needs a generator trained with severity."""
    config.validate()
    device = config.device
    context = init(str(device), LONG_WAIT) if int(os.environ.get("WORLD_SIZE", "1")) > 1 else None
    context = context or Context(rank=0, world_size=1, device=parse_device(str(device)))
    G, trained = _open_generator(checkpoint, dataset, context.device)
    split.check(dataset)
    train_indices = split.indices(dataset, "train")
    classes = sorted(set(config.classes)) if config.classes else None
    for class_id in classes or []:
        dataset.classes.check_id(class_id)
    amp = torch.autocast(
        context.device.type, dtype=torch.bfloat16, enabled=resolve_bf16(config.precision, context.device)
    )
    radius = geometry.hole_radius(trained.max_dilation)
    job = _Job(G, checkpoint, dataset, train_indices, classes, config, radius, context.device, amp, progress)
    plan = (
        _stylegan_plan(job)
        if getattr(G, "is_stylegan", False)
        else _painting_plan(job, trained, Path(out_dir))
    )
    params = {
        "format": config.format,
        "checkpoint_sha256": file_digest(checkpoint),
        "dataset": dataset.spec,
        "split_fingerprint": split.fingerprint,
        "classes": classes,
        "mask_source": plan.mask_source,
        "seed": config.seed,
        "backgrounds": plan.where,
        "hole_dilation": job.hole_radius,
        "tile": config.tile,
        "class_table": dataset.classes.to_json(),
        **plan.particular,
    }
    return _write_set(context, Path(out_dir), params, plan, job)


def _open_generator(checkpoint: Path, dataset: DefectDataset, device):
    """(G in channels-last, its training config), refused unless it was trained for `dataset`'s
    classes and channels."""
    G, trained_classes, channels, trained = load_generator(checkpoint, device)
    if trained_classes != dataset.classes or channels != dataset.channels:
        raise DataError(
            f"{checkpoint} was trained for classes {list(trained_classes.names)} with {channels} channel(s); "
            f"{dataset.spec} has classes {list(dataset.classes.names)} with {dataset.channels}: use a "
            "checkpoint trained on this dataset"
        )
    return G.to(memory_format=torch.channels_last), trained  # NHWC: faster convolutions (RESULTS.md)


@dataclass
class _Job:
    """What every stage of one synthesis call reads."""

    G: torch.nn.Module
    checkpoint: Path
    dataset: DefectDataset
    train_indices: list[int]
    classes: list[int] | None
    config: SynthConfig
    hole_radius: int
    device: torch.device
    amp: contextlib.AbstractContextManager
    progress: bool


@dataclass
class _Plan:
    """How the items are drawn and painted, and what the set records about it. `paint` (batch ->
    [(image, region)]) is None for a StyleGAN generator, which `decode`s each item whole."""

    batches: Callable[[list[int]], Iterator[list[dict]]]
    paint: Callable | None
    decode: Callable | None
    redraw: Callable | None
    judge: object | None
    mask_source: str
    where: str
    particular: dict


def _stylegan_plan(job: _Job) -> _Plan:
    c = job.config
    _check_stylegan_options(job.checkpoint, c)
    classes = _stylegan_classes(job.dataset, job.train_indices, job.classes, job.checkpoint)
    return _Plan(
        batches=lambda todo: _stylegan_batches(todo, classes, c.seed, c.batch_size),
        paint=None,
        decode=lambda batch: _decode(job.G, batch, job.hole_radius, job.device, job.amp, job.classes),
        redraw=None,
        judge=None,
        mask_source="stylegan",
        where="none: the StyleGAN generator draws each crop whole",
        particular={},
    )


def _painting_plan(job: _Job, trained, out_dir: Path) -> _Plan:
    """Backgrounds, masks (drawn, or real defects pasted), severities, the judge: an inpainter's plan."""
    c, dataset = job.config, job.dataset
    backgrounds_dir = Path(c.backgrounds) if c.backgrounds is not None else None
    source = c.background_source
    if source == "auto" and backgrounds_dir is None:
        source = _recorded_source(out_dir) or "auto"  # resume as the run began
    backgrounds, source = _backgrounds(dataset, job.train_indices, backgrounds_dir, dataset.channels, source)
    if c.format == "severstal":
        _check_one_size(dataset, job.train_indices, backgrounds_dir)
    severity_of, severity_range = _severity_source(job.G, job.checkpoint, c.severity, c.mode)
    generator_lock = threading.Lock()  # the painting loop and the prefetch thread (erasing) share G

    def paint(batch):
        with generator_lock:
            return paint_batch(job.G, batch, job.hole_radius, c.tile, job.device, job.amp)

    if source == "cleaned":
        backgrounds = _cleaned(backgrounds, c.seed, paint, job.hole_radius + ERASE_MARGIN)
    band, mask_source = c.band, c.mask_source
    if c.mode == "harmonize":
        band = max(1, job.hole_radius) if band is None else band
        draw = _Harmonizer(DefectPaster(dataset, job.train_indices, progress=job.progress), band, c.rim)
        mask_source = "paste"
    else:
        composer = build_mask_source(mask_source, dataset, job.train_indices, progress=job.progress)
        draw = _Painter(composer, job.hole_radius)
    draw.check(job.classes)  # before anything is written: an impossible --classes leaves no folder
    judge = None
    if c.judge is not None:
        from defectgen.evaluate.judge import LabelJudge

        use_bf16 = resolve_bf16(c.precision, job.device)
        judge = LabelJudge.from_evaluation(Path(c.judge), dataset.classes, dataset.channels, use_bf16)
    learned = mask_source.startswith("learned:")
    particular = {  # what only painting records
        **({"window_noise": "per window"} if c.tile else {}),  # older tiled runs drew per item
        **({"severity": list(severity_range)} if severity_range else {}),
        **({} if c.mode == "paint" else {"mode": c.mode, "band": band, "rim": c.rim}),
        **({"guide_sha256": trained.extra["guide_sha256"]} if "guide_sha256" in trained.extra else {}),
        # the StyleGAN generator that drew the shapes, by content (a run's last.pt moves on)
        **({"learned_sha256": file_digest(stylegan_checkpoint(mask_source.partition(":")[2]))}
           if learned else {}),
        **({} if judge is None else {
            "judge": judge.description,
            "judge_thresholds": {str(k): v for k, v in judge.thresholds.items()},
            "attempts": c.attempts,
        }),
    }  # fmt: skip
    return _Plan(
        batches=lambda todo: _batches(
            todo, backgrounds, draw, job.classes, c.seed, c.batch_size, severity_of
        ),
        paint=paint,
        decode=None,
        redraw=lambda index, attempt: _item(
            index, attempt, backgrounds, draw, job.classes, c.seed, severity_of
        ),
        judge=judge,
        mask_source=mask_source,
        where=str(backgrounds_dir) if backgrounds_dir else BACKGROUND_TEXT[source],
        particular=particular,
    )


def _write_set(context, out_dir: Path, params: dict, plan: _Plan, job: _Job) -> dict:
    """Paint and write every item this process owns, then (rank 0) finish the folder.

    Under torchrun each process paints items i with i % world_size == rank (an item is a
    function of (seed, i) alone); rank 0 holds the lock, prepares the folder and finishes it."""
    c = job.config
    with contextlib.ExitStack() as held:

        def finished_items() -> list[int]:  # rank 0: the lock for the whole run, then the folder
            held.enter_context(locked(out_dir))
            return sorted(prepare(out_dir, params, c.n))

        done = set(on_main(context, finished_items))  # a refusal reaches every process
        todo = [i for i in range(c.n) if i not in done and i % context.world_size == context.rank]
        suffix = ".jpg" if c.format == "severstal" else ".png"
        error = None
        try:
            with Progress(disable=not (job.progress and context.is_main), transient=False) as bar:
                task = bar.add_task("synthesizing", total=len(todo))

                def written(record):  # in a writer thread, once the item's files are in place
                    append_record(out_dir, record)
                    bar.advance(task)

                with _Writer(written) as writer:
                    for batch in prefetched(plan.batches(todo), PREFETCH_BATCHES):
                        if plan.paint is None:
                            batch, painted = plan.decode(batch)
                        else:
                            painted = plan.paint(batch)
                        if plan.judge is not None:
                            batch, painted = _judged(
                                batch, painted, plan.judge, c.attempts, plan.redraw, plan.paint
                            )
                        for item, (image, region) in zip(batch, painted, strict=True):
                            writer.submit(
                                write_item,
                                out_dir,
                                item,
                                image,
                                region,
                                c.format,
                                suffix,
                                plan.mask_source,
                                c.seed,
                            )
        except Exception as err:  # noqa: BLE001 - the other processes must hear of it (settle)
            error = err
        settle(context, error)
        try:
            return on_main(
                context, lambda: finish(out_dir, complete(out_dir, c.n), c.format, job.dataset, c.n, params)
            )
        finally:
            shutdown(context)  # leave no process-group threads to the interpreter's exit


# --- inputs ---------------------------------------------------------------------------------


BACKGROUND_TEXT = {
    "free": "training half, defect-free",
    "labelled": "training half, defect images (new defects away from the old; label: both)",
    "cleaned": "training half, defect images with their defects erased",
}


def _backgrounds(dataset, train_indices, folder, channels, source: str) -> tuple[list[Background], str]:
    """The images to paint on and the background source they come from (see module docstring)."""
    if folder is not None:
        if source not in ("auto", "free"):
            raise ConfigError(
                f"--backgrounds DIR holds defect-free images; --background-source {source} paints on the "
                "training half's defect images instead: give one or the other"
            )
        folder = Path(folder)
        if not folder.is_dir():
            raise DataError(f"{folder}: --backgrounds folder not found")
        files = [p for p in sorted(folder.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES]
        if not files:
            raise DataError(f"{folder}: no images for --backgrounds")
        return [Background(p.name, lambda p=p: read_image(p, channels)) for p in files], "free"
    free = [i for i in train_indices if not dataset.items[i].class_ids]
    labelled = [i for i in train_indices if dataset.items[i].class_ids]
    if source == "auto":
        source = "free" if len(free) >= MIN_FREE else AUTO_FALLBACK
        if source != "free" and not labelled:
            source = "free"  # nothing else to paint on: say so below if there is nothing at all
    if source == "free":
        if not free:
            raise DataError(
                f"the training half of {dataset.spec} has no defect-free images to paint on; use "
                "--background-source cleaned or labelled (its defect images), or --backgrounds DIR"
            )
        return [Background(dataset.items[i].item_id, lambda i=i: dataset.load_image(i)) for i in free], source
    if not labelled:
        raise DataError(
            f"the training half of {dataset.spec} has no defect images for --background-source {source}"
        )
    return [
        Background(
            dataset.items[i].item_id, lambda i=i: dataset.load_image(i), lambda i=i: dataset.load_masks(i)
        )
        for i in labelled
    ], source


def _recorded_source(out_dir: Path) -> str | None:
    """The background source an earlier run into `out_dir` recorded, if any (an `auto` resume
    keeps it even when today's rule would choose otherwise)."""
    text = read_params(out_dir).get("backgrounds")
    return next((source for source, known in BACKGROUND_TEXT.items() if known == text), None)


def _cleaned(backgrounds: list[Background], seed: int, paint, radius: int) -> list[Background]:
    """The same backgrounds with their defects erased by the generator (`paint`, on items with
    an explicit hole and empty labels), each erased once per (seed, background) and cached."""
    cache: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def erased(background: Background) -> tuple[np.ndarray, np.ndarray]:
        if background.key not in cache:
            image, masks = background.load(), background.load_masks()
            hole = hole_of(masks, radius)
            words = np.random.SeedSequence([seed, 11, *background.key.encode()]).generate_state(1, np.uint64)
            item = {
                "image": image,
                "masks": np.zeros_like(masks),
                "hole": hole,
                "noise_seed": int(words[0] >> 1),
            }
            ((cleaned, region),) = paint([item])
            if len(cache) >= CLEANED_CACHE:
                cache.pop(next(iter(cache)))
            cache[background.key] = (cleaned, region)
        return cache[background.key]

    return [Background(b.key, lambda b=b: erased(b)[0], None, lambda b=b: erased(b)[1]) for b in backgrounds]


def _check_one_size(dataset, train_indices, folder) -> None:
    if folder is None and dataset.image_shape is not None:
        return
    raise ConfigError(
        "--format severstal writes RLE for one fixed image size (Severstal strips); these backgrounds "
        "are not all one size: use --format folder"
    )


PREFETCH_BATCHES = 2  # batches composed ahead of the generator
WRITER_THREADS = 3  # encoding and writing beside the generator
WRITER_QUEUE = 2 * WRITER_THREADS  # items painted but not yet written, at most


def prefetched(iterable, depth: int) -> Iterator:
    """Iterate `iterable` in a background thread, at most `depth` items ahead of the consumer;
    an exception in it is raised in the consumer. Stopping early stops the thread."""
    slots: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def put(entry) -> bool:
        """Wait for room, or give up once the consumer has stopped."""
        while not stop.is_set():
            try:
                slots.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce():
        try:
            for value in iterable:
                if not put((value, None)):
                    return
            put((done, None))
        except BaseException as err:  # handed to the consumer
            put((done, err))

    thread = threading.Thread(target=produce, name="synth-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            value, error = slots.get()
            if value is done:
                if error is not None:
                    raise error
                return
            yield value
    finally:
        stop.set()
        thread.join()


class _Writer:
    """Encodes and writes items in `WRITER_THREADS` threads while the generator paints the next
    batch; at most `WRITER_QUEUE` items wait. `on_written(record)` runs (serialised) after an
    item's files are in place; the first failure is raised in the caller."""

    def __init__(self, on_written):
        self.on_written = on_written
        self.pool = ThreadPoolExecutor(WRITER_THREADS, thread_name_prefix="synth-write")
        self.slots = threading.BoundedSemaphore(WRITER_QUEUE)
        self.lock = threading.Lock()
        self.errors: list[BaseException] = []

    def submit(self, write, *args) -> None:
        self._raise()
        self.slots.acquire()

        def task():
            try:
                record = write(*args)
                with self.lock:
                    if not self.errors:
                        self.on_written(record)
            except BaseException as err:
                with self.lock:
                    self.errors.append(err)
            finally:
                self.slots.release()

        self.pool.submit(task)

    def _raise(self) -> None:
        with self.lock:
            if self.errors:
                raise self.errors[0]

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.pool.shutdown(wait=True)
        if exc[0] is None:
            self._raise()
        return False


def _batches(todo, backgrounds, draw, classes, seed, batch_size, severity_of=None) -> Iterator[list[dict]]:
    """Items grouped into batches of one image size; each item fully determined by (seed, i)."""
    batch: list[dict] = []
    for index in todo:
        item = _item(index, 0, backgrounds, draw, classes, seed, severity_of)
        image = item["image"]
        if batch and (len(batch) == batch_size or batch[0]["image"].shape != image.shape):
            yield batch
            batch = []
        batch.append(item)
    if batch:
        yield batch


BACKGROUND_TRIES = 10  # labelled backgrounds drawn for an item before there is declared no room


def _item(index: int, attempt: int, backgrounds, draw, classes, seed: int, severity_of=None) -> dict:
    """Item `index` (draw `attempt`): background and masks, a function of (seed, index, attempt);
    with `severity_of`, also its severity map (from a stream of its own)."""
    key = [seed, index] if attempt == 0 else [seed, index, attempt]
    rng = np.random.default_rng(key)
    for _ in range(BACKGROUND_TRIES):
        background = backgrounds[int(rng.integers(len(backgrounds)))]
        existing = background.load_masks() if background.load_masks else None
        image, masks, hole, info = draw(rng, background.load(), classes, background.key, existing)
        if existing is None or (masks & ~existing).any():
            break
    else:
        raise DataError(
            f"no room for a new defect away from the existing ones on {BACKGROUND_TRIES} labelled "
            "backgrounds in a row; use --background-source cleaned"
        )
    severity = {}
    if severity_of is not None:  # for the new defects only (a labelled background's stay as they are)
        new = masks if existing is None else masks & ~existing
        rng = np.random.default_rng([*key, SEVERITY_STREAM])
        severity_map, drawn = severity_of(rng, image, new, masks.any(axis=0))
        severity = {"severity": severity_map, "severities": drawn}
    return {
        **severity,  # float32 [1, H, W] each defect's severity, and [(class_id, severity), ...]
        "index": index,
        "attempt": attempt,
        "seed": seed,
        "background": background.key,
        "image": image,  # uint8 [H, W, C]
        "masks": masks,  # bool [K, H, W]: the label (with a labelled background's own defects)
        "hole": hole,  # float32 [1, H, W] to repaint, or None: the masks dilated by the hole radius
        "erased": background.load_erased() if background.load_erased else None,  # bool [H, W] or None
        "info": info,
    }


class _Painter:
    """`paint` mode: masks from the mask source; the generator paints them whole. On a labelled
    background new defects keep `hole_radius` + 1 px away from the existing ones, so the hole
    around them never touches those."""

    def __init__(self, composer, hole_radius: int):
        self.composer, self.hole_radius = composer, hole_radius

    def check(self, classes) -> None:
        self.composer._allowed(classes)

    def __call__(self, rng, image, classes, key, existing=None):
        height, width = image.shape[:2]
        if existing is None:
            masks, info = self.composer.compose(rng, height, width, classes)
            return image, masks, None, info
        avoid = hole_of(existing, self.hole_radius + 1)[0] > 0
        new, info = self.composer.compose(rng, height, width, classes, avoid=avoid)
        return image, new | existing, hole_of(new, self.hole_radius), info


class _Harmonizer:
    """`harmonize` mode: real defects pasted; the generator repaints only their seam."""

    TRIES = 10  # plans drawn before a background is declared too small for every training defect

    def __init__(self, paster: DefectPaster, band: int, rim: int):
        self.paster, self.band, self.rim = paster, band, rim

    def check(self, classes) -> None:
        self.paster.allowed(classes)

    def __call__(self, rng, image, classes, key, existing=None):
        for _ in range(self.TRIES):
            plan = self.paster.plan(rng, classes)
            pasted = self.paster.paste(rng, image, plan, existing=existing)
            new = pasted.masks if existing is None else pasted.masks & ~existing
            if new.any():
                hole = seam(new.any(axis=0), self.band, self.rim)
                if existing is not None:
                    hole &= ~existing.any(axis=0)  # a seam never repaints a defect already there
                info = {"defects": pasted.defects, "plan": plan}
                return pasted.image, pasted.masks, hole[None].astype(np.float32), info
        raise DataError(
            f"background {key} ({image.shape[0]}x{image.shape[1]}) is smaller than every training defect "
            f"drawn for it in {self.TRIES} tries; use larger backgrounds or --mode paint"
        )


def _severity_source(G, checkpoint: Path, severity, mode: str):
    """(severity_of, range) where severity_of(rng, image, new masks, union of all defects) ->
    (map, [(class_id, severity)]) draws from the range for new defects in paint mode, measures
    the pasted real defects in harmonize mode (range None), and both are None for a generator
    trained without severity."""
    if not G.severity:
        if severity is not None:
            raise ConfigError(
                f"--severity needs a generator trained with severity; {checkpoint} was trained without it "
                "(train a new run: every preset has model.generator.severity=true)"
            )
        return None, None
    if mode == "harmonize":
        if severity is not None:
            raise ConfigError(
                "--severity does not apply to --mode harmonize: pasted real defects keep their own severity"
            )
        from defectgen.checkpoint import load_checkpoint

        table = SeverityTable.from_json(load_checkpoint(checkpoint).get("severity_table", {}))
        return lambda rng, image, new, union: measured_map(table, image, new, union), None
    low, high = parse_range(severity) if isinstance(severity, str) else (severity or (0.0, 1.0))
    if severity is not None and not isinstance(severity, str):
        low, high = parse_range(f"{low}:{high}")
    return lambda rng, image, new, union: drawn_map(new, low, high, rng), (low, high)


def _judged(batch, painted, judge, attempts: int, make_item, paint) -> tuple[list[dict], list]:
    """Score each painted item; redraw the rejected ones (up to `attempts` draws in all) and keep
    the first accepted draw, or else the draw whose weakest defect came closest."""
    kept_items, kept_painted = [], []
    for item, result in zip(batch, painted, strict=True):
        best = None
        for attempt in range(attempts):
            if attempt:
                item = make_item(item["index"], attempt)
                (result,) = paint([item])
            scores = judge.score(result[0], item["masks"])
            candidate = (judge.margin(scores), attempt, item, result, scores)
            if best is None or candidate[0] > best[0]:
                best = candidate
            if judge.accepts(scores):
                best = candidate
                break
        _, _, item, result, scores = best
        item = {
            **item,
            "label_score": {str(k): v for k, v in scores.items()},
            "label_accepted": judge.accepts(scores),
        }
        kept_items.append(item)
        kept_painted.append(result)
    return kept_items, kept_painted


# --- the StyleGAN generator -------------------------------------------------------------------------------

STYLEGAN_ATTEMPTS = 16  # draws of an item before an empty mask is accepted as what the StyleGAN gives


PAINTING_ONLY = (
    "mode",
    "mask_source",
    "backgrounds",
    "background_source",
    "tile",
    "severity",
    "judge",
    "attempts",
)


def _check_stylegan_options(checkpoint, config: SynthConfig) -> None:
    """Refuse the settings that mean painting on a background: a StyleGAN generator draws whole crops."""
    default = SynthConfig()
    given = [
        "--" + name.replace("_", "-")
        for name in PAINTING_ONLY
        if getattr(config, name) != getattr(default, name)
    ]
    if given:
        raise ConfigError(
            f"{checkpoint} is a StyleGAN: it draws each crop and its mask whole, with no background, mask "
            f"source or painting; drop {', '.join(given)} (they are for an inpainter's checkpoint)"
        )


def _stylegan_classes(dataset, train_indices, classes, checkpoint) -> list[int]:
    """The classes a StyleGAN generator's items are drawn from: those it trained on (recorded in its
    checkpoint; else the split's training half's), narrowed to `classes` when given."""
    from defectgen.checkpoint import load_checkpoint

    recorded = load_checkpoint(checkpoint).get("trained_classes")
    learned = sorted(recorded or {k for i in train_indices for k in dataset.items[i].class_ids})
    if classes is None:
        return learned
    missing = [dataset.classes.name(k) for k in classes if k not in learned]
    if missing:
        raise ConfigError(
            f"--classes: the StyleGAN never saw {', '.join(missing)} (no such defect in the training half); "
            f"it can draw {', '.join(dataset.classes.name(k) for k in learned)}"
        )
    return classes


def _stylegan_item(index: int, attempt: int, classes: list[int], seed: int) -> dict:
    """Item `index` (draw `attempt`) of a StyleGAN: its class, a function of (seed, index, attempt)."""
    rng = np.random.default_rng([seed, index] if attempt == 0 else [seed, index, attempt])
    return {
        "index": index,
        "attempt": attempt,
        "seed": seed,
        "class_id": int(classes[rng.integers(len(classes))]),
        "background": "stylegan",
        "erased": None,
    }


def _stylegan_batches(todo, classes, seed, batch_size) -> Iterator[list[dict]]:
    for start in range(0, len(todo), batch_size):
        yield [_stylegan_item(i, 0, classes, seed) for i in todo[start : start + batch_size]]


@torch.no_grad()
def _decode(G, batch: list[dict], hole_radius: int, device, amp, only=None) -> tuple[list[dict], list]:
    """Draw each item's crop and label maps (one generator call per draw: noise from the item's
    own seed, so a draw does not depend on its batch); a draw without a defect of the item's
    class, or with a defect of a class outside `only` (`--classes`), is drawn again, up to
    `STYLEGAN_ATTEMPTS` draws (the last is kept). Returns the items with image, masks and
    record, and (uint8 image, bool painted region) per item."""
    items, painted = [], []
    for item in batch:
        for attempt in range(STYLEGAN_ATTEMPTS):
            if attempt:
                item = {**item, "attempt": attempt}
            generator = torch.Generator().manual_seed(item_seed(item))
            z = G.draw_style(1, generator, device=device)
            classes = torch.tensor([item["class_id"] - 1], device=device)
            with amp:
                output = G(z, classes, generator=generator).float()
            image, masks = decoded(output, G.image_channels)
            present = {k + 1 for k in np.flatnonzero(masks.any(axis=(1, 2)))}
            if item["class_id"] in present and (only is None or present <= set(only)):
                break  # the class it was drawn for is there, and no class outside `only`
        defects = [
            {"source": "stylegan", "class_id": k + 1, "area": int(mask.sum())}
            for k, mask in enumerate(masks)
            if mask.any()
        ]
        items.append({**item, "image": image, "masks": masks, "info": {"defects": defects}})
        painted.append((image, hole_of(masks, hole_radius)[0] > 0))
    return items, painted
