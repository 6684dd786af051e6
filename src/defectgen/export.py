"""`defectgen export`: a training checkpoint's (EMA) generator as an ONNX model, FFT included.

The graph takes the generator's inputs and returns the composite, so a caller never composites
by hand:

    image  float32 [N, C, H, W] in [-1, 1]      (uint8 / 127.5 - 1)
    hole   float32 [N, 1, H, W], 1 = repaint    (the label masks dilated: `hole_dilation` px)
    labels float32 [N, K, H, W], one per class
    z      float32 [N, style_dim]               ~ N(0, I)
    noise  float32 [N, noise_maps, H, W]        ~ N(0, I) (only when noise_maps > 0)
    severity float32 [N, 1, H, W]               each defect's severity on its pixels (only when the
                                                metadata says severity=true; see defectgen.severity)
    ->  painted float32 [N, C, H, W] in [-1, 1]: the generator inside the hole, `image` outside

N, H and W are dynamic; H and W must be multiples of `size_multiple` (reflect-pad and crop
back, as `synth` does). The Fourier units' rfft2 / irfft2 become ONNX `DFT` nodes (opset 20)
through PyTorch's dynamo exporter. The exporter annotates the inverse DFT with the shape it saw
while tracing, which onnxruntime then enforces at any other size ("Shape mismatch attempting to
re-use buffer"), so the intermediate shape annotations (`value_info`) are dropped: onnxruntime
infers them per run. Metadata (`metadata_props`) records what a caller needs: classes,
channels, size multiple, style and noise sizes, the severity input, hole dilation, the checkpoint's digest.

`OnnxGenerator` runs the file in onnxruntime behind the PyTorch generator's interface, and
`verify` compares the two on real images, painted the way `synth` paints them.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import warnings
from pathlib import Path

import numpy as np
import torch

from defectgen.errors import ConfigError, DefectgenError
from defectgen.fileio import file_digest, parse_json, write_atomic
from defectgen.gan.checkpoint import load_generator
from defectgen.geometry import hole_radius
from defectgen.models import composite
from defectgen.severity import DEFAULT_SEVERITY

OPSET = 20  # DFT with a dynamic length input


class _Composited(torch.nn.Module):
    """The generator with the composite, as one graph."""

    def __init__(self, G, with_noise: bool):
        super().__init__()
        self.G, self.with_noise = G, with_noise

    def forward(self, image, hole, labels, z, *extra):
        noise = extra[0] if self.with_noise else None
        severity = extra[-1] if self.G.severity else None
        raw = self.G(image, hole, labels, z=z, noise=noise, severity=severity)
        return composite(raw, image, hole)


def export_onnx(checkpoint: Path, out: Path, sample_size: tuple[int, int] | None = None) -> dict:
    """Export `checkpoint`'s EMA generator to `out` (.onnx); returns the metadata written."""
    import onnx

    out = Path(out)
    if out.suffix.lower() != ".onnx":
        raise ConfigError(f"--out must name an .onnx file, got {out}")
    if out.exists() and not _is_onnx(out):
        raise ConfigError(f"{out} exists and is not an ONNX model; refusing to overwrite it")
    G, classes, channels, config = load_generator(checkpoint, "cpu", expect="inpainter")
    multiple = G.size_multiple
    height, width = sample_size or (4 * multiple, 6 * multiple)  # two different sizes: nothing fixed
    inputs = _sample_inputs(G, channels, len(classes), 2, height, width, seed=0)
    names = ["image", "hole", "labels", "z"] + (["noise"] if G.noise_maps else [])
    names += ["severity"] if G.severity else []
    spatial = {
        0: torch.export.Dim("batch", min=1),
        2: torch.export.Dim("height"),
        3: torch.export.Dim("width"),
    }
    dynamic = {"image": spatial, "hole": spatial, "labels": spatial, "z": {0: spatial[0]}}
    dynamic["extra"] = tuple(spatial for _ in names[4:])  # noise and/or severity, in that order
    module = _Composited(G, bool(G.noise_maps)).eval()
    try:
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():  # it narrates every pass
            warnings.simplefilter("ignore", UserWarning)
            program = torch.onnx.export(
                module,
                tuple(inputs[n] for n in names),
                input_names=names,
                output_names=["painted"],
                dynamic_shapes=dynamic,
                opset_version=OPSET,
                dynamo=True,
                verbose=False,
            )
    except Exception as err:  # the exporter raises many types; say what failed and where
        raise DefectgenError(f"ONNX export of {checkpoint} failed: {err}") from err
    model = program.model_proto
    del model.graph.value_info[:]  # see the module docstring: traced DFT shapes break other sizes
    metadata = {
        "producer": "defectgen export",
        "classes": json.dumps(list(classes.names)),
        "image_channels": str(channels),
        "size_multiple": str(multiple),
        "style_dim": str(G.style_dim),
        "noise_maps": str(G.noise_maps),
        "severity": str(G.severity).lower(),
        "hole_dilation": str(hole_radius(config.max_dilation)),
        "checkpoint_sha256": file_digest(checkpoint),
    }
    for key, value in metadata.items():
        model.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(model)
    write_atomic(out, model.SerializeToString())
    return metadata


