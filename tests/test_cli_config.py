"""One config per verb: the CLI's options of synth, evaluate and experiment are made from their
config dataclasses, so every field has a flag (or is a mapping reached by --set) and every
setting flag is a field; every verb takes --config and --set; later sources win."""

from __future__ import annotations

import dataclasses

import pytest
import typer

from defectgen.cli import app
from defectgen.cli_config import flags_of
from defectgen.data.split import SplitConfig
from defectgen.errors import ConfigError
from defectgen.evaluate.config import EvalConfig
from defectgen.experiment import ExperimentConfig
from defectgen.gan.config import TrainConfig
from defectgen.settings import build_config, dump_yaml
from defectgen.studio_config import StudioConfig
from defectgen.synth_config import SynthConfig

VERBS = {"split": SplitConfig, "train": TrainConfig, "synth": SynthConfig, "evaluate": EvalConfig,
         "experiment": ExperimentConfig, "studio": StudioConfig}  # fmt: skip
# options of a command that are inputs or data-reading switches, not settings of its config
INPUTS = {"data", "checkpoint", "split_path", "out_dir", "out_path", "fit_out", "synthetic", "estimate_only",
          "skip_bad", "labels_complete", "covered_ids", "image_size", "config_file", "settings",
          "resume", "device", "model"}  # fmt: skip
# train: --resume, --device (where it runs) and --model (which preset family --preset names) are run
# switches; evaluate's and studio's device is a setting (it is recorded with their results)


def _params(verb: str) -> dict[str, list[str]]:
    command = typer.main.get_command(app).commands[verb]
    return {param.name: list(param.opts) for param in command.params}


@pytest.mark.parametrize("verb", sorted(VERBS))
def test_every_field_has_a_flag_and_every_flag_a_field(verb):
    params = _params(verb)
    for field in dataclasses.fields(VERBS[verb]):
        flags = flags_of(field)
        if not flags:  # a mapping, reached by --set FIELD.KEY=VALUE
            assert field.type in ("dict", dict), field.name
            continue
        assert field.name in params, f"{verb}: setting {field.name} has no flag"
        assert flags[0] in params[field.name]
        assert field.metadata.get("help"), f"{verb}: setting {field.name} has no help"
    settings = {f.name for f in dataclasses.fields(VERBS[verb])}
    assert not set(params) - INPUTS - settings, f"{verb}: a flag that is no setting"


@pytest.mark.parametrize("verb", ["split", "train", "synth", "evaluate", "experiment", "studio"])
def test_every_verb_takes_a_config_file_and_set(verb):
    params = _params(verb)
    assert "--config" in sum(params.values(), []) and "--set" in sum(params.values(), [])


def test_later_sources_win_and_unknown_settings_are_refused(tmp_path):
    file = tmp_path / "synth.yaml"
    file.write_text("n: 5\nseed: 3\nmode: harmonize\n")
    config = build_config(SynthConfig, file, {"seed": 4}, ["mode=paint"], base={"n": 1, "batch_size": 2})
    assert (config.n, config.seed, config.mode, config.batch_size) == (5, 4, "paint", 2)
    with pytest.raises(ConfigError, match="sead: unknown setting"):
        build_config(SynthConfig, overrides=["n=2", "sead=1"])
    file.write_text("n: 2\nsead: 1\n")
    with pytest.raises(ConfigError, match="sead: unknown setting"):
        build_config(SynthConfig, file)
    with pytest.raises(ConfigError, match="expected an integer"):
        build_config(SynthConfig, overrides=["n=many"])


def test_the_cli_builds_the_config_from_flags_file_and_set(tmp_path, monkeypatch):
    """`synth` hands the synthesis the config the three sources make, flags parsed by type."""
    import defectgen.synth as synth_module
    from defectgen.cli import main

    seen = {}

    def fake(checkpoint, dataset, split, out_dir, config, progress=True):
        seen["config"] = config
        return {"items": 0, "out": str(out_dir), "images_per_class": {}, "contact_sheet": ""}

    monkeypatch.setattr(synth_module, "synthesize", fake)
    monkeypatch.setattr("defectgen.cli._open", lambda *args: None)
    monkeypatch.setattr("defectgen.data.split.Split.load", lambda path: None)
    file = tmp_path / "s.yaml"
    file.write_text("n: 7\nclasses: [2]\nbatch_size: 3\n")
    args = ["synth", "x", "--checkpoint", "c", "--split", "s", "--out", str(tmp_path / "o")]
    assert main([*args, "--config", str(file), "--classes", "1,3", "--set", "batch_size=5"]) == 0
    assert (seen["config"].n, seen["config"].classes, seen["config"].batch_size) == (7, [1, 3], 5)
    assert main([*args, "--n", "2", "--set", "seed=x"]) == 2  # a bad --set value: one line, exit 2


