"""The CLI end to end, in-process (fast) and once as a real subprocess (exit codes, no
traceback)."""

import json
import subprocess
import sys

import numpy as np
import pytest

from conftest import write_gray
from defectgen.cli import main


def test_inspect_json_and_sheet(magnetic_tile_dir, tmp_path, capsys):
    sheet = tmp_path / "sheet.png"
    assert main(["inspect", str(magnetic_tile_dir), "--json", "--sheet", str(sheet)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["images_per_class"]["Blowhole"] == 115
    assert summary["defect_free"] == 952
    assert summary["mask_area_pixels"]["Blowhole"]["count"] == 115
    assert summary["empty_masks"]["count"] == 4  # the 4 faint Uneven masks
    assert summary["image_sizes"]["distinct"] > 100
    assert sheet.stat().st_size > 10_000


def test_inspect_severstal_labels_only(severstal_dir, capsys):
    assert main(["inspect", f"severstal:{severstal_dir / 'train.csv'}", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["mask_area_pixels"]["3"]["count"] == 2550


def test_inspect_severstal_at_another_size(tmp_path, capsys):
    """--image-size sets the size a labels-only CSV's runs are for; a bad size exits 2."""
    csv = tmp_path / "train.csv"
    csv.write_text("ImageId,ClassId,EncodedPixels\na.jpg,1,30001 20\n")
    assert main(["inspect", str(csv), "--json", "--image-size", "480x320"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["mask_area_pixels"]["1"]["count"] == 1
    assert "480x320" in json.dumps(summary)
    assert main(["inspect", str(csv), "--json", "--image-size", "100x100"]) == 2
    assert "past the image end" in capsys.readouterr().err
    for bad in ("480", "0x320", "480x-1", "ax320"):
        assert main(["inspect", str(csv), "--image-size", bad]) == 2
        assert "--image-size takes WIDTHxHEIGHT" in capsys.readouterr().err


def test_split_command(magnetic_tile_dir, tmp_path):
    out = tmp_path / "split.json"
    args = ["split", str(magnetic_tile_dir), "--out", str(out), "--seed", "3", "--label-fraction", "0.5"]
    assert main(args) == 0
    first = out.read_text()
    assert main(args) == 0
    assert out.read_text() == first
    data = json.loads(first)
    assert data["seed"] == 3 and data["label_fraction"] == 0.5 and data["train_unlabelled"]


@pytest.mark.parametrize(
    "argv",
    [
        ["inspect", "/no/such/dataset"],
        ["split", "/no/such/dataset"],
        ["inspect", "--no-such-option"],
        ["split", "x", "--test-fraction", "abc"],
        ["inspect", "x", "--labels-complete", "maybe"],
        ["frobnicate"],
    ],
)
def test_bad_input_exits_2(argv, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.strip()


def test_subprocess_error_is_one_line(tmp_path):
    write_gray(tmp_path / "images" / "a.png", np.zeros((8, 8)))
    result = subprocess.run(
        [sys.executable, "-m", "defectgen", "inspect", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "a folder dataset needs images/ and masks/" in lines[0]


def test_the_cli_starts_without_torch():
    # `defectgen --help` and every option default come from the CLI module alone: importing the
    # evaluation, torch or torchmetrics there made each command wait 10 s before doing anything
    code = "import sys, defectgen.cli; print(sorted({'torch', 'torchmetrics', 'cv2'} & set(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_help_shows_an_example():
    for verb in ("inspect", "split"):
        result = subprocess.run(
            [sys.executable, "-m", "defectgen", verb, "--help"],
            capture_output=True,
            text=True,
            timeout=120,
            env={"COLUMNS": "200", "PATH": ""},
        )
        assert result.returncode == 0 and "Example: defectgen " + verb in result.stdout
