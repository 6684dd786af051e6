"""Each dataset layout a user arrives with, made here as a tiny fixture, goes once through
`split` -> `train` (tiny) -> `synth` -> `evaluate` (tiny) on the command line."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import write_gray
from defectgen.cli import main
from defectgen.data import open_dataset, rle
from defectgen.data.split import Split, make_split
from defectgen.errors import ConfigError, DataError


def _round_trip(data: str, work: Path, synth_format: str = "folder") -> dict:
    """The whole pipeline on `data`; returns evaluate's results.json."""
    split, gan, synth, out = work / "split.json", work / "gan", work / "synth", work / "eval"
    assert main(["split", data, "--out", str(split), "--seed", "0"]) == 0
    train = ["train", data, "--split", str(split), "--out", str(gan), "--preset", "tiny", "--steps", "2"]
    sets = ["model.resolution=32", "batch_size=2", "sample_every=100"]
    assert main([*train, *(a for s in sets for a in ("--set", s))]) == 0
    checkpoint = gan / "checkpoints" / "last.pt"
    assert main(["synth", data, "--checkpoint", str(checkpoint), "--split", str(split), "--n", "4",
                 "--out", str(synth), "--format", synth_format]) == 0  # fmt: skip
    assert len((synth / "manifest.jsonl").read_text().splitlines()) == 4
    assert main(["evaluate", data, "--split", str(split), "--synthetic", f"gen={synth}", "--out", str(out),
                 "--arms", "real,real+gen", "--seeds", "2", "--steps", "2", "--size", "32",
                 "--batch-size", "2"]) == 0  # fmt: skip
    return json.loads((out / "results.json").read_text())


# --- Severstal-style CSV at a size other than Kaggle's ------------------------------------------


def _severstal_at(root: Path, height: int, width: int, images: int = 24, seed: int = 0) -> Path:
    """A Severstal CSV (current form) over `images` grayscale HxW JPEGs; two in three hold a
    bright bar of class 1 or 3, the rest are defect-free."""
    rng = np.random.default_rng(seed)
    (root / "train_images").mkdir(parents=True)
    rows = ["ImageId,ClassId,EncodedPixels"]
    for i in range(images):
        image = rng.normal(100, 8, (height, width))
        name = f"{i:04d}.jpg"
        if i % 3:
            mask = np.zeros((height, width), dtype=bool)
            y, x = rng.integers(4, height - 12), rng.integers(4, width - 24)
            mask[y : y + 6, x : x + 18] = True
            image[mask] += 90
            rows.append(f"{name},{1 if i % 3 == 1 else 3},{rle.encode(mask)}")
        write_gray(root / "train_images" / name, image.clip(0, 255))
    (root / "train.csv").write_text("\n".join(rows) + "\n")
    return root


@pytest.mark.parametrize("synth_format", ["severstal", "folder"])
def test_severstal_at_any_size_round_trip(tmp_path, synth_format):
    data = _severstal_at(tmp_path / "data", height=64, width=96)
    dataset = open_dataset(str(data))
    assert dataset.kind == "severstal" and dataset.image_shape == (64, 96)
    results = _round_trip(str(data), tmp_path, synth_format)
    assert {run["arm"] for run in results["runs"]} == {"real", "real+gen"}
    if synth_format == "severstal":
        out = tmp_path / "synth"
        synthetic = open_dataset(f"severstal:{out / 'train.csv'},{out / 'images'}")
        assert synthetic.image_shape == (64, 96)
        assert all(synthetic[i].masks.shape == (4, 64, 96) for i in range(len(synthetic)))


# --- MVTec AD ----------------------------------------------------------------------------------


def _mvtec_category(root: Path, per_type: int = 6, seed: int = 0) -> Path:
    """An MVTec AD category: RGB 64x96 images, train/good, test/good and two defect types
    with their ground_truth masks (0/255, `<stem>_mask.png`)."""
    rng = np.random.default_rng(seed)

    def image() -> np.ndarray:
        return rng.normal(120, 6, (64, 96, 3))

    def save(path: Path, array: np.ndarray) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(array.clip(0, 255).astype(np.uint8)).save(path)

    for i in range(8):
        save(root / "train" / "good" / f"{i:03d}.png", image())
    for i in range(4):
        save(root / "test" / "good" / f"{i:03d}.png", image())
    for kind, (h, w) in {"crack": (3, 30), "scratch": (12, 12)}.items():
        for i in range(per_type):
            picture, mask = image(), np.zeros((64, 96), dtype=np.uint8)
            y, x = rng.integers(4, 64 - h - 4), rng.integers(4, 96 - w - 4)
            mask[y : y + h, x : x + w] = 255
            picture[mask > 0] -= 80
            save(root / "test" / kind / f"{i:03d}.png", picture)
            save(root / "ground_truth" / kind / f"{i:03d}_mask.png", mask)
    return root