class OnnxGenerator:
    """An exported generator run by onnxruntime, usable wherever `synth` uses the PyTorch one:
    same `size_multiple`, `noise_maps`, `draw_style` / `draw_noise` (the same torch draws, so a
    seed gives the same picture up to float rounding) and call signature; it returns the
    composite, which `models.composite` leaves unchanged for a {0, 1} hole."""

    def __init__(self, path: Path, threads: int | None = None):
        import onnxruntime

        options = onnxruntime.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        try:
            self.session = onnxruntime.InferenceSession(
                str(path), options, providers=["CPUExecutionProvider"]
            )
        except Exception as err:
            raise DefectgenError(f"{path}: not a loadable ONNX model ({err})") from err
        meta = self.session.get_modelmeta().custom_metadata_map
        if meta.get("producer") != "defectgen export":
            raise DefectgenError(f"{path} was not written by `defectgen export`")
        self.metadata = meta
        self.classes = parse_json(meta["classes"])
        self.image_channels = int(meta["image_channels"])
        self.size_multiple = int(meta["size_multiple"])
        self.style_dim = int(meta["style_dim"])
        self.noise_maps = int(meta["noise_maps"])
        self.severity = meta.get("severity") == "true"
        self.inputs = [i.name for i in self.session.get_inputs()]

    def draw_style(self, batch: int, generator: torch.Generator, device=None) -> torch.Tensor:
        return torch.randn(batch, self.style_dim, generator=generator)

    def draw_noise(self, batch: int, height: int, width: int, generator: torch.Generator, device=None):
        return torch.randn((batch, self.noise_maps, height, width), generator=generator)

    def __call__(self, image, hole, labels, z=None, noise=None, severity=None) -> torch.Tensor:
        if self.severity and severity is None:  # the median, as the PyTorch generator takes it
            severity = DEFAULT_SEVERITY * labels.amax(dim=1, keepdim=True)
        feeds = {"image": image, "hole": hole, "labels": labels, "z": z, "noise": noise, "severity": severity}
        arrays = {name: feeds[name].float().contiguous().numpy() for name in self.inputs}
        return torch.from_numpy(self.session.run(None, arrays)[0])


