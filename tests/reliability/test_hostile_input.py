"""Hostile and careless input, class by class (issue #16): numbers as people write them, YAML
that expands, operating-system errors, folders that are not ours, user strings read as console
markup, unbounded counts, bad values. Each refusal is one line, exit 2, and leaves nothing
behind that blocks the corrected command. (Image modes: tests/test_imageio_modes.py; class
names: tests/test_class_names.py; leaking splits: tests/test_split.py.)"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from defectgen.cli import main
from defectgen.errors import ConfigError, DataError
from defectgen.gan.config import TrainConfig
from defectgen.settings import build_config, parse_yaml

FIXTURE = Path(__file__).parents[1] / "fixtures" / "tiny_folder"
TINY = [
    "--preset",
    "tiny",
    "--set",
    "model.resolution=32",
    "--set",
    "batch_size=2",
    "--set",
    "precision=fp32",
]
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def split_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("split") / "split.json"
    assert main(["split", str(FIXTURE), "--out", str(path)]) == 0
    return path


def refused(argv: list[str], capsys) -> str:
    """Run the CLI; assert exit 2 and one error line without a traceback; return that line."""
    assert main([str(a) for a in argv]) == 2, argv
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and err, argv
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines[-1].startswith("error:") or "Error" in err, err
    return err


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# --- 2. numbers parse as a user writes them ----------------------------------------------


@FAST
@given(
    value=st.floats(min_value=1e-12, max_value=1e3, allow_nan=False, allow_infinity=False),
    style=st.sampled_from(["{:e}", "{:E}", "{!r}", "{:.3e}", "{:g}", "{:.10f}"]),
)
def test_learning_rates_parse_in_every_written_form(value, style):
    text = style.format(value)
    config = build_config(TrainConfig, overrides=[f"lr_g={text}"])
    assert math.isclose(config.lr_g, float(text), rel_tol=1e-12)
    assert parse_yaml(f"lr_d: {text}") == {"lr_d": float(text)}


@pytest.mark.parametrize("text, expected", [("1e4", 10_000), ("2E3", 2_000), ("1_000", 1_000), ("300", 300)])
def test_integers_written_as_floats_or_with_underscores(text, expected, tmp_path):
    assert build_config(TrainConfig, overrides=[f"steps={text}"]).steps == expected
    path = tmp_path / "c.yaml"
    path.write_text(f"steps: {text}\nlr_g: 1e-4\n")
    loaded = TrainConfig.load(path)
    assert loaded.steps == expected and loaded.lr_g == 1e-4


def test_the_readme_override_trains(split_file, tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["train", FIXTURE, "--split", split_file, "--out", out, "--steps", "1", *TINY]
    assert main([str(a) for a in [*argv, "--set", "lr_g=1e-4", "--set", "lr_d=5E-5"]]) == 0
    saved = TrainConfig.load(out / "config.yaml", written_by_a_run=True)
    assert (saved.lr_g, saved.lr_d) == (1e-4, 5e-5)
    # and the run's own config.yaml reads back on --resume (the float form it wrote)
    assert main([str(a) for a in [*argv, "--resume", "--set", "lr_g=1e-4", "--set", "lr_d=5E-5"]]) == 0


# --- 3. YAML that expands ----------------------------------------------------------------------


def _alias_bomb(depth: int, width: int) -> str:
    lines = ['a0: &a0 ["lol", "lol"]']
    for level in range(1, depth + 1):
        refs = ", ".join([f"*a{level - 1}"] * width)
        lines.append(f"a{level}: &a{level} [{refs}]")
    return "\n".join(lines) + "\n"


@FAST
@given(depth=st.integers(1, 12), width=st.integers(1, 12))
def test_anchors_and_aliases_are_refused_before_expanding(depth, width, tmp_path):
    path = tmp_path / "bomb.yaml"
    path.write_text(_alias_bomb(depth, width))
    start = time.perf_counter()
    with pytest.raises(ConfigError, match="anchors and aliases"):
        TrainConfig.load(path)
    with pytest.raises(ConfigError, match="anchors and aliases"):
        build_config(TrainConfig, overrides=["extra={x: &x [1], y: *x}"])
    assert time.perf_counter() - start < 1.0


def test_a_run_folder_config_with_aliases_is_refused_on_resume(split_file, tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["train", FIXTURE, "--split", split_file, "--out", out, "--steps", "1", *TINY]
    assert main([str(a) for a in argv]) == 0
    config = out / "config.yaml"
    config.write_text(config.read_text() + _alias_bomb(9, 9).replace("a0:", "extra_bomb:", 1))
    assert "anchors and aliases" in refused([*argv, "--resume"], capsys)


def test_a_huge_config_file_is_refused_unread(tmp_path):
    path = tmp_path / "big.yaml"
    path.write_text("extra: {" + ", ".join(f"k{i}: {i}" for i in range(200_000)) + "}\n")
    with pytest.raises(ConfigError, match="too large"):
        TrainConfig.load(path)


def test_a_run_writes_a_config_without_aliases(tmp_path):
    config = TrainConfig(extra={"a": [1, 2], "b": [1, 2]})
    config.save(tmp_path / "c.yaml")
    assert "&" not in (tmp_path / "c.yaml").read_text()
    assert TrainConfig.load(tmp_path / "c.yaml").extra == {"a": [1, 2], "b": [1, 2]}


# --- 5. operating-system errors: one line naming the path ------------------------------------


def test_out_pointing_at_a_file(split_file, tmp_path, capsys):
    a_file = tmp_path / "a_file"
    a_file.write_text("keep me")
    for argv in (
        ["train", FIXTURE, "--split", split_file, "--out", a_file, "--steps", "1", *TINY],
        ["evaluate", FIXTURE, "--split", split_file, "--out", a_file, "--steps", "1"],
        ["demo", "--out", a_file, "--quick"],
    ):
        assert str(a_file) in refused(argv, capsys)
    assert a_file.read_text() == "keep me"


def test_a_folder_where_a_file_is_expected(split_file, tmp_path, capsys):
    folder = tmp_path / "folder.json"
    folder.mkdir()
    assert str(folder) in refused(["split", FIXTURE, "--out", folder], capsys)
    html = tmp_path / "r.html"
    html.mkdir()
    assert str(html) in refused(["report", tmp_path, "--out", html], capsys)
    png = tmp_path / "s.png"
    png.mkdir()
    assert str(png) in refused(["inspect", FIXTURE, "--sheet", png], capsys)


def test_write_errors_name_the_users_path_not_a_temporary_one(tmp_path, capsys, monkeypatch):
    import defectgen.fileio as fileio

    real_open = open

    def denied(path, *args, **kwargs):
        if ".tmp" in str(path):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(fileio, "open", denied, raising=False)
    target = tmp_path / "split.json"
    err = refused(["split", FIXTURE, "--out", target], capsys)
    assert f"{target}: Permission denied" in err and ".tmp" not in err


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_folder(tmp_path, capsys):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        assert str(folder) in refused(["split", FIXTURE, "--out", folder / "s.json"], capsys)
    finally:
        folder.chmod(0o755)


@pytest.mark.parametrize("what", ["config", "covered_ids", "split"])
def test_text_files_that_are_not_utf8(what, split_file, tmp_path, capsys):
    bad = tmp_path / f"bad_{what}"
    bad.write_bytes(b"\xff\xfe\x00 not \xc3\x28 utf-8\n")
    argv = {
        "config": ["train", FIXTURE, "--split", split_file, "--out", tmp_path / "r", "--config", bad],
        "covered_ids": ["inspect", FIXTURE, "--covered-ids", bad, "--no-sheet"],
        "split": ["train", FIXTURE, "--split", bad, "--out", tmp_path / "r"],
    }[what]
    assert str(bad) in refused(argv, capsys)
    assert not (tmp_path / "r").exists()


# --- 6. folders that are not ours are never written --------------------------------------------


def test_evaluate_refuses_a_foreign_folder(split_file, tmp_path, capsys):
    for name, content in (("results.json", b'{"mine": 1}'), ("figures/plot.png", b"not ours")):
        out = tmp_path / name.replace("/", "_")
        (out / name).parent.mkdir(parents=True)
        (out / name).write_bytes(content)
        before = snapshot(out)
        refused(["evaluate", FIXTURE, "--split", split_file, "--out", out, "--steps", "1"], capsys)
        assert snapshot(out) == before


def test_train_resume_refuses_a_folder_that_is_not_a_run(split_file, tmp_path, capsys):
    out = tmp_path / "notes"
    out.mkdir()
    (out / "metrics.jsonl").write_text("my own log\n")
    before = snapshot(out)
    refused(
        ["train", FIXTURE, "--split", split_file, "--out", out, "--steps", "1", "--resume", *TINY], capsys
    )
    assert snapshot(out) == before


def test_a_folder_of_one_kind_is_not_used_as_another(split_file, tmp_path, capsys):
    run = tmp_path / "run"
    assert (
        main([str(a) for a in ["train", FIXTURE, "--split", split_file, "--out", run, "--steps", "1", *TINY]])
        == 0
    )
    before = snapshot(run)
    assert "not a defectgen evaluation folder" in refused(
        ["evaluate", FIXTURE, "--split", split_file, "--out", run, "--steps", "1"], capsys
    )
    assert snapshot(run) == before


@pytest.mark.parametrize(
    "verb, name, content",
    [
        ("report", "results.json", b'{"format": "defectgen-eval/3"}'),
        ("report", "page.html", b"<html>someone's page</html>"),
        ("split", "notes.json", b'{"format": "something else"}'),
        ("inspect", "photo.png", b"GIF89a not a png"),
    ],
)
def test_files_that_are_not_ours_are_not_overwritten(verb, name, content, tmp_path, capsys):
    target = tmp_path / name
    target.write_bytes(content)
    argv = {
        "report": ["report", tmp_path, "--out", target],
        "split": ["split", FIXTURE, "--out", target],
        "inspect": ["inspect", FIXTURE, "--sheet", target],
    }[verb]
    refused(argv, capsys)
    assert target.read_bytes() == content


def test_demo_refuses_a_foreign_folder(tmp_path, capsys):
    (tmp_path / "thesis.tex").write_text("years of work")
    refused(["demo", "--out", tmp_path, "--quick"], capsys)
    assert (tmp_path / "thesis.tex").read_text() == "years of work"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["thesis.tex"]


# --- 7. nothing a user supplies is read as console markup -------------------------------------

MARKUP = st.text(alphabet="[]/ab =#", min_size=1, max_size=12).map(lambda s: f"x{s}")


@FAST
@given(name=MARKUP)
def test_paths_print_as_given(name, tmp_path, capsys):
    path = tmp_path / name / "nothing"
    err = refused(["inspect", path, "--no-sheet"], capsys)
    assert str(path) in err.replace("\n", "")


@FAST
@given(code=st.sampled_from(["ok", "smile", "warning", "x", "thumbs_up", "red_circle"]), tail=MARKUP)
def test_emoji_codes_print_as_written(code, tail, capsys):
    """`mvtec:ok:` is a name, not an emoji: rich replaces `:ok:` in every plain string a
    console prints (tables, titles, paths) unless told not to."""
    from rich.table import Table

    from defectgen.ui import console, out

    text = f"mvtec:{code}:{tail}"
    table = Table(title=text)
    table.add_column(text)
    table.add_row(text)
    out.print(table)
    out.print(text)
    console.print(text)
    captured = capsys.readouterr()
    assert captured.out.count(f":{code}:") >= 3 and f":{code}:" in captured.err


@FAST
@given(text=st.sampled_from(["[bold]", "[/]", "[red]x[/red]", "[link=file:///etc]a[/link]", "[[", "]"]))
def test_error_messages_print_verbatim(text, capsys, monkeypatch):
    import defectgen.cli as cli

    def fail(*args, **kwargs):
        raise DataError(f"file {text} is bad")

    monkeypatch.setattr(cli, "_open", fail)
    err = refused(["inspect", "whatever", "--no-sheet"], capsys)
    assert f"file {text} is bad" in err


# --- 8. unbounded counts ------------------------------------------------------------------------


def test_huge_counts_are_refused_at_once(split_file, tmp_path, capsys):
    start = time.perf_counter()
    huge = str(10**12)
    synth = [
        "synth",
        FIXTURE,
        "--checkpoint",
        tmp_path / "x.pt",
        "--split",
        split_file,
        "--out",
        tmp_path / "s",
    ]
    refused([*synth, "--n", huge], capsys)
    refused([*synth, "--n", "1", "--batch-size", huge], capsys)
    refused(["evaluate", FIXTURE, "--split", split_file, "--out", tmp_path / "e", "--seeds", huge], capsys)
    refused(
        ["train", FIXTURE, "--split", split_file, "--out", tmp_path / "r", "--steps", str(10**15)], capsys
    )
    assert time.perf_counter() - start < 20
    assert not any((tmp_path / n).exists() for n in ("s", "e", "r"))


# --- 9. bad values: refused before anything is created; the corrected command then runs ------

BAD_TRAIN = [
    ["--set", "lr_g=nan"],
    ["--set", "lr_g=.nan"],
    ["--set", "lr_d=-1"],
    ["--set", "lr_g=.inf"],
    ["--steps", "0"],
    ["--steps", "-5"],
    ["--set", "batch_size=0"],
    ["--set", "checkpoint_every=0"],
    ["--set", "log_every=-1"],
    ["--set", "seed=-1"],
    ["--set", f"seed={2**64}"],
    ["--set", "betas=[0.5, 1.5]"],
    ["--set", "betas=[0.5]"],
    ["--set", "model.resolution=100000"],
    ["--set", "precision=fp8"],
    ["--set", "log_every=abc"],
    ["--set", "ema_half_life_images=0"],
    ["--device", "tpu"],
    ["--device", "cuda:7"],
    ["--device", ""],
]


BAD_EVALUATE = [
    ["--seeds", "1"],
    ["--seeds", "0"],
    ["--steps", "0"],
    ["--max-steps", "-1"],
    ["--eval-every", "0"],
    ["--lr", "nan"],
    ["--lr", "-0.1"],
    ["--size", "33"],
    ["--batch-size", "1"],
    ["--synthetic-share", "2"],
    ["--precision", "fp8"],
    ["--arms", "nonsense"],
]
BAD_SYNTH = [
    *(["--n", v] for v in ("0", "-3")),
    *(["--seed", v] for v in ("-1", str(2**64))),
    *(["--batch-size", v] for v in ("0", "5000")),
    *(["--tile", v] for v in ("12", "0")),
    *(["--attempts", v] for v in ("0", "3")),  # 3 needs --judge
    ["--format", "gif"],
    ["--device", "quantum"],
    ["--precision", "fp8"],
    ["--classes", "9"],
    ["--mask-source", "nowhere"],
]
BAD_VALUES = [
    *(("train", bad) for bad in BAD_TRAIN),
    *(("evaluate", bad) for bad in BAD_EVALUATE),
    *(("synth", bad) for bad in BAD_SYNTH),
]


@pytest.fixture(scope="module")
def tiny_checkpoint(split_file, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("gan") / "run"
    assert (
        main([str(a) for a in ["train", FIXTURE, "--split", split_file, "--out", run, "--steps", "1", *TINY]])
        == 0
    )
    return run / "checkpoints" / "last.pt"


@pytest.mark.parametrize("verb, bad", BAD_VALUES, ids=[f"{v} {' '.join(b)}" for v, b in BAD_VALUES])
def test_bad_values_are_refused_and_create_nothing(verb, bad, split_file, tiny_checkpoint, tmp_path, capsys):
    out = tmp_path / "out"
    common = ["--split", split_file, "--out", out]
    argv = {
        "train": ["train", FIXTURE, *common, "--steps", "1", *TINY],
        "evaluate": ["evaluate", FIXTURE, *common, "--steps", "1"],
        "synth": ["synth", FIXTURE, *common, "--checkpoint", tiny_checkpoint, "--n", "2"],
    }[verb]
    refused([*argv, *bad], capsys)
    assert not out.exists()


@pytest.mark.parametrize("bad", [["--steps", "0"], ["--set", "lr_g=nan"], ["--device", "tpu"]])
def test_after_a_refusal_the_corrected_command_runs(bad, split_file, tmp_path, capsys):
    out = tmp_path / "run"
    base = ["train", FIXTURE, "--split", split_file, "--out", out, *TINY]
    refused([*base, "--steps", "1", *bad], capsys)
    assert main([str(a) for a in [*base, "--steps", "1"]]) == 0
    assert (out / "checkpoints" / "last.pt").is_file()


def test_split_file_values_of_the_wrong_type(split_file, tmp_path, capsys):
    data = json.loads(split_file.read_text())
    for key, value in (("seed", "zero"), ("test_fraction", [1]), ("train", "tile_0"), ("test", 7)):
        broken = tmp_path / f"split_{key}.json"
        broken.write_text(json.dumps({**data, key: value}))
        refused(["train", FIXTURE, "--split", broken, "--out", tmp_path / "r", "--steps", "1", *TINY], capsys)
        assert not (tmp_path / "r").exists()


def test_a_test_half_without_defects_is_not_scored(split_file, tmp_path, capsys):
    from defectgen.data import open_dataset

    dataset = open_dataset(str(FIXTURE))
    data = json.loads(split_file.read_text())
    free = [i for i in data["test"] if not dataset.items[dataset.index_of(i)].class_ids]
    assert free and len(free) < len(data["test"])
    no_defects = tmp_path / "split.json"
    no_defects.write_text(json.dumps({**data, "test": free}))
    out = tmp_path / "eval"
    err = refused(["evaluate", FIXTURE, "--split", no_defects, "--out", out, "--steps", "1"], capsys)
    assert "no defect images" in err and not out.exists()


@pytest.mark.parametrize("head", [b"\x89PNG\r\n\x1a\n" + bytes(64), b"%PDF-1.4\n" + bytes(32), b"", b"hello"])
def test_a_file_that_is_no_checkpoint_is_called_so(head, tmp_path):
    """A PNG as --checkpoint or --encoder-weights is not 'a hostile pickle', and nobody is
    advised to load it with weights_only=False."""
    from defectgen.gan.checkpoint import CheckpointError, load_checkpoint
    from defectgen.models.unet import build_segmenter, load_encoder_weights

    path = tmp_path / "picture.pt"
    path.write_bytes(head)
    with pytest.raises(CheckpointError, match="not a checkpoint") as err:
        load_checkpoint(path)
    model = build_segmenter("resnet18", 1, 1, encoder_depth=3, decoder_channels=(16, 8, 4))
    with pytest.raises(DataError, match="not a weights file") as other:
        load_encoder_weights(model.encoder, path)
    for message in (str(err.value), str(other.value)):
        assert "weights_only=False" not in message and "could run code" not in message


# --- round three: links that loop, JSON and YAML nested past the parser's depth -----------------


def _copy_fixture(tmp_path: Path) -> Path:
    import shutil

    data = tmp_path / "data"
    shutil.copytree(FIXTURE, data)
    return data


def test_an_image_or_mask_that_links_to_itself_is_one_line_and_skippable(tmp_path, capsys):
    data = _copy_fixture(tmp_path)
    image = sorted((data / "images").iterdir())[0]
    image.unlink()
    image.symlink_to(image.name)  # a link to itself
    line = refused(["inspect", data], capsys)
    assert "symbolic link that loops" in line
    assert main(["inspect", str(data), "--skip-bad"]) == 0
    data = _copy_fixture(tmp_path / "masks")
    mask = sorted((data / "masks").iterdir())[0]
    mask.unlink()
    mask.symlink_to(mask.name)
    line = refused(["inspect", data], capsys)
    assert "symbolic link" in line and "all-zero mask" not in line  # not "no mask"


def test_json_and_yaml_nested_past_the_parser_are_refused_in_one_line(tmp_path, capsys, split_file):
    deep = "[" * 100_000 + "]" * 100_000
    (tmp_path / "split.json").write_text(deep)
    line = refused(["train", FIXTURE, "--split", tmp_path / "split.json", "--out", tmp_path / "run"], capsys)
    assert "nested too deeply" in line
    (tmp_path / "eval").mkdir()
    (tmp_path / "eval" / "results.json").write_text(deep)
    assert "nested too deeply" in refused(["report", tmp_path / "eval"], capsys)
    (tmp_path / "config.yaml").write_text("a: " + "[" * 100_000 + "]" * 100_000 + "\n")
    args = [
        "train",
        FIXTURE,
        "--split",
        split_file,
        "--out",
        tmp_path / "run",
        "--config",
        tmp_path / "config.yaml",
    ]
    assert "nested too deeply" in refused(args, capsys)
