"""The arm registry: what each evaluation arm adds to the real training crops.

An arm is a *base* plus, optionally, one or more named synthetic sets stacked on top:

    real | oversample | copypaste | blendpaste | classic | control   a base alone
    BASE+NAME[+NAME2...]                                   a base plus synthetic set(s) NAME
    BASE+NAME:filtered                                     ... only the items the label filter keeps
    NAME-only                                              the synthetic set alone (no real crops)

Every arm at seed s trains from the same initial weights on the same `batch_size` real crops
per step, drawn from a stream keyed by (seed, step) that nothing else touches; an arm only
*adds* crops (oversampled real defects, copy-pasted defects, synthetic defects) or, for
`classic`, augments those same crops. `control` is the noise-floor twin of `real`: the same
initial weights, real crops from an independent stream. It should equal `real`; the spread of
its paired differences is the smallest effect the evaluation can see.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from defectgen.errors import ConfigError

BASES = {
    "real": "the labelled training half only",
    "oversample": "real crops + extra crops centred on the real defects again",
    "copypaste": "real crops + extra crops of real defects (of those that fit the image) cut by their masks "
    "and pasted, flipped, onto defect-free training images at places drawn from the class's position prior, "
    "as many as real images hold (no overlap)",
    "blendpaste": "copypaste with the same placements, Poisson-blended (OpenCV seamlessClone, solved on the "
    "defect and its whole margin) instead of pasted with a hard edge; the blended ring outside the label is "
    "ignored by the loss",
    "classic": "the real crops with flips, affine, brightness/contrast and elastic transforms "
    "(albumentations)",
    "control": "noise-floor twin of real: same initial weights, real crops from an independent stream",
}
SET_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.]*$")
FILTERED = ":filtered"


@dataclass(frozen=True)
class Arm:
    name: str  # as the user wrote it, normalised
    base: str | None  # None: synthetic only
    sets: tuple[str, ...] = ()  # named synthetic sets, each possibly with ':filtered'

    @property
    def set_names(self) -> tuple[str, ...]:
        return tuple(s.removesuffix(FILTERED) for s in self.sets)

    @property
    def is_cheap_baseline(self) -> bool:
        return self.base is not None and not self.sets and self.base not in ("control",)

    def describe(self) -> str:
        parts = [BASES[self.base]] if self.base else ["synthetic crops only"]
        for name in self.sets:
            label = name.removesuffix(FILTERED)
            kept = " (label-filtered)" if name.endswith(FILTERED) else ""
            parts.append(f"+ extra crops from synthetic set '{label}'{kept}")
        return " ".join(parts)


def parse_arm(text: str, set_names: tuple[str, ...]) -> Arm:
    """'oversample+tiles' -> Arm(base='oversample', sets=('tiles',)); errors say what is known."""
    text = text.strip()
    given = ", ".join(set_names) or "(none given: --synthetic NAME=DIR)"
    known = f"bases {', '.join(BASES)}; synthetic sets {given}"
    if text.endswith("-only"):
        name = text.removesuffix("-only")
        _check_set(name, set_names, text, known)
        return Arm(text, None, (name,))
    head, *rest = text.split("+")
    if head not in BASES:
        if head.removesuffix(FILTERED) in set_names and not rest:
            return Arm(f"real+{head}", "real", (head,))  # a set alone means real + that set
        raise ConfigError(f"unknown arm {text!r}: {known}")
    if len(set(rest)) != len(rest):
        raise ConfigError(f"arm {text!r} names a synthetic set twice")
    for name in rest:
        _check_set(name.removesuffix(FILTERED), set_names, text, known)
    if head == "control" and rest:
        raise ConfigError("the control arm takes no synthetic set")
    return Arm(text, head, tuple(rest))


def _check_set(name: str, set_names: tuple[str, ...], text: str, known: str) -> None:
    if name not in set_names:
        raise ConfigError(f"arm {text!r} names synthetic set {name!r}, which was not given: {known}")


def parse_arms(texts: list[str], set_names: tuple[str, ...]) -> list[Arm]:
    arms = [parse_arm(t, set_names) for t in texts]
    names = [a.name for a in arms]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ConfigError(f"arm(s) {repeated} listed twice")
    return arms


def parse_synthetic(values: list[str]) -> dict[str, str]:
    """['tiles=synth/a', 'synth/b'] -> {'tiles': 'synth/a', 'synthetic': 'synth/b'}."""
    sets: dict[str, str] = {}
    for value in values:
        name, sep, path = value.partition("=")
        if not sep:
            name, path = "synthetic", value
        if not SET_NAME.match(name) or name in BASES:
            raise ConfigError(
                f"--synthetic {value!r}: a set name starts with a letter, holds letters, digits, '_' or '.', "
                f"and is not a base arm name ({', '.join(BASES)})"
            )
        if name in sets:
            raise ConfigError(f"--synthetic names set {name!r} twice")
        if not path:
            raise ConfigError(f"--synthetic {value!r}: give NAME=DIR")
        sets[name] = path
    return sets
