"""Class names: what a name may be, and `classes.txt` written by defectgen reads back as the same
class table (spaces, '#', any Unicode), with or without a byte-order mark or CRLF endings."""

from __future__ import annotations

import shutil
import unicodedata
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import write_gray
from defectgen.data import ClassTable, open_dataset
from defectgen.errors import DataError
from defectgen.synth_config import SynthConfig

SETTINGS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
# any character a name may hold: everything but control characters, line / paragraph
# separators, lone surrogates and the byte-order mark
NAME_CHARS = st.characters(blacklist_categories=("Cc", "Zl", "Zp", "Cs"), blacklist_characters="\ufeff")
VALID_NAMES = st.text(NAME_CHARS, min_size=1, max_size=12).filter(lambda n: n.strip() == n and n)
NAME_LISTS = st.lists(VALID_NAMES, min_size=1, max_size=6, unique=True)
FORBIDDEN = ["\n", "\r", "\t", "\x00", "\x7f", "\x85", "\u2028", "\u2029", "\ufeff", "\x1e"]


@SETTINGS
@given(names=NAME_LISTS, bom=st.booleans(), crlf=st.booleans(), pad=st.sampled_from(["", " ", "\t"]))
def test_written_classes_txt_reads_back_the_same_table(tmp_path, names, bom, crlf, pad):
    table = ClassTable(tuple(names))
    path = tmp_path / "classes.txt"
    path.write_bytes(table.to_classes_txt())
    assert ClassTable.from_classes_txt(path) == table
    # hand-edited variants of the same file: BOM, CRLF, stray whitespace, blank lines at the end
    text = "".join(f"{pad}{name}{pad}\n" for name in names) + "\n\n"
    if crlf:
        text = text.replace("\n", "\r\n")
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8"))
    assert ClassTable.from_classes_txt(path) == table


@SETTINGS
@given(name=VALID_NAMES, bad=st.sampled_from(FORBIDDEN), where=st.integers(0, 12))
def test_names_with_forbidden_characters_refused(name, bad, where):
    cut = min(where, len(name))
    with pytest.raises(DataError, match="rename the class"):
        ClassTable((name[:cut] + bad + name[cut:],))


@pytest.mark.parametrize("name", ["", " ", "\t", "\u3000", " scratch", "scratch ", "pit\u00a0"])
def test_empty_or_padded_names_refused(name):
    with pytest.raises(DataError, match="empty or only whitespace|starts or ends with whitespace"):
        ClassTable((name,))


def test_characters_allowed_are_exactly_those_a_line_carries():
    for code in [*range(0x3000), 0xD800, 0xDFFF, 0xFEFF, 0xFFFE]:
        char = chr(code)
        line_safe = len(f"a{char}b".splitlines()) == 1 and unicodedata.category(char) not in ("Cc", "Cs")
        allowed = char != "\ufeff" and line_safe
        try:
            ClassTable((f"a{char}b",))
            accepted = True
        except DataError:
            accepted = False
        assert accepted == allowed, repr(char)


def _classes_file(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / "classes.txt"
    path.write_bytes(data)
    return path


def test_non_utf8_classes_txt_is_one_line_naming_it(tmp_path):
    path = _classes_file(tmp_path, "kratzer\nlöcher\n".encode("latin-1"))
    with pytest.raises(DataError) as info:
        ClassTable.from_classes_txt(path)
    assert str(path) in str(info.value) and "UTF-8" in str(info.value) and "\n" not in str(info.value)


def test_blank_line_between_names_refused_not_shifted(tmp_path):
    path = _classes_file(tmp_path, b"scratch\n\npit\n")  # pit is class 3, not 2
    with pytest.raises(DataError, match=r"classes.txt line 2: blank"):
        ClassTable.from_classes_txt(path)


def test_bad_name_in_classes_txt_names_the_line(tmp_path):
    path = _classes_file(tmp_path, b"scratch\npit\x00hole\n")
    with pytest.raises(DataError, match=r"classes.txt line 2: class name 'pit\\x00hole' contains a control"):
        ClassTable.from_classes_txt(path)


def test_empty_classes_txt_refused(tmp_path):
    path = _classes_file(tmp_path, b"\xef\xbb\xbf\r\n\n")
    with pytest.raises(DataError, match="at least one defect class"):
        ClassTable.from_classes_txt(path)


def test_folder_dataset_with_unusual_names(tmp_path):
    names = ("deep scratch", "#2 pit", "Öl-Fleck 油")
    table = ClassTable(names)
    root = tmp_path / "ds"
    mask = np.zeros((8, 8), np.uint8)
    mask[1:3, 1:3], mask[4:6, 4:6], mask[6:, 6:] = 1, 2, 3
    write_gray(root / "images" / "a.png", np.full((8, 8), 90))
    write_gray(root / "masks" / "a.png", mask)
    (root / "classes.txt").write_bytes(b"\xef\xbb\xbf" + table.to_classes_txt().replace(b"\n", b"\r\n"))
    dataset = open_dataset(f"folder:{root}")
    assert dataset.classes == table and dataset.items[0].class_ids == (1, 2, 3)


FIXTURE = Path(__file__).parent / "fixtures" / "tiny_folder"


@pytest.mark.slow
def test_synthetic_set_with_unusual_names_reads_back(tmp_path):
    """synth's own folder output opens as a dataset with the same class table."""
    from defectgen.data.split import make_split
    from defectgen.gan.config import TrainConfig
    from defectgen.gan.train import train
    from defectgen.synth import synthesize

    root = tmp_path / "ds"
    shutil.copytree(FIXTURE, root)
    count = len(ClassTable.from_classes_txt(root / "classes.txt"))
    names = ("deep scratch", "#pit 2", "Öl-Fleck 油")[:count]
    (root / "classes.txt").write_bytes(ClassTable(names).to_classes_txt())
    dataset = open_dataset(str(root))
    split = make_split(dataset, seed=0)
    config = TrainConfig(
        steps=1, preset="tiny", model={"resolution": 32}, batch_size=2, precision="fp32", log_every=1,
        sample_every=100, checkpoint_every=100,
    )  # fmt: skip
    checkpoint = train(dataset, split, config, tmp_path / "run", progress=False)
    synthesize(checkpoint, dataset, split, tmp_path / "out", SynthConfig(n=2, seed=1), progress=False)
    assert open_dataset(str(tmp_path / "out")).classes == dataset.classes == ClassTable(names)


def test_class_folder_with_a_padded_folder_name_refused(tmp_path):
    write_gray(tmp_path / "MT_Crack " / "Imgs" / "a.jpg", np.zeros((8, 8)))
    write_gray(tmp_path / "MT_Crack " / "Imgs" / "a.png", np.zeros((8, 8)))
    write_gray(tmp_path / "MT_Free" / "Imgs" / "b.jpg", np.zeros((8, 8)))
    with pytest.raises(DataError, match=r"'Crack ' starts or ends with whitespace; rename the class"):
        open_dataset(str(tmp_path))
