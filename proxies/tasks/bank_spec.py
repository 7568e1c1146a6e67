"""The task bank's names: a sampled task is the compact spec ``bank:<family>/<key>=<value>,...``.

A spec names every choice that makes the task (data set and its generator settings, width, depth,
activation, normalization, batch size, horizon, re-parameterization strength, seed), in a fixed key
order per family, so one task has exactly one name: ``parse_spec(format_spec(...))`` round-trips and
results cache, store and replay by name. Each family's keys are its ``Param`` list; a key that only
applies to some data sets (``d`` for a generated set) is present exactly when it applies.

Sampling (``sample_spec``) draws every key uniformly from its ``choices`` with one ``random.Random``;
``parse_spec`` accepts any value inside a key's ``[lo, hi]`` range (numbers) or among its choices.
"""
from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from .errors import TaskLoadError

PREFIX = "bank"

Value = int | float | str


class BankSpecError(TaskLoadError):
    """A ``bank:`` spec that does not name a task: unknown family, missing or unknown key, bad value."""


@dataclass(frozen=True)
class Param:
    """One key of a family's spec: its type, sampled choices, accepted range and when it applies."""
    name: str
    kind: type
    choices: tuple
    lo: float | None = None
    hi: float | None = None
    when: Callable[[Mapping[str, Value]], bool] | None = None

    def applies(self, values: Mapping[str, Value]) -> bool:
        return self.when is None or self.when(values)

    def parse(self, text: str) -> Value:
        """The value of ``text`` for this key; raises ValueError saying what is accepted."""
        if self.kind is str:
            if text not in self.choices:
                raise ValueError(f"{self.name}={text!r}: use one of {', '.join(self.choices)}")
            return text
        try:
            v = self.kind(float(text)) if self.kind is int and float(text).is_integer() else self.kind(text)
        except ValueError:
            raise ValueError(f"{self.name}={text!r}: expected {'an integer' if self.kind is int else 'a number'}") \
                from None
        if not math.isfinite(v) or (self.lo is not None and v < self.lo) or (self.hi is not None and v > self.hi):
            raise ValueError(f"{self.name}={text}: must lie in [{self.lo:g}, {self.hi:g}]")
        return v


def _gen(*names: str) -> Callable[[Mapping[str, Value]], bool]:
    return lambda v: v.get("data") in names or v.get("task") in names


ACTS = ("relu", "gelu", "tanh", "silu")
#: activations with act(s * x) = s * act(x) for s > 0 (per-unit rescaling passes through them exactly)
HOMOGENEOUS = ("relu",)
_SEED = Param("seed", int, (), 0, 10**6)
_H = Param("h", int, (120, 200, 300), 10, 100_000)
_RP = Param("rp", float, (0.0, 0.5, 1.0), 0.0, 3.0)

#: family -> its keys in spec order. The ``lm`` family (named ``lm_*`` tasks) has no spec.
FAMILIES: dict[str, tuple[Param, ...]] = {
    "mlp": (
        Param("data", str, ("gauss", "digits", "wine", "cancer", "iris")),
        Param("d", int, (8, 16, 32), 2, 256, _gen("gauss")),
        Param("c", int, (2, 3, 5), 2, 20, _gen("gauss")),
        Param("sep", float, (0.5, 1.0, 2.0), 0.05, 10.0, _gen("gauss")),
        Param("noise", float, (0.0, 0.05, 0.1), 0.0, 0.5, _gen("gauss")),
        Param("w", int, (16, 32, 64), 2, 512), Param("depth", int, (1, 2, 3), 1, 8),
        Param("act", str, ACTS), Param("norm", str, ("none", "layer", "batch")),
        Param("bs", int, (16, 32, 64), 1, 1024), _H, _RP, _SEED),
    "conv": (
        Param("data", str, ("digits", "protos")),
        Param("c", int, (4, 6, 10), 2, 20, _gen("protos")),
        Param("noise", float, (0.3, 0.6, 1.0), 0.0, 5.0, _gen("protos")),
        Param("ch", int, (4, 8, 16), 1, 128), Param("depth", int, (1, 2), 1, 2),
        Param("act", str, ACTS), Param("norm", str, ("none", "batch")),
        Param("bs", int, (16, 32, 64), 1, 1024), _H, _RP, _SEED),
    "sequence": (
        Param("task", str, ("reverse", "sort", "shift")),
        Param("v", int, (8, 12, 16), 2, 64), Param("len", int, (6, 8, 10), 2, 32),
        Param("cell", str, ("gru", "attn")), Param("w", int, (16, 32, 48), 2, 256),
        Param("bs", int, (16, 32, 64), 1, 1024), _H, _SEED),
    "autoencoder": (
        Param("data", str, ("digits", "lowrank")),
        Param("d", int, (16, 32), 2, 256, _gen("lowrank")),
        Param("r", int, (2, 4, 8), 1, 64, _gen("lowrank")),
        Param("noise", float, (0.05, 0.2), 0.0, 5.0, _gen("lowrank")),
        Param("w", int, (16, 32, 64), 2, 512), Param("z", int, (2, 4, 8), 1, 64),
        Param("act", str, ("tanh", "relu", "gelu")),
        Param("bs", int, (16, 32, 64), 1, 1024), _H, _RP, _SEED),
    "regression": (
        Param("data", str, ("teacher", "teacher", "diabetes")),
        Param("d", int, (4, 8, 16), 1, 256, _gen("teacher")),
        Param("noise", float, (0.0, 0.1, 0.3), 0.0, 5.0, _gen("teacher")),
        Param("w", int, (16, 32, 64), 2, 512), Param("depth", int, (1, 2, 3), 1, 8),
        Param("act", str, ACTS), Param("norm", str, ("none", "layer", "batch")),
        Param("bs", int, (16, 32, 64), 1, 1024), _H, _RP, _SEED),
    "memorization": (
        Param("n", int, (256, 512, 1024), 2, 100_000), Param("c", int, (4, 8, 16), 2, 1000),
        Param("w", int, (8, 16, 32), 1, 512), Param("bs", int, (32, 64, 128), 1, 100_000), _H, _SEED),
}