def test_mvtec_layout_is_read_as_it_ships(tmp_path):
    root = _mvtec_category(tmp_path / "mvtec" / "tile")
    dataset = open_dataset(str(root))
    assert dataset.kind == "mvtec" and dataset.classes.names == ("crack", "scratch")
    assert dataset.channels == 3
    summary = dataset.summary()
    assert summary["defect_free"] == 12 and summary["images_per_class"] == {"crack": 6, "scratch": 6}
    sample = dataset[dataset.index_of("test/scratch/002")]
    mask = np.asarray(Image.open(root / "ground_truth" / "scratch" / "002_mask.png")) > 0
    assert sample.class_ids == (2,) and np.array_equal(sample.masks[1], mask) and not sample.masks[0].any()
    assert not dataset[dataset.index_of("train/good/000")].masks.any()
    assert open_dataset(f"mvtec:{root}").fingerprint() == dataset.fingerprint()
    with pytest.raises(DataError, match=r"holds 1 MVTec AD categories \(tile\); name one"):
        open_dataset(str(tmp_path / "mvtec"))


def test_mvtec_hidden_folders_and_ambiguous_masks(tmp_path):
    root = _mvtec_category(tmp_path / "tile")
    (root / "test" / ".ipynb_checkpoints").mkdir()
    assert open_dataset(str(root)).classes.names == ("crack", "scratch")  # ids do not shift
    Image.fromarray(np.zeros((64, 96, 3), np.uint8)).save(root / "train" / "good" / "extra.png")
    (root / "train" / "crack").mkdir()
    Image.fromarray(np.zeros((64, 96, 3), np.uint8)).save(root / "train" / "crack" / "000.png")
    with pytest.raises(DataError, match="would both take the mask"):  # a test mask must not leak
        open_dataset(str(root))
    (root / "train" / "crack" / "000.png").unlink()
    Image.fromarray(np.zeros((64, 96, 3), np.uint8)).save(root / "test" / "crack" / "000.jpg")
    with pytest.raises(DataError, match="share the name 000"):
        open_dataset(str(root))
    dataset = open_dataset(str(root), skip_bad=True)
    assert "test/crack/000" not in {i.item_id for i in dataset.items}


def test_mvtec_missing_mask_is_an_error_not_a_free_image(tmp_path):
    root = _mvtec_category(tmp_path / "tile")
    (root / "ground_truth" / "crack" / "001_mask.png").unlink()
    with pytest.raises(DataError, match=r"crack/001.png: no mask ground_truth/crack/001_mask.png"):
        open_dataset(str(root))
    dataset = open_dataset(str(root), skip_bad=True)
    assert [s.item_id for s in dataset.skipped] == ["test/crack/001"]
    assert dataset.summary()["images_per_class"]["crack"] == 5


def test_mvtec_layout_split_keeps_the_layouts_parts(tmp_path, capsys):
    root = _mvtec_category(tmp_path / "tile")
    out = tmp_path / "split.json"
    assert main(["split", str(root), "--out", str(out), "--layout-split"]) == 0
    assert "training half holds no defect images" in capsys.readouterr().err
    split = Split.load(out)
    assert split.layout and all(i.startswith("train/") for i in split.train)
    assert all(i.startswith("test/") for i in split.test) and len(split.test) == 16
    drawn = make_split(open_dataset(str(root)), seed=0)
    assert not drawn.layout and any(i.startswith("test/crack") for i in drawn.train)
    with pytest.raises(ConfigError, match="no train/test parts of its own"):
        make_split(open_dataset(str(_severstal_at(tmp_path / "sev", 64, 96))), layout=True)


def test_mvtec_round_trip(tmp_path):
    root = _mvtec_category(tmp_path / "tile", per_type=8)
    results = _round_trip(str(root), tmp_path)
    assert {run["arm"] for run in results["runs"]} == {"real", "real+gen"}


# --- COCO segmentation JSON ---------------------------------------------------------------------


