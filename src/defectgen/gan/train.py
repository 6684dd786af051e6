"""GAN training: `defectgen train`. Reads top to bottom: set-up, then one loop of D step,
G step, EMA, ADA, logging, samples and checkpoints.

The losses of an iteration are one object with phases (`objective.Objective` for the
inpainter, `objective.StyleGANObjective` for the StyleGAN generator: D, lazy R1, G; `_phases` binds them to
one batch and one generator forward); this module owns the loop around them: batches, the
optimiser steps, the EMA generator for samples and synthesis, adaptive augmentation
(StyleGAN2-ADA), logging, samples and checkpoints.

Determinism: batches and every random draw are functions of (seed, step, rank), and
checkpoints carry optimiser, EMA and ADA state, so N steps + `--resume` + N steps gives the
same weights as 2N steps (on CPU, same thread count).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    ProgressColumn,
    TextColumn,
    TimeRemainingColumn,
)
from rich.text import Text
from torchvision.utils import make_grid

from defectgen import distributed, ui
from defectgen.data.dataset import DefectDataset
from defectgen.data.lineage import lineage
from defectgen.data.patches import DefectCrops
from defectgen.data.split import Split
from defectgen.errors import ConfigError, DefectgenError
from defectgen.fileio import OWNER_MARK, claim_folder, file_digest
from defectgen.gan.augment import AdaptiveAugment
from defectgen.gan.checkpoint import CheckpointError, link_atomically, load_checkpoint, save_checkpoint
from defectgen.gan.config import TrainConfig
from defectgen.gan.health import run_warning
from defectgen.gan.objective import Objective, StyleGANObjective
from defectgen.models import composite, count_parameters
from defectgen.models.stylegan import binarised, mask_probability
from defectgen.ui import console, say


class DivergenceError(DefectgenError):
    """A loss became NaN or infinite."""


# Settings a resumed run may continue with changed: how long it runs and its bookkeeping, none of
# which changes what a step computes.
MAY_CHANGE_ON_RESUME = ("steps", "log_every", "sample_every", "checkpoint_every", "keep_checkpoints")


def train(
    dataset: DefectDataset,
    split: Split,
    config: TrainConfig,
    out_dir: Path,
    resume: bool = False,
    device: str | None = None,
    progress: bool = True,
) -> Path:
    """Train G and D on the training half of `split`; returns the path of `last.pt`."""
    config.validate()
    if resume and not config.model:  # the run's own models, whatever the preset has become since
        config = _with_run_model(config, Path(out_dir))
    config = config.resolved()  # the run's files hold its whole model spec, whatever the presets become
    extra = {k: v for k, v in config.extra.items() if k != "guide_sha256"}  # only this run's guide
    if config.guide:  # the guide by content: resuming with another is refused; evaluate's judge must differ
        from defectgen.gan.guide import load_guide

        load_guide(
            config.guide, config.guide_encoder, dataset.channels, len(dataset.classes)
        )  # before any file
        extra["guide_sha256"] = file_digest(Path(config.guide))
    config = dataclasses.replace(config, extra=extra)
    out_dir = Path(out_dir)
    context = distributed.init(device)
    try:
        return _train(dataset, split, config, out_dir, resume, context, progress)
    finally:
        distributed.shutdown(context)


def _train(dataset, split, config, out_dir, resume, context, progress) -> Path:
    device = context.device
    split.check(dataset)
    checkpoints = out_dir / "checkpoints"
    if context.is_main:
        _prepare_run_folder(out_dir, config, resume, dataset, split)
    distributed.barrier(context)
    spec = config.model_spec
    models = _build_models(config, dataset.channels, len(dataset.classes), device)
    start_step = _resume(models, checkpoints, config, dataset, split, context) if resume else 0
    G_step = torch.compile(models.G) if config.compile else models.G
    crops = DefectCrops(
        dataset,
        split.indices(dataset, "train"),
        crop_size=config.crop_size,
        max_dilation=config.max_dilation,
        seed=config.seed,
        progress=progress and context.is_main,
    )
    fixed = {k: v.to(device) for k, v in crops.fixed_batch(8).items()}
    if context.is_main:
        (out_dir / "severity.json").write_text(json.dumps(crops.severity.to_json()) + "\n")
    use_bf16 = distributed.resolve_bf16(config.precision, device)
    amp = torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16)
    objective = (
        StyleGANObjective.from_config(config)
        if spec.is_stylegan
        else Objective.from_config(config, models.guide)
    )
    if context.is_main:
        console.print(
            f"G {count_parameters(models.G) / 1e6:.2f} M, D {count_parameters(models.D) / 1e6:.2f} M "
            "parameters; "
            f"{crops.num_components} defects in {len(split.train)} training images; "
            f"crops {config.crop_size} px, batch {config.batch_size} x {context.world_size} process(es), "
            f"precision {'bf16' if use_bf16 else 'fp32'} on {device}"
        )
    last_path = checkpoints / "last.pt"
    with _progress_bar(progress and context.is_main) as bar:
        task = bar.add_task("training", total=config.steps, completed=start_step, losses="")
        log = _Log(out_dir / "metrics.jsonl", config, context)
        for step in range(start_step, config.steps):
            pairs = config.mode_seeking > 0 and not spec.is_stylegan
            batch = crops.batch(step, context.rank, config.batch_size, pairs=pairs)
            batch = {k: v.to(device) for k, v in batch.items()}
            if config.channels_last:
                batch["image"] = batch["image"].contiguous(memory_format=torch.channels_last)
            logs = _iteration(models, G_step, objective, batch, amp, config, step, context, last_path)
            done = step + 1
            bar.update(
                task,
                completed=done,
                losses=f"D {logs['loss_d']:.3f} G {logs['loss_g']:.3f} p {models.ada.p:.2f}",
            )
            log.add(logs, done)
            if context.is_main and (done % config.sample_every == 0 or done == config.steps):
                write = _write_stylegan_samples if spec.is_stylegan else _write_samples
                write(models.ema, fixed, out_dir / "samples" / f"step_{done:07d}.png", config.seed, amp)
            if context.is_main and (done % config.checkpoint_every == 0 or done == config.steps):
                state = _state(models, done, config, dataset, split, crops)
                _write_checkpoint(state, checkpoints, done, config.keep_checkpoints)
    if context.is_main and config.steps == start_step and not last_path.exists():
        raise ConfigError(f"nothing to train: steps={config.steps} and no checkpoint in {checkpoints}")
    if context.is_main:
        warning = run_warning(out_dir)
        if warning:
            say(("warning:", "yellow"), f" {out_dir}: {warning}")
    return last_path


@dataclasses.dataclass
class _Models:
    """What training updates and checkpoints: G, D, the EMA of G, their optimisers, ADA, and
    the frozen guide (or None)."""

    G: torch.nn.Module
    D: torch.nn.Module
    ema: torch.nn.Module
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    ada: AdaptiveAugment
    guide: torch.nn.Module | None


def _build_models(config, channels: int, num_classes: int, device) -> _Models:
    torch.manual_seed(config.seed)  # parameter initialisation only; all sampling is explicit
    spec = config.model_spec
    G = spec.build_generator(channels, num_classes).to(device)
    D = spec.discriminator.build(channels, num_classes).to(device)
    ema = copy.deepcopy(G).eval().requires_grad_(False)
    opt_g = torch.optim.Adam(G.parameters(), lr=config.lr_g, betas=config.betas)
    # Lazy R1 (StyleGAN2 appendix B): scale D's Adam so its effective step matches every-step R1.
    ratio = config.r1_interval / (config.r1_interval + 1)
    opt_d = torch.optim.Adam(
        D.parameters(), lr=config.lr_d * ratio, betas=tuple(b**ratio for b in config.betas)
    )
    ada = AdaptiveAugment(
        target=config.ada_target, interval=config.ada_interval, speed_images=config.ada_speed_images
    )
    if config.channels_last:
        G, D, ema = (m.to(memory_format=torch.channels_last) for m in (G, D, ema))
    guide = None
    if config.guide:
        from defectgen.gan.guide import load_guide

        guide = load_guide(config.guide, config.guide_encoder, channels, num_classes).to(device)
        if config.channels_last:
            guide = guide.to(memory_format=torch.channels_last)
    return _Models(G, D, ema, opt_g, opt_d, ada, guide)


def _resume(models: _Models, checkpoints: Path, config, dataset, split, context) -> int:
    """Load the newest checkpoint that loads into `models`; the step it was written at (0: none)."""
    state = _load_resumable(checkpoints)
    if state is None:
        return 0
    _check_compatible(state, config, dataset, split)
    for name in ("G", "D", "ema", "opt_g", "opt_d", "ada"):
        getattr(models, name).load_state_dict(state[name])
    if context.is_main:
        console.print(f"resuming from step {int(state['step'])}")
    return int(state["step"])


def _iteration(models: _Models, G_step, objective, batch, amp, config, step: int, context, last_path) -> dict:
    """One G+D iteration (D step with lazy R1, G step, EMA, ADA); returns what to log."""
    G, D, device = models.G, models.D, batch["image"].device
    rng = torch.Generator(device=device).manual_seed(_stream(config.seed, step, context.rank))
    logs: dict[str, float] = {}
    # One G forward per iteration (pix2pix / LaMa order): D learns from the detached fake, then
    # G learns through the updated, frozen D.
    d_loss, r1_loss, g_loss = _phases(G, G_step, D, objective, models.ada, batch, rng, amp, config.batch_size)
    D.requires_grad_(True)
    with amp:
        loss_d, d_logs = d_loss()
    logs.update(d_logs)
    _guard(loss_d, "D loss", step, last_path)
    models.opt_d.zero_grad(set_to_none=True)
    loss_d.backward()
    if objective.due(step):
        loss_r1, r1_logs = r1_loss()
        logs.update(r1_logs)
        _guard(loss_r1, "R1 penalty", step, last_path)
        loss_r1.backward()
    distributed.average_gradients(D, context)
    models.opt_d.step()
    D.requires_grad_(False)
    aug_rng = torch.Generator(device=device).manual_seed(_stream(config.seed, step, context.rank, 1))
    with amp:
        loss_g, g_logs = g_loss(aug_rng)
    logs.update(g_logs)
    _guard(loss_g, "G loss", step, last_path)
    models.opt_g.zero_grad(set_to_none=True)
    loss_g.backward()
    distributed.average_gradients(G, context)
    models.opt_g.step()
    images_per_step = config.batch_size * context.world_size
    _update_ema(models, config, step, images_per_step)
    if context.world_size > 1 and (step + 1) % config.ada_interval == 0:
        models.ada.all_reduce()  # every process moves p by the same, global r_t
    logs.update(models.ada.update(images_per_step))
    logs.update(ada_p=float(models.ada.p), loss_d=loss_d.item(), loss_g=loss_g.item())
    return logs


def _update_ema(models: _Models, config, step: int, images_per_step: int) -> None:
    half_life = config.ema_half_life_images
    if config.ema_rampup > 0:  # early on, follow G closely (StyleGAN2-ADA's ramp-up)
        half_life = min(half_life, (step + 1) * images_per_step * config.ema_rampup)
    ema_beta = 0.5 ** (images_per_step / max(half_life, 1e-8))
    with torch.no_grad():
        for p_ema, p in zip(models.ema.parameters(), models.G.parameters(), strict=True):
            p_ema.lerp_(p, 1.0 - ema_beta)
        for b_ema, b in zip(models.ema.buffers(), models.G.buffers(), strict=True):
            b_ema.copy_(b)


class _Log:
    """metrics.jsonl: the mean of every logged value over each `log_every` steps (rank 0)."""

    def __init__(self, path: Path, config, context):
        self.path, self.config, self.context = path, config, context
        self.window: dict[str, list[float]] = {}
        self.tick = time.perf_counter()

    def add(self, logs: dict, done: int) -> None:
        for key, value in logs.items():
            self.window.setdefault(key, []).append(value)
        if self.context.is_main and (done % self.config.log_every == 0 or done == self.config.steps):
            seconds = time.perf_counter() - self.tick
            record = {"step": done, "seconds_per_step": seconds / len(self.window["loss_d"])}
            record.update({k: float(np.mean(v)) for k, v in self.window.items()})
            with open(self.path, "a") as handle:
                handle.write(json.dumps(record) + "\n")
            self.window, self.tick = {}, time.perf_counter()


def _state(models: _Models, done: int, config, dataset, split, crops) -> dict:
    """A checkpoint: every state dict, the config, the class table and where the data came from."""
    return {
        "step": done,
        "config": config.to_dict(),
        "classes": dataset.classes.to_json(),
        "image_channels": dataset.channels,
        "dataset": {"spec": dataset.spec, "fingerprint": split.fingerprint},
        "lineage": lineage(split, split.train),  # every crop came from the split's training part
        **{name: getattr(models, name).state_dict() for name in ("G", "D", "ema", "opt_g", "opt_d", "ada")},
        "severity_table": crops.severity.to_json(),
        "trained_classes": list(crops.classes_present),  # classes it saw defects of
    }


# --- helpers ---------------------------------------------------------------------------------------


def _phases(G, G_step, D, objective, ada, batch: dict, rng: torch.Generator, amp, batch_size: int):
    """One G forward on `batch`, and the objective's three phases bound to it:
    (d_loss(), r1_loss(), g_loss(aug_rng)), each returning (loss, logs).

    Inpainter: G repaints the hole of each real crop (z and noise from `rng`); D compares the
    composite with the real crop. Decoder: G draws a crop and its label maps, conditioned on the
    class of each real crop's centred defect, from noise; D compares (image, binarised label
    maps) with the real crop and its labels."""
    real, hole, labels = batch["image"], batch["hole"], batch["labels"]
    z = G.draw_style(batch_size, rng, device=real.device)
    if getattr(G, "is_stylegan", False):
        with amp:
            output = G_step(z, batch["class"], generator=rng)
        fake = output[:, : G.image_channels]
        fake_labels = binarised(mask_probability(output, G.image_channels))
        return (
            lambda: objective.discriminator(D, ada, real, labels, fake.detach(), fake_labels.detach(), rng),
            lambda: objective.regularise(D, ada, real, labels, rng),
            lambda aug_rng: objective.generator(D, ada, fake, fake_labels, aug_rng),
        )
    with amp:
        raw = G_step(real, hole, labels, z=z, generator=rng, severity=batch["severity"])
        fake = composite(raw, real, hole)
    return (
        lambda: objective.discriminator(D, ada, real, fake.detach(), labels, hole, rng),
        lambda: objective.regularise(D, ada, real, labels, hole, rng),
        lambda aug_rng: objective.generator(D, ada, real, raw, fake, labels, hole, z, aug_rng),
    )


def _stream(*words: int) -> int:
    """A 63-bit seed derived from (seed, step, rank, ...) via numpy's SeedSequence."""
    return int(np.random.SeedSequence([int(w) for w in words]).generate_state(1, np.uint64)[0] >> 1)