def rp_applies(family: str, values: Mapping[str, Value]) -> bool:
    """Whether a re-parameterization can leave this task's function exactly unchanged (see
    ``proxies.tasks.bank.reparameterize``): a homogeneous activation, or a normalization after the layer."""
    if "rp" not in {p.name for p in FAMILIES.get(family, ())}:
        return False
    return values.get("act") in HOMOGENEOUS or values.get("norm", "none") != "none"


def _fmt(v: Value) -> str:
    return v if isinstance(v, str) else (str(v) if isinstance(v, int) else f"{v:g}")


def format_spec(family: str, values: Mapping[str, Value]) -> str:
    """The canonical spec of a family's task (keys in the family's order, numbers in short form)."""
    keys = [p.name for p in FAMILIES[family] if p.applies(values)]
    return f"{PREFIX}:{family}/" + ",".join(f"{k}={_fmt(values[k])}" for k in keys)


def is_bank_spec(name: str) -> bool:
    return isinstance(name, str) and name.startswith(PREFIX + ":")


def parse_spec(spec: str) -> tuple[str, dict[str, Value]]:
    """(family, values) of a ``bank:`` spec; raises :class:`BankSpecError` naming what is wrong."""
    if not is_bank_spec(spec):
        raise BankSpecError(spec, f"a bank task is named '{PREFIX}:<family>/<key>=<value>,...'")
    family, sep, body = spec[len(PREFIX) + 1:].partition("/")
    if family not in FAMILIES:
        raise BankSpecError(spec, f"unknown bank family {family!r}; families: {', '.join(FAMILIES)}")
    if not sep or not body:
        raise BankSpecError(spec, f"no settings after '{family}/'; e.g. {example(family)}")
    given: dict[str, str] = {}
    for item in body.split(","):
        k, eq, v = item.partition("=")
        if not eq or not k or not v:
            raise BankSpecError(spec, f"{item!r} is not key=value")
        if k in given:
            raise BankSpecError(spec, f"{k} is given twice")
        given[k] = v
    values: dict[str, Value] = {}
    params = FAMILIES[family]
    for p in params:
        if not p.applies(values):
            continue
        if p.name not in given:
            raise BankSpecError(spec, f"missing {p.name}; a {family} spec looks like {example(family)}")
        try:
            values[p.name] = p.parse(given[p.name])
        except ValueError as e:
            raise BankSpecError(spec, str(e)) from None
    extra = sorted(set(given) - set(values))
    if extra:
        raise BankSpecError(spec, f"{', '.join(extra)} do(es) not apply to this {family} task; its keys: "
                            f"{', '.join(values)}")
    if values.get("rp", 0) and not rp_applies(family, values):
        raise BankSpecError(spec, f"rp={values['rp']:g} needs act=relu or a normalization (norm=layer/batch): "
                            "only then is the re-parameterized network the same function; use rp=0")
    return family, values


def sample_values(family: str, rng: random.Random) -> dict[str, Value]:
    """One configuration of ``family``, every key uniform over its choices (seed uniform in its range)."""
    values: dict[str, Value] = {}
    for p in FAMILIES[family]:
        if not p.applies(values):
            continue
        if p.name == "seed":
            values["seed"] = rng.randrange(int(p.hi))
        elif p.name == "rp" and not rp_applies(family, values):
            values["rp"] = 0.0
        else:
            values[p.name] = rng.choice(p.choices)
    return values


def sample_spec(family: str, rng: random.Random) -> str:
    """A random task of ``family`` as its spec (deterministic given ``rng``'s state)."""
    if family not in FAMILIES:
        raise BankSpecError(f"{PREFIX}:{family}", f"unknown bank family; families: {', '.join(FAMILIES)}")
    return format_spec(family, sample_values(family, rng))


def example(family: str) -> str:
    """A valid spec of ``family`` (the first choice of every key, seed 0)."""
    values: dict[str, Value] = {}
    for p in FAMILIES[family]:
        if p.applies(values):
            values[p.name] = 0 if p.name == "seed" else p.choices[0]
    return format_spec(family, values)


__all__ = ["PREFIX", "Param", "FAMILIES", "ACTS", "HOMOGENEOUS", "BankSpecError", "rp_applies", "format_spec",
           "is_bank_spec", "parse_spec", "sample_values", "sample_spec", "example"]