def _coco(root: Path, images: int = 18, seed: int = 0) -> Path:
    """CVAT's export layout: annotations/instances_default.json + images/. Categories 3 (pit)
    and 7 (scratch); masks as polygons, uncompressed RLE and compressed RLE in turn; every
    third image has no annotation (defect-free)."""
    from pycocotools import mask as coco_mask

    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    (root / "annotations").mkdir()
    entries, annotations = [], []
    for i in range(images):
        name = f"frame_{i:03d}.png"
        picture = rng.normal(110, 6, (64, 96))
        entries.append({"id": 100 + i, "file_name": name, "height": 64, "width": 96})
        if i % 3:
            mask = np.zeros((64, 96), dtype=np.uint8)
            y, x = int(rng.integers(4, 44)), int(rng.integers(4, 70))
            mask[y : y + 12, x : x + 20] = 1
            picture[mask > 0] += 70
            rle = coco_mask.encode(np.asfortranarray(mask))
            segmentation = [
                [[x, y, x + 20, y, x + 20, y + 12, x, y + 12]],
                {"size": [64, 96], "counts": _uncompressed(mask)},
                {"size": [64, 96], "counts": rle["counts"].decode()},
            ][i % 3]
            annotations.append(
                {"id": i, "image_id": 100 + i, "category_id": 3 if i % 2 else 7,
                 "segmentation": segmentation, "iscrowd": int(isinstance(segmentation, dict))}
            )  # fmt: skip
        write_gray(root / "images" / name, picture.clip(0, 255))
    categories = [{"id": 7, "name": "scratch"}, {"id": 3, "name": "pit"}]
    document = {"images": entries, "annotations": annotations, "categories": categories}
    (root / "annotations" / "instances_default.json").write_text(json.dumps(document))
    return root / "annotations" / "instances_default.json"


def _uncompressed(mask: np.ndarray) -> list[int]:
    """COCO's uncompressed RLE: alternating 0/1 run lengths, column-major, zeros first."""
    flat = mask.flatten(order="F")
    edges = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], edges, [flat.size]])
    runs = np.diff(bounds).tolist()
    return runs if flat[0] == 0 else [0, *runs]


def test_coco_polygons_and_both_rles(tmp_path):
    path = _coco(tmp_path / "export")
    dataset = open_dataset(str(path))
    assert dataset.kind == "coco" and dataset.classes.names == ("pit", "scratch")  # by category id
    summary = dataset.summary()
    assert summary["defect_free"] == 6 and summary["images_per_class"] == {"pit": 6, "scratch": 6}
    document = json.loads(path.read_text())
    for annotation in document["annotations"]:
        sample = dataset[dataset.index_of(f"frame_{annotation['id']:03d}.png")]
        channel = 0 if annotation["category_id"] == 3 else 1
        assert sample.masks[1 - channel].sum() == 0
        area = sample.masks[channel].sum()
        if isinstance(annotation["segmentation"], dict):
            assert area == 12 * 20
        else:  # polygon rasterisation covers the rectangle's pixels up to its edge convention
            assert abs(area - 12 * 20) <= 12 + 20 + 1
    assert (
        open_dataset(f"coco:{path},{tmp_path / 'export' / 'images'}").fingerprint() == dataset.fingerprint()
    )


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda d: d["annotations"][0].update(segmentation={"size": [64, 96], "counts": "55"}),
         "does not cover its 96x64 image exactly"),
        (lambda d: d["annotations"][0].update(segmentation={"size": [64, 96], "counts": "~~"}),
         "not a COCO RLE character"),
        (lambda d: d["annotations"][0].update(segmentation={"size": [32, 96], "counts": [0, 3072]}),
         r"RLE size \[32, 96\] differs"),
        (lambda d: d["annotations"][0].update(segmentation={"size": [64, 96], "counts": [-5, 6149]}),
         "non-negative and sum to 6144"),
        (lambda d: d["annotations"][0].update(segmentation=[[1, 2, 3, 4]]), "at least 3 x,y pairs"),
        (lambda d: d["annotations"][0].update(segmentation=[[1, 2, 3, 4, 1e300, 5]]), "far outside"),
        (lambda d: d["annotations"][0].pop("segmentation"), "a bounding box alone"),
        (lambda d: d["annotations"][0].update(image_id=999), "image_id 999 is not in 'images'"),
        (lambda d: d["annotations"][0].update(category_id=5), "category_id 5 is not in"),
        (lambda d: d["images"][0].update(file_name="../outside.png"), "points outside the dataset folder"),
        (lambda d: d["images"][1].update(file_name="frame_000.png"), "listed 2 times"),
        (lambda d: d["images"][0].update(width=0), "not a usable size"),
        (lambda d: d["images"][0].update(file_name="missing.png"), "missing.png: image listed"),
        (lambda d: d.pop("categories"), "not a COCO file"),
        (lambda d: d["categories"][0].pop("name"), "distinct integer ids and names"),
        (lambda d: d["annotations"][0].update(image_id=[100]), r"image_id \[100\] is not in"),
        (lambda d: d["annotations"][0].update(image_id=True), "image_id True is not in"),
        (lambda d: d["annotations"][0].update(segmentation=[[1, 2, 3, 4, 10**400, 5]]), "finite numbers"),
        (lambda d: d["annotations"][0].update(segmentation=[[0, 0, 90, 60] * 2000]), "simplify them"),
        (lambda d: d["annotations"][0].update(segmentation={"size": [64, 96], "counts": "oooooooO"}),
         "too large for any image"),
        (lambda d: d["images"].append({**d["images"][0], "id": 999, "file_name": "./frame_000.png"}),
         "listed 2 times"),
    ],
)  # fmt: skip
def test_coco_bad_input_names_the_problem(tmp_path, change, message):
    path = _coco(tmp_path / "export")
    document = json.loads(path.read_text())
    change(document)
    path.write_text(json.dumps(document))
    with pytest.raises(DataError, match=message):
        open_dataset(str(path))