def verify(
    checkpoint: Path, onnx_path: Path, samples: list[tuple[np.ndarray, np.ndarray]], seed: int = 0
) -> list:
    """Paint each (uint8 image [H, W, C], bool masks [K, H, W]) of `samples` as `synth` does,
    with PyTorch and with the ONNX model, same seed; per sample: size, max |difference| of the
    uint8 images, and whether the pixels each composited are the same (the hole) with every
    pixel outside it untouched by both."""
    from defectgen.painter import paint_one

    G, _, _, config = load_generator(checkpoint, "cpu", expect="inpainter")
    exported = OnnxGenerator(onnx_path)
    radius = hole_radius(config.max_dilation)
    cpu, fp32 = torch.device("cpu"), torch.autocast("cpu", enabled=False)
    report = []
    for index, (image, masks) in enumerate(samples):
        # a severity other than the default, so the graph's severity input is what is compared
        severity = (0.2 + 0.6 * (index % 2)) if G.severity else None
        draw = (seed + index, radius, cpu, fp32)
        expected, region = paint_one(G, image, masks, *draw, severity=severity)
        got, region_onnx = paint_one(exported, image, masks, *draw, severity=severity)
        outside = ~region
        report.append(
            {
                "size": list(image.shape[:2]),
                "max_abs_difference": int(np.abs(got.astype(int) - expected.astype(int)).max()),
                "same_region": bool(np.array_equal(region, region_onnx)),
                "outside_untouched": bool(
                    np.array_equal(got[outside], image[outside])
                    and np.array_equal(expected[outside], image[outside])
                ),
            }
        )
    return report


def _random_samples(channels: int, classes: int) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(0)
    samples = []
    for height, width in ((64, 96), (83, 61)):
        image = rng.integers(0, 256, (height, width, channels), dtype=np.uint8)
        masks = np.zeros((classes, height, width), dtype=bool)
        masks[0, height // 4 : height // 2, width // 4 : width // 2] = True
        samples.append((image, masks))
    return samples


def _sample_inputs(G, channels: int, classes: int, batch: int, height: int, width: int, seed: int) -> dict:
    generator = torch.Generator().manual_seed(seed)
    hole = (torch.rand(batch, 1, height, width, generator=generator) < 0.3).float()
    labels = torch.zeros(batch, classes, height, width)
    labels[:, 0] = hole[:, 0]
    inputs = {
        "image": torch.rand(batch, channels, height, width, generator=generator) * 2 - 1,
        "hole": hole,
        "labels": labels,
        "z": G.draw_style(batch, generator),
    }
    if G.noise_maps:
        inputs["noise"] = G.draw_noise(batch, height, width, generator)
    if G.severity:
        inputs["severity"] = torch.rand(batch, 1, height, width, generator=generator) * labels.amax(1, True)
    return inputs


def _is_onnx(path: Path) -> bool:
    """An ONNX model with a graph (an empty or stray protobuf file does not count)."""
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception:
        return False
    return len(model.graph.node) > 0 and len(model.graph.input) > 0


def export_verified(checkpoint: Path, out: Path, samples: list | None = None) -> list:
    """`export_onnx` to a temporary file beside `out`, `verify` it on `samples` (default: two
    random images of different sizes, one not a multiple of the size step, so synth's padding is
    exercised), and only then move it over `out`: a model that does not reproduce PyTorch never
    replaces a good one. Returns the report; raises DefectgenError (nothing written) on a mismatch."""
    out = Path(out)
    if out.suffix.lower() != ".onnx":
        raise ConfigError(f"--out must name an .onnx file, got {out}")
    if out.exists() and not _is_onnx(out):
        raise ConfigError(f"{out} exists and is not an ONNX model; refusing to overwrite it")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.with_name(f".{out.stem}.unverified{os.getpid()}.onnx")
    try:
        metadata = export_onnx(checkpoint, staging)
        if samples is None:
            samples = _random_samples(int(metadata["image_channels"]), len(parse_json(metadata["classes"])))
        report = verify(checkpoint, staging, samples)
        if not all(
            r["same_region"] and r["outside_untouched"] and r["max_abs_difference"] <= 1 for r in report
        ):
            raise DefectgenError(f"the exported model does not reproduce PyTorch's output: {report}")
        os.replace(staging, out)
    finally:
        staging.unlink(missing_ok=True)
    return report
