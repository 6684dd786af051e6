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
`WRITER_THREADS` threads encode and write finished items (`Writer`), each stage bounded so
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
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from defectgen import geometry, launch, ui
from defectgen.data.dataset import DefectDataset
from defectgen.data.lineage import check_lineage, lineage, refuse_test_copies
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
from defectgen.errors import DataError
from defectgen.fileio import file_digest
from defectgen.gan.checkpoint import checkpoint_lineage, load_generator
from defectgen.masks import build_mask_source
from defectgen.masks.learned import stylegan_checkpoint
from defectgen.masks.user import mask_files
from defectgen.painter import paint_batch
from defectgen.paste import DefectPaster
from defectgen.synth.backgrounds import (
    BACKGROUND_TEXT,
    ERASE_MARGIN,
    check_one_size,
    erased,
    load_backgrounds,
    recorded_source,
)
from defectgen.synth.items import Harmonizer, Painter, batches, draw_item, judged, severity_source
from defectgen.synth.pipeline import PREFETCH_BATCHES, Writer, prefetched
from defectgen.synth.stylegan import (
    STYLEGAN_ATTEMPTS,
    check_stylegan_options,
    decode,
    stylegan_batches,
    stylegan_classes,
)
from defectgen.synth_config import SynthConfig
from defectgen.synthset.writer import append_record, complete, finish, locked, prepare, write_item


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
    context = init(str(device), LONG_WAIT) if launch.world_size() > 1 else None
    context = context or Context(rank=0, world_size=1, device=parse_device(str(device)))
    G, trained = _open_generator(checkpoint, dataset, context.device)
    split.check(dataset)
    made_from = _lineage(checkpoint, dataset, split, config)
    train_indices = split.indices(dataset, "train")
    classes = sorted(set(config.classes)) if config.classes else None
    for class_id in classes or []:
        dataset.classes.check_id(class_id)
    radius = geometry.hole_radius(trained.max_dilation)
    use_bf16 = resolve_bf16(config.precision, context.device)
    amp = torch.autocast(context.device.type, dtype=torch.bfloat16, enabled=use_bf16)
    job = _Job(
        G,
        checkpoint,
        dataset,
        split,
        train_indices,
        classes,
        config,
        radius,
        context.device,
        use_bf16,
        amp,
        progress,
    )
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
        "lineage": {**made_from, **({"judge": {"read": list(plan.judge.trained_on)}} if plan.judge else {})},
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


def _lineage(checkpoint: Path, dataset: DefectDataset, split: Split, config: SynthConfig) -> dict:
    """The set's lineage (`defectgen.data.lineage`): the split's training part, which backgrounds,
    shapes and pasted defects come from, and the lineages of the generator and of a learned mask
    source; refused when either was trained on another dataset or on this split's test half."""
    fix = "train a generator with this split (`defectgen train --split`), or synthesize with its own split"
    generator = checkpoint_lineage(checkpoint)
    check_lineage(generator, f"checkpoint {checkpoint}", dataset, split, fix)
    shapes = None
    if str(config.mask_source).startswith("folder:"):  # the user's masks: not copies of test labels
        folder = Path(str(config.mask_source).partition(":")[2])
        files = mask_files(folder) if folder.is_dir() else []  # a missing folder: UserMasks says so
        refuse_test_copies(files, dataset, split, f"--mask-source {config.mask_source}", "mask_path")
    if str(config.mask_source).startswith("learned:"):
        path = stylegan_checkpoint(str(config.mask_source).partition(":")[2])
        shapes = checkpoint_lineage(path)
        check_lineage(shapes, f"learned mask source {path}", dataset, split, fix)
    return lineage(split, split.train, generator=generator, mask_generator=shapes)


@dataclass
class _Job:
    """What every stage of one synthesis call reads."""

    G: torch.nn.Module
    checkpoint: Path
    dataset: DefectDataset
    split: Split
    train_indices: list[int]
    classes: list[int] | None
    config: SynthConfig
    hole_radius: int
    device: torch.device
    use_bf16: bool
    amp: contextlib.AbstractContextManager  # bf16 autocast when `use_bf16`
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
    check_stylegan_options(job.checkpoint, c)
    classes = stylegan_classes(job.dataset, job.train_indices, job.classes, job.checkpoint)
    return _Plan(
        batches=lambda todo: stylegan_batches(todo, classes, c.seed, c.batch_size),
        paint=None,
        decode=lambda batch: decode(job.G, batch, job.hole_radius, job.device, job.amp, job.classes),
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
        source = recorded_source(out_dir) or "auto"  # resume as the run began
    backgrounds, source = load_backgrounds(
        dataset, job.train_indices, backgrounds_dir, dataset.channels, source, set(job.split.test)
    )
    if c.format == "severstal":
        check_one_size(dataset, job.train_indices, backgrounds_dir)
    severity_of, severity_range = severity_source(job.G, job.checkpoint, c.severity, c.mode)
    generator_lock = threading.Lock()  # the painting loop and the prefetch thread (erasing) share G

    def paint(batch):
        with generator_lock:
            return paint_batch(job.G, batch, job.hole_radius, c.tile, job.device, job.amp)

    if source == "cleaned":
        backgrounds = erased(backgrounds, c.seed, paint, job.hole_radius + ERASE_MARGIN)
    band, mask_source = c.band, c.mask_source
    if c.mode == "harmonize":
        band = max(1, job.hole_radius) if band is None else band
        draw = Harmonizer(DefectPaster(dataset, job.train_indices, progress=job.progress), band, c.rim)
        mask_source = "paste"
    else:
        composer = build_mask_source(
            mask_source, dataset, job.train_indices, progress=job.progress, only=job.classes
        )
        draw = Painter(composer, job.hole_radius)
    draw.check(job.classes)  # before anything is written: an impossible --classes leaves no folder
    judge = None
    if c.judge is not None:
        from defectgen.evaluate.judge import LabelJudge

        judge = LabelJudge.from_evaluation(Path(c.judge), dataset.classes, dataset.channels, job.use_bf16)
        leaked = sorted(set(judge.trained_on) & set(job.split.test))
        if leaked:  # the items it keeps would be chosen by a model that saw the test half
            raise DataError(
                f"--judge {c.judge}: its U-Net trained on {len(leaked)} image(s) of this split's test half "
                f"(first: {leaked[0]}); judge with an evaluation of this split"
            )
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
        batches=lambda todo: batches(todo, backgrounds, draw, job.classes, c.seed, c.batch_size, severity_of),
        paint=paint,
        decode=None,
        redraw=lambda index, attempt: draw_item(
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
            with ui.progress(disable=not (job.progress and context.is_main), transient=False) as bar:
                task = bar.add_task("synthesizing", total=len(todo))

                def written(record):  # in a writer thread, once the item's files are in place
                    append_record(out_dir, record)
                    bar.advance(task)

                with Writer(written) as writer:
                    for batch in prefetched(plan.batches(todo), PREFETCH_BATCHES):
                        if plan.paint is None:
                            batch, painted = plan.decode(batch)
                        else:
                            painted = plan.paint(batch)
                        if plan.judge is not None:
                            batch, painted = judged(
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


__all__ = ["BACKGROUND_TEXT", "STYLEGAN_ATTEMPTS", "prefetched", "synthesize", "write_item"]
