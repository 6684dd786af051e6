"""Faults injected for real: kill -9 mid-training and mid-synthesis, a full disk while
checkpointing, a decompression bomb, two writers on one folder, and bad input on every verb.
The table in docs/RELIABILITY.md lists each fault, where its test is, and what survives."""

from __future__ import annotations

import errno
import os
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest

from defectgen.cli import main
from defectgen.data import open_dataset
from defectgen.data.split import make_split
from defectgen.errors import DataError
from defectgen.gan.checkpoint import CheckpointError, load_checkpoint
from defectgen.gan.config import TrainConfig
from defectgen.gan.train import train

FIXTURE = Path(__file__).parents[1] / "fixtures" / "tiny_folder"
TINY_SETS = [
    "--set",
    "model.resolution=32",
    "--set",
    "batch_size=2",
    "--set",
    "precision=fp32",
    "--set",
    "sample_every=1000",
    "--set",
    "checkpoint_every=2",
    "--set",
    "log_every=1",
]
VERBS_WITH_DATA = ("inspect", "split", "train", "synth", "evaluate")


def _cli(*args: str, **kwargs) -> list[str]:
    return [sys.executable, "-m", "defectgen", *args]


@pytest.fixture(scope="module")
def split_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("split") / "split.json"
    assert main(["split", str(FIXTURE), "--out", str(path)]) == 0
    return path


