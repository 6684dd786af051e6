"""Settings as a person writes them: YAML text and files, `key=value` overrides, and the
coercion of a parsed value to a dataclass field's type. Every verb's config (`TrainConfig`,
`EvalConfig`, `SynthConfig`, `ExperimentConfig`) reads its file and `--set` values through here.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import re
import typing
from pathlib import Path

import yaml

from defectgen.errors import ConfigError
from defectgen.fileio import read_text

MAX_CONFIG_BYTES = 1_000_000  # a config is a few hundred bytes; anything near this is not one
MAX_STEPS = 10**9  # far beyond any run; bounds what a typo can ask for
MAX_SEED = 2**63 - 1  # torch.manual_seed and numpy accept seeds up to this
PRECISIONS = ("auto", "bf16", "fp32")  # auto: bf16 autocast where the hardware supports it


def check_precision(value: str, name: str = "`precision`") -> None:
    """Refuse a precision setting that is not one of `PRECISIONS`."""
    if value not in PRECISIONS:
        raise ConfigError(f"{name} must be auto, bf16 or fp32, got {value!r}")


class _ConfigLoader(yaml.SafeLoader):
    """PyYAML's safe loader, with two changes for config files a person writes:

    - numbers read as a person writes them: `1e-4`, `2E5`, `.5` are floats (YAML 1.1, which
      PyYAML follows, reads `1e-4` as a string);
    - anchors and aliases are refused: they let a few hundred bytes expand to gigabytes, and a
      config needs neither.
    """

    def compose_node(self, parent, index):
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
            mark = event.start_mark
            raise ConfigError(
                f"{self.name}: line {mark.line + 1}: YAML anchors and aliases (&name, *name) are not "
                "allowed in a config; write the values out"
            )
        return super().compose_node(parent, index)


_FLOAT = re.compile(
    r"^[-+]?(?:\d[\d_]*\.?[\d_]*|\.\d[\d_]*)(?:[eE][-+]?\d+)?$|^[-+]?\.(?:inf|Inf|INF)$|^\.(?:nan|NaN|NAN)$"
)
_ConfigLoader.yaml_implicit_resolvers = {
    key: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:float"]
    for key, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_ConfigLoader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT, list("-+0123456789."))
# the int resolver comes first for plain integers ("10"): keep it ahead of the float one
for _key in list("-+0123456789"):
    _ConfigLoader.yaml_implicit_resolvers[_key].sort(key=lambda pair: pair[0] != "tag:yaml.org,2002:int")


class _PlainDumper(yaml.SafeDumper):
    """Writes repeated values out instead of as anchors and aliases."""

    def ignore_aliases(self, data) -> bool:
        return True


def parse_yaml(text: str, name: str = "<--set>"):
    """YAML text -> Python values, as `_ConfigLoader` reads it; a `ConfigError` if malformed."""
    loader = _ConfigLoader(text)
    loader.name = name
    try:
        return loader.get_single_data()
    except yaml.YAMLError as err:
        raise ConfigError(f"{name}: not valid YAML ({err})") from None
    except RecursionError:
        raise ConfigError(f"{name}: nested too deeply to be a config") from None
    finally:
        loader.dispose()


def dump_yaml(data) -> str:
    """YAML text of `data` in the given key order, without anchors or aliases (`parse_yaml`
    refuses them)."""
    return yaml.dump(data, Dumper=_PlainDumper, sort_keys=False)


def read_config_file(path: Path) -> dict:
    """The mapping a YAML config file holds ({} for an empty file), or a `ConfigError` that says
    what is wrong with it (unreadable, too large, not YAML, not a mapping)."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as err:
        raise ConfigError(f"{path}: cannot read config ({err.strerror or err})") from None
    if size > MAX_CONFIG_BYTES:
        raise ConfigError(
            f"{path}: {size:,} bytes is too large for a config file (limit {MAX_CONFIG_BYTES:,})"
        )
    try:
        data = parse_yaml(read_text(path, "config file"), str(path)) or {}
    except OSError as err:
        raise ConfigError(f"{path}: cannot read config ({err.strerror or err})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config file must be a mapping of key: value")
    return data