def test_train_flags_file_and_set_reach_the_training_config(tmp_path, monkeypatch):
    """`train` builds its TrainConfig like every verb: typed flags (numbers, pairs, switches),
    a file, `--set` of nested model settings; a preset asked over a file's whole model is refused."""
    import defectgen.gan.train as train_module
    from defectgen.cli import main

    seen = {}

    def fake(dataset, split, config, out_dir, resume=False, device=None):
        seen["config"] = config
        return out_dir

    monkeypatch.setattr(train_module, "train", fake)
    monkeypatch.setattr("defectgen.cli._open", lambda *args: None)
    monkeypatch.setattr("defectgen.data.split.Split.load", lambda path: None)
    file = tmp_path / "t.yaml"
    file.write_text("steps: 40\nlr_d: 1e-5\n")
    args = ["train", "x", "--split", "s", "--out", str(tmp_path / "o"), "--config", str(file)]
    flags = ["--lr-g", "1e-4", "--betas", "0.5,0.9", "--no-channels-last", "--preset", "tiny"]
    sets = ["--set", "model.generator.width=12", "--set", "model.resolution=32", "--set", "steps=50"]
    assert main([*args, *flags, *sets]) == 0
    config = seen["config"]
    whole = {"preset": "tiny", "model": config.model_spec.to_dict()}
    assert (config.steps, config.lr_g, config.lr_d, config.betas) == (50, 1e-4, 1e-5, (0.5, 0.9))
    assert config.channels_last is False and config.preset == "tiny"
    assert config.model == {"generator": {"width": 12}, "resolution": 32}
    assert config.model_spec.generator.width == 12 and config.model_spec.resolution == 32
    assert main(["train", "x", "--split", "s", "--out", str(tmp_path / "o"), "--model", "stylegan"]) == 0
    assert seen["config"].preset == "stylegan-small"
    file.write_text(dump_yaml(whole))
    assert main([*args, "--preset", "small"]) == 2  # the file's whole model would override it
    assert main([*args, "--preset", "tiny"]) == 0


FIXTURE_DATA = __import__("pathlib").Path(__file__).parent / "fixtures" / "tiny_folder"


@pytest.mark.parametrize(
    "args, config, flag_text, field_text",
    [
        (["synth", "--n", "0"], lambda: __import__("defectgen.synth_config").synth_config.SynthConfig(n=0),
         "--n must be a number", "`n` must be a number"),
        (["evaluate", "--size", "33"], lambda: EvalConfig(crop_size=33),
         "--size must be a multiple of 32", "`crop_size` must be a multiple of 32"),
        (["evaluate", "--set", "extra_share=2"], lambda: EvalConfig(extra_share=2),
         "--extra-share must be in [0, 1]", "`extra_share` must be in [0, 1]"),
        (["experiment", "--generators", "0"], lambda: ExperimentConfig(generators=0),
         "--generators must be in 1..16", "`generators` must be in 1..16"),
        (["split", "--test-fraction", "1"], lambda: SplitConfig(test_fraction=1),
         "--test-fraction must be between 0 and 1", "`test_fraction` must be between 0 and 1"),
        (["evaluate", "--device", "gpu"], lambda: EvalConfig(device="gpu"),
         "--device must be cpu, cuda or cuda:N", "`device` must be cpu, cuda or cuda:N"),
        (["experiment", "--set", "evaluation.device=tpu"],
         lambda: ExperimentConfig(evaluation={"device": "tpu"}),
         "--set evaluation.device must be cpu", "`evaluation.device` must be cpu"),
        (["studio", "--port", "70000"], lambda: StudioConfig(port=70000),
         "--port must be in 0..65535", "`port` must be in 0..65535"),
        (["train", "--batch-size", "3"], lambda: TrainConfig(batch_size=3),
         "--batch-size must be an even number", "`batch_size` must be an even number"),
        (["train", "--set", "ema_rampup=2"], lambda: TrainConfig(ema_rampup=2),
         "--ema-rampup must be in [0, 1]", "`ema_rampup` must be in [0, 1]"),
        (["experiment", "--set", "generator.batch_size=3"],
         lambda: ExperimentConfig(generator={"batch_size": 3}),
         "--set generator.batch_size must be an even", "`generator.batch_size` must be an even"),
        (["experiment", "--set", "generator.stepz=3"], lambda: ExperimentConfig(generator={"stepz": 3}),
         "generator.stepz: unknown setting", "generator.stepz: unknown setting"),
        (["experiment", "--set", "generator.steps=3"], lambda: ExperimentConfig(generator={"steps": 3}),
         "generator.steps is set by the experiment itself", "generator.steps is set by the experiment"),
    ],
)  # fmt: skip
def test_errors_name_flags_on_the_command_line_and_fields_in_python(
    tmp_path, args, config, flag_text, field_text
):
    """#32 item 12 / #33: one validation, two readers: a Python caller reads the field it set, a
    command-line user the option they typed (or `--set KEY` where the setting has no flag)."""
    from defectgen.cli import main
    from defectgen.ui import console

    with pytest.raises(ConfigError) as refused:
        config().validate()
    assert field_text in str(refused.value) and "--" not in str(refused.value).split(" must")[0]
    verb, *options = args
    extra = ["--split", str(tmp_path / "s.json")] if verb in ("train", "synth", "evaluate", "studio") else []
    extra += ["--checkpoint", str(tmp_path / "c.pt")] if verb in ("synth", "studio") else []
    with console.capture() as captured:
        code = main([verb, str(FIXTURE_DATA), *extra, "--out", str(tmp_path / "o"), *options])
    assert code == 2 and flag_text in " ".join(captured.get().split())
    assert not (tmp_path / "o").exists()


def test_a_setting_without_a_flag_is_named_as_set():
    from defectgen.cli_config import as_flags

    assert as_flags("`evaluation` and `gan_steps`, not `gan_step`", ExperimentConfig) == (
        "--set evaluation and --gan-steps, not `gan_step`"
    )


def test_the_preset_help_names_every_preset():
    """`--preset`'s help is written out (the CLI does not import the models, and torch with them,
    to print its help): it must still name every preset of the registry."""
    from defectgen.models import PRESETS
    from defectgen.models.presets import STYLEGAN_PREFIX

    help_text = next(f for f in dataclasses.fields(TrainConfig) if f.name == "preset").metadata["help"]
    for name in PRESETS:
        short = name.removeprefix(STYLEGAN_PREFIX)
        assert name in help_text or (name.startswith(STYLEGAN_PREFIX) and f"-{short}" in help_text), name