def test_coco_skip_bad_drops_only_the_bad_image(tmp_path):
    path = _coco(tmp_path / "export")
    document = json.loads(path.read_text())
    document["annotations"][0]["segmentation"] = {"size": [64, 96], "counts": "55"}
    path.write_text(json.dumps(document))
    dataset = open_dataset(str(path), skip_bad=True)
    bad = f"frame_{document['annotations'][0]['id']:03d}.png"
    assert [s.item_id for s in dataset.skipped] == [bad] and len(dataset) == 17
    document["images"][2]["file_name"] = "../outside.png"  # an entry dropped, with its annotation
    path.write_text(json.dumps(document))
    dataset = open_dataset(str(path), skip_bad=True)
    assert len(dataset.skipped) == 2 and len(dataset) == 16


def test_coco_round_trip(tmp_path):
    path = _coco(tmp_path / "export", images=24)
    results = _round_trip(str(path), tmp_path)
    assert {run["arm"] for run in results["runs"]} == {"real", "real+gen"}


def _rename_masks(root: Path, suffix: str, value: int) -> None:
    """Every ground-truth mask saved again with `value` for defect pixels, named `.{suffix}`."""
    for path in sorted((root / "ground_truth").rglob("*.png")):
        mask = np.asarray(Image.open(path)) > 0
        path.unlink()
        Image.fromarray((mask * value).astype(np.uint8)).save(path.with_suffix(f".{suffix}"), format="PNG")


@pytest.mark.parametrize("suffix", ["png", "PNG", "Png"])
@pytest.mark.parametrize("value", [1, 128, 255])
def test_mvtec_masks_of_any_suffix_case_and_0_1_values_are_read(tmp_path, suffix, value):
    """#32 item 13: `000_mask.PNG` is the mask (images of .PNG are read too), and a mask saved as
    0/1 holds its defect instead of reading as empty."""
    reference = open_dataset(str(_mvtec_category(tmp_path / "a" / "tile")))
    root = _mvtec_category(tmp_path / "b" / "tile")
    _rename_masks(root, suffix, value)
    dataset = open_dataset(str(root))
    for index, item in enumerate(dataset.items):
        expected = reference[reference.index_of(item.item_id)].masks
        assert np.array_equal(dataset[index].masks, expected), item.item_id
    assert sum(bool(dataset[i].masks.any()) for i in range(len(dataset))) == 12


def test_linked_class_folders_and_folders_named_like_images(tmp_path):
    """#32 item 13: a defect-type folder that is a link to another is refused (its images would
    count twice, under two classes); a folder named `sub.png` among images or user masks is not
    an image."""
    from defectgen.masks.user import UserMasks

    root = _mvtec_category(tmp_path / "tile")
    (root / "test" / "dent").symlink_to(root / "test" / "crack", target_is_directory=True)
    with pytest.raises(DataError, match="one folder .a link to the other"):
        open_dataset(str(root))
    (root / "test" / "dent").unlink()
    (root / "test" / "crack" / "sub.png").mkdir()
    assert len(open_dataset(str(root))) == 24
    tiles = tmp_path / "tiles"
    for name in ("MT_Crack", "MT_Free"):
        write_gray(tiles / name / "Imgs" / "a.jpg", np.full((20, 20), 90.0))
        write_gray(tiles / name / "Imgs" / "a.PNG", np.pad(np.full((4, 4), 255.0), 8))
    (tiles / "MT_Dent").symlink_to(tiles / "MT_Crack", target_is_directory=True)
    with pytest.raises(DataError, match="one folder"):
        open_dataset(str(tiles))
    (tiles / "MT_Dent").unlink()
    dataset = open_dataset(str(tiles))
    assert dataset[dataset.index_of("MT_Crack/a")].masks.sum() == 16  # the .PNG mask beside its image
    masks = tmp_path / "masks"
    write_gray(masks / "c1_one.png", np.pad(np.ones((4, 4)), 8))  # 0/1 binary mask
    (masks / "sub.png").mkdir()
    user = UserMasks(masks, dataset.classes)
    assert len(user) == 1 and user.index_mask(0, 20, 20).sum() == 16