def _guard(loss: torch.Tensor, name: str, step: int, last_path: Path) -> None:
    """Stop on NaN/inf, keeping the last good checkpoint, with advice."""
    if torch.isfinite(loss).all():
        return
    kept = (
        f"the last good checkpoint is {last_path}" if last_path.exists() else "no checkpoint was written yet"
    )
    raise DivergenceError(
        f"{name} became {float(loss.detach())} at step {step + 1}; training stopped and {kept}. Try a lower "
        "learning rate (--set lr_g=1e-4 --set lr_d=1e-4), a stronger R1 (--set r1_gamma=10), or "
        "--set precision=fp32, then run again with --resume"
    )


def _prepare_run_folder(out_dir: Path, config: TrainConfig, resume: bool, dataset, split) -> None:
    config_path = out_dir / "config.yaml"
    if out_dir.is_dir() and any(out_dir.iterdir()) and not resume and _is_run(out_dir):
        raise ConfigError(
            f"{out_dir} already holds a run; pass --resume to continue it or choose another --out"
        )
    claim_folder(out_dir, "run", legacy=_is_run)
    if resume and config_path.exists():
        previous = _flat(TrainConfig.load(config_path, written_by_a_run=True).resolved().to_dict())
        current = _flat(config.to_dict())
        before, now = previous.get("extra", {}).get("guide_sha256"), current["extra"].get("guide_sha256")
        if before and now and before != now:
            raise ConfigError(
                f"{config.guide} changed since this run started (SHA-256 {before}, now {now}); a run "
                "continues only with the guide it started with: restore that file or start a new run"
            )
        changed = sorted(
            k
            for k in current.keys() | previous.keys()
            if k not in MAY_CHANGE_ON_RESUME and previous.get(k) != current.get(k)
        )
        if changed:
            as_run = " ".join(f"--set {k}={_as_yaml(previous.get(k))}" for k in changed)
            raise ConfigError(
                f"--resume with a different config ({', '.join(changed)}) than {config_path}; "
                "only --steps and how often the run logs, samples and checkpoints may change when "
                f"resuming. The run's values: {as_run}"
            )
    config.save(config_path)
    (out_dir / "classes.json").write_text(json.dumps(dataset.classes.to_json(), indent=1) + "\n")


