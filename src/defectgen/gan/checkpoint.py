"""Checkpoints: state dicts only, written atomically, read with `weights_only=True`.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts — no pickled
classes — so loading it cannot run code (`torch.load(..., weights_only=True)` refuses anything
else). Writes go to a temporary file in the same folder, are fsync'ed, then renamed over the
target: a reader (or a resumed run after kill -9) sees the old file or the new one, never half
of one.
"""

from __future__ import annotations

import errno
import os
import pickle
import zipfile
from pathlib import Path

import torch

from defectgen.errors import DefectgenError
from defectgen.fileio import is_torch_file

FORMAT = "defectgen-checkpoint/1"


class CheckpointError(DefectgenError):
    """A checkpoint file is missing, corrupt, foreign or unsafe."""


def save_checkpoint(state: dict, path: Path) -> Path:
    """Write `state` to `path` atomically (temp file + fsync + rename + directory fsync)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as handle:
            torch.save({"format": FORMAT, **state}, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        reason = "disk full" if err.errno == errno.ENOSPC else f"cannot write ({err})"
        raise CheckpointError(
            f"{path}: {reason}; the previous checkpoint is intact. Free space (or fix the folder) and "
            "run the same command with --resume"
        ) from err
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return path


def link_atomically(source: Path, target: Path) -> None:
    """Make `target` name the same file as `source` (hard link, then rename: atomic)."""
    tmp = target.with_name(f".{target.name}.tmp{os.getpid()}")
    tmp.unlink(missing_ok=True)
    try:
        os.link(source, tmp)
    except OSError:  # file systems without hard links: copy bytes instead
        tmp.write_bytes(Path(source).read_bytes())
    os.replace(tmp, target)
    _fsync_dir(target.parent)


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict:
    """Read a checkpoint written by `save_checkpoint`; refuse anything else with a clear error."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    if not is_torch_file(path):
        raise CheckpointError(
            f"{path}: not a checkpoint (not a file that PyTorch writes); give RUN/checkpoints/last.pt of a "
            "`defectgen train` run"
        )
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(
            f"{path}: refused — the file holds objects other than tensors and plain data "
            "(it could run code when loaded); only load checkpoints written by defectgen"
        ) from err
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as err:
        raise CheckpointError(f"{path}: corrupt or truncated checkpoint ({err})") from err
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a defectgen checkpoint (format {FORMAT})")
    return state


def checkpoint_lineage(path: Path) -> dict | None:
    """What the checkpoint at `path` was trained on (`defectgen.data.lineage`; None when it
    does not say)."""
    lineage = load_checkpoint(path).get("lineage")
    return lineage if isinstance(lineage, dict) else None


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def load_generator(
    path: Path, device: str | torch.device = "cpu", use_ema: bool = True, expect: str | None = None
):
    """The (EMA) generator of a training checkpoint, in eval mode, with what it was trained on.
    `expect` ("inpainter" or "stylegan"): refuse a checkpoint of the other kind, saying so.

    Returns (G, classes: ClassTable, image_channels, config: TrainConfig).
    """
    from defectgen.data.classes import ClassTable
    from defectgen.gan.config import TrainConfig

    state = load_checkpoint(path, map_location=device)
    try:
        config = TrainConfig.from_dict(state["config"], written_by_a_run=True)
        classes = ClassTable.from_json(state["classes"])
        channels = int(state["image_channels"])
        kind = config.model_spec.kind
        if expect is not None and kind != expect:
            what = {
                "stylegan": "a StyleGAN (`train --model stylegan`): it draws crops and masks from noise, "
                "see `defectgen synth`",
                "inpainter": "an inpainter: it paints into given masks",
            }[kind]
            article = "an" if expect == "inpainter" else "a"
            raise CheckpointError(f"{path} holds {what}; this command needs {article} {expect} checkpoint")
        G = config.model_spec.build_generator(channels, len(classes))
        G.load_state_dict(state["ema" if use_ema else "G"])
    except (KeyError, RuntimeError, TypeError, ValueError) as err:
        raise CheckpointError(f"{path}: not a complete defectgen training checkpoint ({err})") from err
    return G.to(device).eval().requires_grad_(False), classes, channels, config