def coerce(key: str, value, hint):
    """`value` as field `key` of type `hint` needs it, or a `ConfigError` saying what was expected.

    Integers are accepted where floats are expected, and integral floats (`1e4`) where integers
    are; numbers must be finite."""
    options = (
        typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, type(int | None)) else (hint,)
    )
    if value is None and type(None) in options:
        return None
    base = next(t for t in options if t is not type(None))
    origin = typing.get_origin(base) or base
    if origin is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
        return value
    if origin is int:
        if isinstance(value, float) and math.isfinite(value) and value.is_integer():
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if origin is float:
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        if not math.isfinite(value):
            raise ConfigError(f"{key}: expected a finite number, got {value!r}")
        return float(value)
    if origin is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected text, got {value!r}")
        return value
    if origin is tuple:
        items = typing.get_args(base)
        if not isinstance(value, list | tuple) or len(value) != len(items):
            raise ConfigError(
                f"{key}: expected a list of {len(items)} numbers like [0.0, 0.99], got {value!r}"
            )
        return tuple(coerce(key, v, t) for v, t in zip(value, items, strict=True))
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return value
    if origin is list:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{key}: expected a list like [1, 2], got {value!r}")
        (item,) = typing.get_args(base) or (object,)
        return [coerce(key, v, item) for v in value]
    return value


def setting(default, help: str, flag: str | None = None, parse=None, cli_type=None):
    """A config field with its command-line help: `flag` (default: --FIELD-NAME; several names
    space-separated; "" for a mapping reached by `--set FIELD.KEY=VALUE` only) and `parse` (what
    turns the flag's value into the field's; default: a comma list for list fields, the value as
    typed otherwise) from the flag's type (`cli_type`; default: the field's own, text for lists)."""
    metadata = {"help": help, "flag": flag, "parse": parse, "cli_type": cli_type}
    if isinstance(default, list | dict):
        return dataclasses.field(default_factory=lambda: copy.deepcopy(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def build_config(
    cls, file: Path | None = None, given: dict | None = None, overrides=(), base: dict | None = None
):
    """An instance of config dataclass `cls`, validated. Later sources win: the field defaults,
    `base` (a caller's defaults), the YAML `file`, `given` (the flags a user typed), then
    `overrides` ("key=value" strings; "field.key=value", "field.a.b=value" set a key of a mapping
    field). A class may refuse a combination of sources with `check_layers(file, later)`."""
    hints = typing.get_type_hints(cls)
    data: dict = {}
    from_file = read_config_file(file) if file is not None else {}
    later = dict(given or {})
    for source in (base or {}, from_file, given or {}):
        data.update(source)
    for item in overrides:
        key, sep, text = str(item).partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        head, *path = key.split(".")
        value = parse_yaml(text, f"--set {key}")
        if path and (hints.get(head) is dict or typing.get_origin(hints.get(head)) is dict):
            data[head] = _set_in(data.get(head) or {}, path, value, key)
        elif path or head not in hints:
            raise ConfigError(f"--set {key}: unknown setting (known: {', '.join(sorted(hints))})")
        else:
            data[key] = later[key] = value
    if hasattr(cls, "without_retired"):  # settings a class no longer has, read where their value allows
        data = cls.without_retired(data)
    unknown = sorted(set(data) - set(hints))
    if unknown:
        raise ConfigError(f"{unknown[0]}: unknown setting (known: {', '.join(sorted(hints))})")
    if hasattr(cls, "check_layers"):
        cls.check_layers(from_file, later)
    config = cls(**{key: coerce(key, value, hints[key]) for key, value in data.items()})
    config.validate()
    return config


def _set_in(mapping: dict, path: list[str], value, key: str) -> dict:
    """A copy of `mapping` with `value` at `path` (nested mappings made as needed)."""
    if not isinstance(mapping, dict):
        raise ConfigError(f"--set {key}: not a mapping")
    result = copy.deepcopy(mapping)
    target = result
    for part in path[:-1]:
        target = target.setdefault(part, {})
        if not isinstance(target, dict):
            raise ConfigError(f"--set {key}: {part} is not a mapping")
    target[path[-1]] = value
    return result