def _with_run_model(config: TrainConfig, out_dir: Path) -> TrainConfig:
    """`config` with the model spec of the run in `out_dir` (its config.yaml), when the run used
    the same preset; otherwise unchanged, and `_prepare_run_folder` says what differs."""
    path = out_dir / "config.yaml"
    if not path.is_file():
        return config
    try:
        previous = TrainConfig.load(path, written_by_a_run=True)
    except ConfigError:
        return config
    if previous.preset != config.preset:
        return config
    return dataclasses.replace(config, model=previous.resolved().model)


def _is_run(folder: Path) -> bool:
    """A run folder (marked, or written before folders were marked: it has config.yaml)."""
    return (folder / OWNER_MARK).is_file() or (folder / "config.yaml").is_file()


def _flat(data: dict, prefix: str = "") -> dict:
    """{"model": {"generator": {"width": 32}}} -> {"model.generator.width": 32} (what --set takes)."""
    flat = {}
    for key, value in data.items():
        if isinstance(value, dict) and value and key != "extra":
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _as_yaml(value) -> str:
    """A config value as `--set` reads it back (YAML: JSON's true/false/null and lists work)."""
    if isinstance(value, str):
        return value or '""'
    return json.dumps(list(value) if isinstance(value, tuple) else value)


def _load_resumable(checkpoints: Path) -> dict | None:
    """last.pt, or the newest step checkpoint that loads, saying so; None for a fresh run."""
    candidates = [checkpoints / "last.pt", *sorted(checkpoints.glob("step_*.pt"), reverse=True)]
    candidates = [c for c in candidates if c.exists()]
    if not candidates:
        return None
    for path in candidates:
        try:
            state = load_checkpoint(path)
        except CheckpointError as err:
            say(("warning:", "yellow"), f" {err}; trying an older checkpoint")
            continue
        if path.name != "last.pt":
            say((f"resuming from {path.name} instead of last.pt", "yellow"))
        return state
    raise CheckpointError(f"{checkpoints}: no checkpoint could be read; start a new run with another --out")