def test_kill_9_during_training_then_resume(split_file, tmp_path):
    run = tmp_path / "run"
    command = _cli(
        "train",
        str(FIXTURE),
        "--split",
        str(split_file),
        "--out",
        str(run),
        "--preset",
        "tiny",
        "--steps",
        "150",
        *TINY_SETS,
    )
    rng = np.random.default_rng(0)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    last = run / "checkpoints" / "last.pt"
    for attempt in range(3):
        process = subprocess.Popen(
            command + (["--resume"] if attempt else []),
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        start = time.time()
        while time.time() - start < 120 and not last.exists():
            time.sleep(0.05)
        time.sleep(float(rng.uniform(0.2, 2.0)))  # a random moment, checkpoints being written
        process.send_signal(signal.SIGKILL)
        process.wait()
        assert load_checkpoint(last)["step"] >= 2  # never a half-written last.pt
        leftovers = [p.name for p in (run / "checkpoints").iterdir() if ".tmp" in p.name]
        assert all(name.startswith(".") for name in leftovers)  # a killed write leaves only hidden files
    before = load_checkpoint(last)["step"]
    assert before < 150, "the kills should land before the end"
    result = subprocess.run(command + ["--resume"], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert load_checkpoint(last)["step"] == 150
    assert "resuming from step" in result.stderr


def test_disk_full_while_checkpointing(tmp_path, monkeypatch):
    import defectgen.gan.checkpoint as checkpoint_module

    dataset = open_dataset(str(FIXTURE))
    split = make_split(dataset, seed=0)
    config = TrainConfig(
        preset="tiny",
        model={"resolution": 32},
        batch_size=2,
        precision="fp32",
        steps=6,
        checkpoint_every=2,
        sample_every=1000,
    )
    real_fsync, calls = os.fsync, {"n": 0}

    def failing_fsync(fd):
        calls["n"] += 1
        if "step_0000004" in os.readlink(f"/proc/self/fd/{fd}"):  # the second checkpoint's file
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_fsync(fd)

    monkeypatch.setattr(checkpoint_module.os, "fsync", failing_fsync)
    with pytest.raises(CheckpointError, match="disk full; the previous checkpoint is intact.*--resume"):
        train(dataset, split, config, tmp_path / "run", progress=False)
    last = tmp_path / "run" / "checkpoints" / "last.pt"
    assert load_checkpoint(last)["step"] == 2
    assert not [p for p in (tmp_path / "run" / "checkpoints").iterdir() if ".tmp" in p.name]
    monkeypatch.setattr(checkpoint_module.os, "fsync", real_fsync)
    train(dataset, split, config, tmp_path / "run", resume=True, progress=False)
    assert load_checkpoint(last)["step"] == 6


def _png_declaring(width: int, height: int) -> bytes:
    """A tiny PNG file whose header declares width x height pixels (a decompression bomb)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


def test_decompression_bomb_in_a_dataset_is_refused(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    (tmp_path / "images" / "bomb.png").write_bytes(_png_declaring(200_000, 200_000))
    (tmp_path / "masks" / "bomb.png").write_bytes(_png_declaring(200_000, 200_000))
    start = time.time()
    with pytest.raises(DataError, match="bomb.png: declared size is too large to decode safely"):
        open_dataset(str(tmp_path))
    assert time.time() - start < 5  # refused from the header, nothing was allocated


def test_absolute_and_climbing_image_ids_are_refused(tmp_path):
    images = tmp_path / "train_images"
    images.mkdir()
    for image_id in ("/etc/passwd", "../secret.jpg", "..\\secret.jpg"):
        (tmp_path / "train.csv").write_text(f"ImageId,ClassId,EncodedPixels\n{image_id},1,1 2\n")
        with pytest.raises(DataError, match="not a plain file name"):
            open_dataset(f"severstal:{tmp_path / 'train.csv'},{images}")


def test_two_synth_processes_on_one_folder(split_file, tmp_path):
    checkpoint = train(
        open_dataset(str(FIXTURE)),
        make_split(open_dataset(str(FIXTURE)), seed=0),
        TrainConfig(preset="tiny", model={"resolution": 32}, batch_size=2, steps=1, precision="fp32"),
        tmp_path / "run",
        progress=False,
    )
    out = tmp_path / "out"
    command = _cli(
        "synth",
        str(FIXTURE),
        "--checkpoint",
        str(checkpoint),
        "--split",
        str(split_file),
        "--n",
        "100000",  # far more than it can write before the second process starts
        "--out",
        str(out),
        "--batch-size",
        "1",
    )
    first = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not (out / "manifest.jsonl").exists():
            time.sleep(0.05)
        second = subprocess.run(command, capture_output=True, text=True, timeout=120)
        assert second.returncode == 2
        assert "another defectgen synth is writing" in second.stderr and "Traceback" not in second.stderr
    finally:
        first.kill()
        first.wait()


@pytest.mark.parametrize("verb", VERBS_WITH_DATA)
def test_every_verb_refuses_bad_input_with_exit_2(verb, tmp_path, capsys):
    cases = [
        [verb, "--no-such-option"],
        [
            verb,
            "/no/such/dataset",
            "--split",
            str(tmp_path / "none.json"),
            "--out",
            str(tmp_path / "o"),
            "--checkpoint",
            str(tmp_path / "none.pt"),
            "--n",
            "1",
        ],
    ]
    typed = {
        "split": ["--seed", "abc"],
        "train": ["--steps", "many"],
        "synth": ["--n", "lots"],
        "evaluate": ["--seeds", "x"],
        "inspect": ["--labels-complete", "maybe"],
    }
    cases.append([verb, str(FIXTURE), *typed[verb]])
    for argv in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert "Traceback" not in err and err.strip(), argv


@pytest.mark.parametrize("verb", ["inspect", "split", "train", "synth", "evaluate", "report", "demo"])
def test_every_verb_help_shows_a_real_example(verb):
    result = subprocess.run(
        _cli(verb, "--help"),
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "250"},
    )
    assert result.returncode == 0
    assert f"Example: defectgen {verb}" in result.stdout


def test_plain_progress_prints_a_steady_line_with_an_estimate():
    """#32 item 15: output that is not a terminal gets a plain line per task every PLAIN_EVERY
    seconds (stage, done/total, elapsed, estimate) and one at the end; nothing in between, and
    nothing when disabled."""
    from defectgen import ui

    now = [0.0]
    plain = ui.PlainProgress(clock=lambda: now[0])
    with ui.console.capture() as captured:
        task = plain.add_task("training", total=100, losses="")
        for step in range(100):
            now[0] += 1.0
            plain.advance(task)
            if step == 49:
                plain.update(task, losses="loss_g 1.25")
    lines = captured.get().splitlines()
    assert lines == [
        "training: 30/100 (30%), 0:30 elapsed, about 1:10 left",
        "training: 60/100 (60%), 1:00 elapsed, about 0:40 left; loss_g 1.25",
        "training: 90/100 (90%), 1:30 elapsed, about 0:10 left; loss_g 1.25",
        "training: 100/100 (100%), 1:40; loss_g 1.25",
    ]
    quiet = ui.PlainProgress(disable=True, clock=lambda: now[0])
    with ui.console.capture() as captured:
        task = quiet.add_task("x", total=2)
        now[0] += 100
        quiet.advance(task, 2)
    assert captured.get() == ""


def test_a_command_in_a_log_file_reports_its_progress(split_file, tmp_path, monkeypatch):
    """`train` with its output in a file (not a terminal) prints plain progress lines."""
    from defectgen import ui

    monkeypatch.setattr(ui, "PLAIN_EVERY", 0.0)
    assert not ui.console.is_terminal
    with ui.console.capture() as captured:
        args = ["train", str(FIXTURE), "--split", str(split_file), "--out", str(tmp_path / "run")]
        assert main([*args, "--preset", "tiny", "--steps", "3", *TINY_SETS]) == 0
    text = captured.get()
    assert "training: 1/3 (33%)" in text and "training: 3/3 (100%)" in text and "about" in text
