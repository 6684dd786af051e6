"""`defectgen studio`: the API through Starlette's test client, the writer under concurrency,
and the whole page in a real Chromium (skipped, saying why, where no browser is installed)."""

import base64
import io
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from PIL import Image
from starlette.testclient import TestClient

from conftest import write_gray
from defectgen.data import open_dataset
from defectgen.data.split import make_split
from defectgen.errors import DataError
from defectgen.gan.checkpoint import load_checkpoint
from defectgen.gan.config import TrainConfig
from defectgen.gan.train import train
from defectgen.geometry import hole_radius
from defectgen.studio import StudioConfig, StudioSession, create_app

TINY = dict(preset="tiny", model={"resolution": 32}, batch_size=2, sample_every=100, checkpoint_every=100)
TOKEN = "test-token-123"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A folder dataset (48x80 gray, two classes, half defect-free), its split and a 1-step GAN."""
    root = tmp_path_factory.mktemp("studio")
    rng = np.random.default_rng(0)
    for i in range(12):
        image = rng.normal(100, 6, (48, 80))
        mask = np.zeros((48, 80), np.uint8)
        if i % 2:
            y, x = int(rng.integers(4, 36)), int(rng.integers(4, 60))
            mask[y : y + 6, x : x + 14] = 1 + (i // 2) % 2
            image[mask > 0] += 70
        write_gray(root / "data" / "images" / f"im{i:02d}.png", image.clip(0, 255))
        write_gray(root / "data" / "masks" / f"im{i:02d}.png", mask)
    (root / "data" / "classes.txt").write_text("scratch\nspot\n")
    dataset = open_dataset(str(root / "data"))
    split = make_split(dataset, seed=0)
    split.save(root / "split.json")
    checkpoint = train(dataset, split, TrainConfig(steps=1, **TINY), root / "gan", progress=False)
    return dataset, split, checkpoint, root


@pytest.fixture
def client(run, tmp_path):
    dataset, split, checkpoint, _ = run
    session = StudioSession(checkpoint, dataset, split, tmp_path / "kept", StudioConfig(precision="fp32"))
    with TestClient(create_app(session, TOKEN), headers={"X-Studio-Token": TOKEN}) as test_client:
        test_client.session = session
        yield test_client
    session.close()


def _png_url(mask: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray((mask * 255).astype(np.uint8)).save(buffer, "PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _stroke(shape=(48, 80)) -> np.ndarray:
    mask = np.zeros(shape, bool)
    mask[20:26, 10:50] = True
    return mask


def _generate(client, background, mask, class_id=1, seed=3, draws=2, severity=None) -> dict:
    body = {
        "background": background,
        "class_id": class_id,
        "seed": seed,
        "draws": draws,
        "mask": _png_url(mask),
        **({} if severity is None else {"severity": severity}),
    }
    response = client.post("/api/generate", json=body)
    assert response.status_code == 200, response.text
    job = response.json()["job"]
    for _ in range(600):
        state = client.get(f"/api/jobs/{job}").json()
        if state["finished"]:
            assert state["error"] is None
            return {"job": job, **state}
        time.sleep(0.05)
    raise AssertionError("the job did not finish")


def test_every_request_needs_the_token(client):
    bare = TestClient(client.app)
    for path in ("/", "/api/info", "/api/background?id=x", "/api/jobs/abc"):
        assert bare.get(path).status_code == 403
        assert bare.get(path, headers={"X-Studio-Token": "wrong"}).status_code == 403
    assert bare.post("/api/keep", json={"job": "x", "draw": 0}).status_code == 403
    page = bare.get(f"/?token={TOKEN}")
    assert page.status_code == 200 and "<canvas" in page.text and "maskDataURL" in page.text
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page.text)  # nothing fetched from outside
    assert "default-src 'none'" in page.headers["content-security-policy"]


def test_generate_and_keep_write_the_painted_mask(client, run):
    dataset, *_ = run
    info = client.get("/api/info").json()
    assert [c["name"] for c in info["classes"]] == ["scratch", "spot"]
    background = info["backgrounds"][0]["id"]
    picture = Image.open(io.BytesIO(client.get(f"/api/background?id={background}").content))
    assert picture.size == (80, 48)
    stroke = _stroke()
    state = _generate(client, background, stroke, class_id=2, seed=3, draws=2)
    assert state["total"] == state["done"] == 2 and [r["seed"] for r in state["results"]] == [3, 4]
    assert state["results"][0]["image"] != state["results"][1]["image"]  # two draws differ
    record = client.post("/api/keep", json={"job": state["job"], "draw": 1}).json()
    out = client.session.writer.out_dir
    assert record["image"] == "images/studio_000000.png" and record["classes"] == [2] and record["seed"] == 4
    written = open_dataset(str(out))  # a drop-in folder dataset, as `synth --format folder` writes
    sample = written[0]
    assert np.array_equal(sample.masks[1], stroke) and not sample.masks[0].any()
    manifest = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert [m["image"] for m in manifest] == ["images/studio_000000.png"]
    assert (out / "classes.txt").read_text().split() == ["scratch", "spot"]
    again = client.post("/api/keep", json={"job": state["job"], "draw": 1}).json()
    assert again["again"] and len((out / "manifest.jsonl").read_text().splitlines()) == 1
    assert client.get("/api/info").json()["kept"] == 1


def test_same_seed_same_picture_as_synth_paints(client, run):
    from defectgen.gan.checkpoint import load_generator
    from defectgen.painter import paint_one
    from defectgen.synthset.writer import png_bytes

    dataset, _, checkpoint, _ = run
    background = client.get("/api/info").json()["backgrounds"][1]["id"]
    state = _generate(client, background, _stroke(), class_id=1, seed=7, draws=1)
    G, _, _, config = load_generator(checkpoint)
    masks = np.zeros((2, 48, 80), bool)
    masks[0] = _stroke()
    image = dataset.load_image(dataset.index_of(background.partition(":")[2]))
    import contextlib

    painted, _ = paint_one(
        G, image, masks, 7, hole_radius(config.max_dilation), "cpu", contextlib.nullcontext()
    )
    expected = "data:image/png;base64," + base64.b64encode(png_bytes(painted)).decode()
    assert state["results"][0]["image"] == expected


def test_severity_is_painted_as_synth_paints_it_and_recorded(client, run):
    """The severity control: what `paint_one(..., severity=s)` paints, kept with its severity."""
    import contextlib

    from defectgen.gan.checkpoint import load_generator
    from defectgen.painter import paint_one
    from defectgen.synthset.writer import png_bytes

    dataset, _, checkpoint, _ = run
    assert client.get("/api/info").json()["severity"] is True
    background = client.get("/api/info").json()["backgrounds"][1]["id"]
    faint = _generate(client, background, _stroke(), class_id=1, seed=7, draws=1, severity=0.0)
    strong = _generate(client, background, _stroke(), class_id=1, seed=7, draws=1, severity=1.0)
    assert faint["results"][0]["image"] != strong["results"][0]["image"]
    G, _, _, config = load_generator(checkpoint)
    masks = np.zeros((2, 48, 80), bool)
    masks[0] = _stroke()
    image = dataset.load_image(dataset.index_of(background.partition(":")[2]))
    radius = hole_radius(config.max_dilation)
    painted, _ = paint_one(G, image, masks, 7, radius, "cpu", contextlib.nullcontext(), severity=1.0)
    assert (
        strong["results"][0]["image"]
        == "data:image/png;base64," + base64.b64encode(png_bytes(painted)).decode()
    )
    record = client.post("/api/keep", json={"job": strong["job"], "draw": 0}).json()
    assert record["severity"] == [[1, 1.0]]
    # unset, the new defect gets the median; a defect image's own defects get none (synth's rule)
    plain = _generate(client, background, _stroke(), class_id=1, seed=7, draws=1)
    assert (
        plain["results"][0]["image"]
        == _generate(client, background, _stroke(), class_id=1, seed=7, draws=1, severity=0.5)["results"][0][
            "image"
        ]
    )


@pytest.mark.parametrize(
    "change, status, message",
    [
        ({"mask": "data:image/png;base64,!!!"}, 400, "malformed"),
        ({"mask": "http://example.com/x.png"}, 400, "data:image/png;base64"),
        ({"mask": _png_url(np.zeros((48, 80), bool))}, 400, "mask is empty"),
        ({"mask": _png_url(np.ones((10, 10), bool))}, 400, "the mask is 10x10, its background 80x48"),
        ({"background": "../../etc/passwd"}, 404, "no background"),
        ({"class_id": 3}, 400, "class id 3 is not one of"),
        ({"class_id": "one"}, 400, "expected an integer"),
        ({"draws": 0}, 400, "draws must be"),
        ({"draws": 9}, 400, "draws must be"),
        ({"seed": -1}, 400, "seed must be"),
        ({"severity": 1.5}, 400, "severity must be in 0..1"),
        ({"severity": "nan"}, 400, "severity must be in 0..1"),
        ({"severity": "high"}, 400, "expected a number"),
        ({"severity": True}, 400, "expected a number"),
        ({"severity": [0.5]}, 400, "expected a number"),
        ({"mask": _png_url(np.zeros((10000, 20000), bool))}, 400, "not a readable PNG"),
    ],
)
def test_generate_refuses_bad_requests(client, change, status, message):
    background = client.get("/api/info").json()["backgrounds"][0]["id"]
    body = {
        "background": background,
        "class_id": 1,
        "seed": 0,
        "draws": 1,
        "mask": _png_url(_stroke()),
        **change,
    }
    response = client.post("/api/generate", json=body)
    assert response.status_code == status and message in response.json()["error"]


def test_an_upload_of_a_test_image_is_refused(client, run):
    """Lineage (#32): a byte copy of a test-half image cannot become a background; a training
    defect image is accepted with a warning (an upload is taken as defect-free)."""
    dataset, split, _, _ = run
    test_path = dataset.items[dataset.index_of(split.test[0])].image_path
    reply = client.post("/api/upload", content=test_path.read_bytes())
    assert reply.status_code == 400 and f"{split.test[0]} of this split's test half" in reply.json()["error"]
    defect = next(i for i in split.train if dataset.items[dataset.index_of(i)].class_ids)
    reply = client.post(
        "/api/upload", content=dataset.items[dataset.index_of(defect)].image_path.read_bytes()
    )
    assert reply.status_code == 200 and "holds defects" in reply.json()["warning"]
    assert "warning" not in client.post("/api/upload", content=_png_bytes(np.full((40, 64), 90))).json()


def test_uploads_follow_the_readers_rules(client, tmp_path):
    assert client.post("/api/upload", content=b"not an image").status_code == 400
    gif = io.BytesIO()
    Image.new("L", (40, 40)).save(gif, "GIF")
    assert client.post("/api/upload", content=gif.getvalue()).status_code == 400  # not a reader's format
    background = client.get("/api/info").json()["backgrounds"][0]["id"]
    assert client.get(f"/api/shape?background={background}&class_id=1&seed=-1").status_code == 400
    assert (
        "at least 16 px" in client.post("/api/upload", content=_png_bytes(np.zeros((8, 40)))).json()["error"]
    )
    assert client.post("/api/upload", content=b"x" * 20_000_001).status_code == 413
    bomb = io.BytesIO()
    Image.new("L", (5000, 5000)).save(bomb, "PNG")
    assert "limit" in client.post("/api/upload", content=bomb.getvalue()).json()["error"]
    info = client.post("/api/upload", content=_png_bytes(np.full((40, 64), 90))).json()
    assert (info["width"], info["height"]) == (64, 40)
    state = _generate(client, info["id"], _stroke((40, 64)), draws=1)
    record = client.post("/api/keep", json={"job": state["job"], "draw": 0}).json()
    assert record["background"] == info["id"]
    assert client.post("/api/keep", json={"job": state["job"], "draw": 5}).status_code == 404
    assert client.post("/api/keep", content=b"[1, 2]").status_code == 400
    infinite = b'{"job": "%s", "draw": Infinity}' % state["job"].encode()
    assert "expected an integer" in client.post("/api/keep", content=infinite).json()["error"]


def _png_bytes(pixels) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(pixels, dtype=np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def test_two_tabs_keeping_one_draw_write_it_once(client):
    background = client.get("/api/info").json()["backgrounds"][0]["id"]
    state = _generate(client, background, _stroke(), draws=1)
    answers = []
    threads = [
        threading.Thread(
            target=lambda: answers.append(client.post("/api/keep", json={"job": state["job"], "draw": 0}))
        )
        for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(bool(a.json().get("again")) for a in answers) == [False, True, True, True]
    assert len((client.session.writer.out_dir / "manifest.jsonl").read_text().splitlines()) == 1


def test_defect_backgrounds_keep_their_defects_in_the_label(run, tmp_path):
    """With no defect-free training image, backgrounds hold defects: the kept label has them too,
    and the painted hole never repaints them."""
    dataset, _, checkpoint, _ = run
    from defectgen.data.split import Split

    train = [i for i in range(len(dataset)) if dataset.items[i].class_ids]
    generator_read = set(load_checkpoint(checkpoint)["lineage"]["read"])
    test = [
        i for i in range(len(dataset)) if i not in train and dataset.items[i].item_id not in generator_read
    ]
    ids = [tuple(dataset.items[i].item_id for i in part) for part in (train, test)]
    split = Split(dataset.spec, dataset.kind, dataset.fingerprint(), dataset.classes, 0, 0.5, 1.0, *ids)
    session = StudioSession(checkpoint, dataset, split, tmp_path / "kept", StudioConfig(precision="fp32"))
    key = session.info()["backgrounds"][0]["id"]
    old = session.existing(key)
    assert old is not None and old.any()
    stroke = np.ones((48, 80), bool)  # over everything, the old defect included
    job = session.start(key, stroke, 1, 0, 1)
    for _ in range(600):
        if session.job(job).finished:
            break
        time.sleep(0.05)
    record = session.keep(job, 0)
    session.close()
    written = open_dataset(str(tmp_path / "kept"))[0]
    for k in range(2):
        assert (written.masks[k] >= old[k]).all()  # the old defect keeps its class
    from defectgen.data.rle import decode

    painted = decode(record["painted"], (48, 80))
    assert not (painted & old.any(0)).any()


def test_two_tabs_keeping_at_once_never_clash(client):
    background = client.get("/api/info").json()["backgrounds"][0]["id"]
    state = _generate(client, background, _stroke(), draws=4)
    out = client.session.writer.out_dir
    (out / "manifest.jsonl").write_text('{"index": 0, "image": "images/gone.png"')  # a line cut by a kill
    errors = []

    def keep(draw):
        response = client.post("/api/keep", json={"job": state["job"], "draw": draw})
        if response.status_code != 200:
            errors.append(response.text)

    threads = [threading.Thread(target=keep, args=(d,)) for d in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    lines = (out / "manifest.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines[1:]]
    assert len({r["image"] for r in records}) == 4 and sorted(r["seed"] for r in records) == [3, 4, 5, 6]
    assert len(open_dataset(str(out))) == 4


def test_out_folder_must_be_ours(run, tmp_path):
    dataset, split, checkpoint, root = run
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(DataError, match="not empty and holds no defectgen images"):
        StudioSession(checkpoint, dataset, split, tmp_path / "busy")
    StudioSession(checkpoint, dataset, split, tmp_path / "kept").close()
    params = json.loads((tmp_path / "kept" / "synth.json").read_text())
    (tmp_path / "kept" / "synth.json").write_text(json.dumps({**params, "hole_dilation": 99}))
    with pytest.raises(DataError, match="another hole_dilation"):
        StudioSession(checkpoint, dataset, split, tmp_path / "kept")


# --- the real browser -----------------------------------------------------------------------------


def _browser() -> tuple[str, str]:
    chromium = next(
        (shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None
    )
    driver = shutil.which("chromedriver")
    if not chromium or not driver:
        pytest.skip(
            "SKIPPED, not passed: Chromium and chromedriver are not installed, so the real-browser test of "
            "`defectgen studio` cannot run (Debian: apt-get install chromium chromium-driver; `make test` "
            "tries this when it may)"
        )
    return chromium, driver


@pytest.mark.slow
def test_paint_generate_keep_in_a_real_browser(run, tmp_path):
    chromium, driver = _browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    _, _, checkpoint, root = run
    out = tmp_path / "kept"
    command = [sys.executable, "-m", "defectgen", "studio", str(root / "data"), "--out", str(out),
               "--checkpoint", str(checkpoint), "--split", str(root / "split.json"), "--port", "0",
               "--precision", "fp32"]  # fmt: skip
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              env={**os.environ, "COLUMNS": "400"})  # fmt: skip
    browser = None
    try:
        url = None
        for line in server.stdout:
            match = re.search(r"(http://127\.0\.0\.1:\d+/\?token=\S+)", line)
            if match:
                url = match[1]
                break
        assert url, "the studio did not print its URL"
        options = webdriver.ChromeOptions()
        options.binary_location = chromium
        for flag in (
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--window-size=1200,900",
        ):
            options.add_argument(flag)
        browser = webdriver.Chrome(service=Service(driver), options=options)
        browser.get(url.split("?")[0])  # without the token: refused
        assert "token" in browser.page_source
        browser.get(url)
        wait = WebDriverWait(browser, 60)
        wait.until(lambda b: b.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "true")
        canvas = browser.find_element(By.ID, "mask-canvas")
        width = canvas.size["width"]
        actions = ActionChains(browser)
        actions.move_to_element_with_offset(canvas, -width // 4, 0).click_and_hold()
        actions.move_by_offset(width // 2, 2).release().perform()
        painted = browser.execute_script("return studio.maskDataURL();")
        stroke = (
            np.asarray(Image.open(io.BytesIO(base64.b64decode(painted.split(",", 1)[1]))).getchannel("A"))
            > 127
        )
        assert 50 < stroke.sum() < stroke.size // 2  # a stroke, not nothing and not everything
        draws = browser.find_element(By.ID, "draws")
        draws.clear()
        draws.send_keys("1")
        browser.find_element(By.ID, "generate").click()
        keep = wait.until(lambda b: b.find_elements(By.CSS_SELECTOR, "#results .keep"))[0]
        keep.click()
        wait.until(lambda b: b.find_element(By.CSS_SELECTOR, "#results .keep").text.startswith("Kept:"))
        manifest = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
        assert len(manifest) == 1 and manifest[0]["image"] == "images/studio_000000.png"
        written = np.asarray(Image.open(out / manifest[0]["mask"]))
        assert np.array_equal(written > 0, stroke)  # the written mask is the painted stroke, pixel for pixel
        assert manifest[0]["classes"] == [1] and (written[stroke] == 1).all()
        if os.environ.get("DEFECTGEN_SCREENSHOT"):
            browser.save_screenshot(os.environ["DEFECTGEN_SCREENSHOT"])
    finally:
        if browser is not None:
            browser.quit()
        server.terminate()
        server.wait(timeout=30)


def test_studio_refuses_other_hosts_fractional_ids_and_leaves_no_lock_in_a_foreign_folder(run, tmp_path):
    """Host header guard, `class_id: 1.9` refused rather than truncated, an undecodable upload
    named as data (not an object repr), and a foreign --out left exactly as it was."""
    dataset, split, checkpoint, _ = run
    session = StudioSession(checkpoint, dataset, split, tmp_path / "kept")
    app = create_app(session, "t", ["127.0.0.1"])
    local = TestClient(app, base_url="http://127.0.0.1")
    assert local.get("/api/info", headers={"x-studio-token": "t"}).status_code == 200
    other = TestClient(app, base_url="http://evil.example")
    assert other.get("/api/info", headers={"x-studio-token": "t"}).status_code == 400
    key = session.info()["backgrounds"][0]["id"]
    mask = np.zeros(session.background(key).shape[:2], dtype=bool)
    mask[4:12, 4:20] = True
    body = {"background": key, "class_id": 1.9, "seed": 0, "draws": 1, "mask": _png_url(mask)}
    reply = local.post("/api/generate", json=body, headers={"x-studio-token": "t"})
    assert reply.status_code == 400 and "expected an integer" in reply.json()["error"]
    reply = local.post("/api/upload", content=b"not an image at all", headers={"x-studio-token": "t"})
    assert reply.status_code == 400 and "BytesIO" not in reply.json()["error"]
    session.close()
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(DataError):
        StudioSession(checkpoint, dataset, split, foreign)
    assert sorted(p.name for p in foreign.iterdir()) == ["notes.txt"]
    from defectgen.errors import ConfigError
    from defectgen.studio import serve

    with pytest.raises(ConfigError, match="pass another --host"):  # not "--port"
        serve(session, StudioConfig(host="no-such-host.invalid", port=0), announce=lambda url: None)
