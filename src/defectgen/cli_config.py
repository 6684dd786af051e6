"""Command-line options made from a verb's config dataclass, so that an option is defined once.

    @app.command()
    @config_options(SynthConfig)
    def synth(data: DataArg, ..., config: Callable[..., SynthConfig]): ...

adds one option per field (the field's `settings.setting` help and flag; a list field takes
comma-separated values), plus `--config FILE` (YAML of the same keys) and `--set KEY=VALUE`
(repeatable; `FIELD.KEY=VALUE` for a mapping field). Every option defaults to unset, so only
what the user typed overrides the file. The command receives `config`: call it (optionally with
defaults of its own, e.g. arms that depend on other options) to get the validated config;
later sources win: field defaults, the command's defaults, the file, the flags, `--set`.
A config's errors name its settings as `field` (what a Python caller typed); the command's
errors name them by their options instead (`as_flags`).
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import re
import types
import typing
from pathlib import Path
from typing import Annotated

import typer

from defectgen.errors import ConfigError
from defectgen.settings import build_config, parse_yaml

CONFIG_HELP = "YAML file of settings (the keys of --set)."
SET_HELP = "A setting KEY=VALUE (any setting of this command, also those without a flag); repeatable."


def flags_of(field: dataclasses.Field) -> list[str]:
    """The option names a field gets: its `flag` (a name, or several: "--n -n"), else
    --FIELD-NAME; none for a mapping reached by --set only (`flag` "")."""
    flag = field.metadata.get("flag")
    if flag == "":
        return []
    return flag.split() if flag else ["--" + field.name.replace("_", "-")]


def flag_of(field: dataclasses.Field) -> str | None:
    """The long option of a field (None: --set only)."""
    return next(iter(flags_of(field)), None)


def _base(hint):
    """`hint` without its `| None`."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return next(t for t in typing.get_args(hint) if t is not type(None))
    return hint


def _cli_type(hint):
    """The type typer parses for a field: its own for int/float/str/bool, text for lists."""
    return str if _is_list(hint) else _base(hint)


def _from_cli(field: dataclasses.Field, hint, value):
    parse = field.metadata.get("parse")
    if parse is not None:
        return parse(value)
    if _cli_type(hint) is str and isinstance(value, str) and value != "" and _is_list(hint):
        return [parse_yaml(item.strip(), flag_of(field)) for item in value.split(",") if item.strip()]
    return value


def _is_list(hint) -> bool:
    base = _base(hint)
    return (typing.get_origin(base) or base) in (list, tuple)


def _default_text(field: dataclasses.Field) -> str:
    if field.default is not dataclasses.MISSING:
        value = field.default
    elif field.default_factory is not dataclasses.MISSING:
        value = field.default_factory()
    else:
        return ""
    if value is None:
        return ""
    text = ",".join(str(v) for v in value) if isinstance(value, list | tuple) else str(value).lower()
    return f" (default: {text})" if text else ""


def as_flags(message: str, cls) -> str:
    """`message` with each setting of `cls` it names as `field` (how a config's errors name
    settings, for Python callers) written as the command line's option: its flag, or
    `--set field` for a setting without one."""
    for field in dataclasses.fields(cls):
        flag = flag_of(field)
        message = message.replace(f"`{field.name}`", flag or f"--set {field.name}")
        if not flag:  # a mapping's keys: `field.KEY` -> --set field.KEY
            message = re.sub(rf"`({re.escape(field.name)}\.[\w.]+)`", r"--set \1", message)
    return message


def config_options(cls, **names: str):
    """Decorator: the command gets one option per field of `cls` (see the module docstring);
    `names` renames a field's keyword in the command (field=keyword) where it would clash."""
    hints = typing.get_type_hints(cls)
    fields = [f for f in dataclasses.fields(cls) if flag_of(f) is not None]

    def wrap(command):
        signature = inspect.signature(command)
        evaluated = typing.get_type_hints(command, include_extras=True)  # in the command's module
        kept = [
            p.replace(annotation=evaluated.get(p.name, p.annotation))
            for p in signature.parameters.values()
            if p.name != "config"
        ]
        added = []
        for field in fields:
            kind = field.metadata.get("cli_type") or _cli_type(hints[field.name])
            flag = flag_of(field)
            decls = [f"{flag}/--no-{flag[2:]}"] if kind is bool else flags_of(field)
            help_text = field.metadata.get("help", "") + _default_text(field)
            annotation = Annotated[kind | None, typer.Option(*decls, help=help_text, show_default=False)]
            added.append(
                inspect.Parameter(
                    names.get(field.name, field.name), inspect.Parameter.KEYWORD_ONLY, default=None,
                    annotation=annotation,
                )
            )  # fmt: skip
        added.append(
            inspect.Parameter(
                "config_file", inspect.Parameter.KEYWORD_ONLY, default=None,
                annotation=Annotated[Path | None, typer.Option("--config", help=CONFIG_HELP)],
            )
        )  # fmt: skip
        added.append(
            inspect.Parameter(
                "settings", inspect.Parameter.KEYWORD_ONLY, default=None,
                annotation=Annotated[list[str] | None, typer.Option("--set", help=SET_HELP)],
            )
        )  # fmt: skip

        @functools.wraps(command, assigned=("__module__", "__name__", "__qualname__", "__doc__"))
        def run(*args, **kwargs):
            given = {}
            for field in fields:
                value = kwargs.pop(names.get(field.name, field.name))
                if value is not None:
                    given[field.name] = _from_cli(field, hints[field.name], value)
            file, overrides = kwargs.pop("config_file"), kwargs.pop("settings") or []

            def config(**defaults):
                return build_config(cls, file, given, overrides, base=defaults)

            try:
                return command(*args, config=config, **kwargs)
            except ConfigError as err:  # the config names settings as fields: name the flags
                raise ConfigError(as_flags(str(err), cls)) from None

        positional = [p for p in kept if p.kind is not inspect.Parameter.KEYWORD_ONLY]
        keyword = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in kept if p not in positional]
        run.__signature__ = signature.replace(parameters=[*positional, *keyword, *added])
        run.__annotations__ = {p.name: p.annotation for p in run.__signature__.parameters.values()}
        return run

    return wrap