def _check_compatible(state: dict, config: TrainConfig, dataset: DefectDataset, split: Split) -> None:
    trained = TrainConfig.from_dict(state["config"], written_by_a_run=True).model_spec
    if trained != config.model_spec:
        raise ConfigError(
            f"the checkpoint holds other models than this config builds: checkpoint {trained}, config "
            f"{config.model_spec}; resume with the run's own config"
        )
    if state["classes"] != dataset.classes.to_json() or state["image_channels"] != dataset.channels:
        raise ConfigError("checkpoint was trained on other classes or channels than this dataset")
    lineage = state.get("lineage")
    if not isinstance(lineage, dict):
        raise ConfigError(
            "the checkpoint does not record what it was trained on (written by another defectgen version): "
            "train it again into a new --out"
        )
    if lineage.get("split_digest") != split.digest():
        raise ConfigError(
            "the checkpoint was trained with another split (or dataset content) than this one: resume "
            "with the run's own --split, or train into a new --out"
        )


def _write_checkpoint(state: dict, checkpoints: Path, step: int, keep: int) -> None:
    path = save_checkpoint(state, checkpoints / f"step_{step:07d}.pt")
    link_atomically(path, checkpoints / "last.pt")
    for old in sorted(checkpoints.glob("step_*.pt"))[:-keep]:
        old.unlink(missing_ok=True)


@torch.no_grad()
def _write_samples(ema, fixed: dict, path: Path, seed: int, amp) -> None:
    """Grid, one column per fixed crop: masked input, two EMA draws, real."""
    generator = torch.Generator(device=fixed["image"].device).manual_seed(seed)
    image, hole, labels, severity = fixed["image"], fixed["hole"], fixed["labels"], fixed["severity"]
    with amp:
        draws = [
            composite(ema(image, hole, labels, generator=generator, severity=severity), image, hole).float()
            for _ in range(2)
        ]
    masked = image * (1 - hole) + hole * 0.6  # holes shown light grey
    rows = torch.cat([masked, *draws, image])  # [4N, C, H, W]
    grid = make_grid(rows, nrow=image.shape[0], padding=2, normalize=True, value_range=(-1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = grid.mul(255).round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    Image.fromarray(pixels).save(path)


@torch.no_grad()
def _write_stylegan_samples(ema, fixed: dict, path: Path, seed: int, amp) -> None:
    """Grid: per class, one row of EMA draws and one row of their masks (white = any defect)."""
    generator = torch.Generator(device=fixed["image"].device).manual_seed(seed)
    columns, channels = fixed["image"].shape[0], ema.image_channels
    rows = []
    for class_index in range(ema.num_classes):
        classes = torch.full((columns,), class_index, dtype=torch.long, device=fixed["image"].device)
        z = ema.draw_style(columns, generator, device=classes.device)
        with amp:
            output = ema(z, classes, generator=generator).float()
        image = output[:, :channels].clamp(-1, 1)
        mask = (binarised(mask_probability(output, channels)).amax(dim=1, keepdim=True) * 2 - 1).expand_as(
            image
        )
        rows += [image, mask]
    grid = make_grid(torch.cat(rows), nrow=columns, padding=2, normalize=True, value_range=(-1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = grid.mul(255).round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    Image.fromarray(pixels.squeeze(-1) if pixels.shape[-1] == 1 else pixels).save(path)


def _progress_bar(enabled: bool):
    return ui.progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        SpeedColumn(),
        TextColumn("{task.fields[losses]}"),
        TimeRemainingColumn(),
        disable=not enabled,
        transient=False,
    )


class SpeedColumn(ProgressColumn):
    """Iterations per second (rich's own speed columns are for bytes)."""

    def render(self, task) -> Text:
        return Text(f"{task.speed:.2f} it/s" if task.speed else "-- it/s")
