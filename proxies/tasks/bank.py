"""The sampled task bank: procedurally generated training tasks named by compact specs.

Families (``bank_spec.FAMILIES``; keys and choices there): ``mlp`` (classification on generated
Gaussian clusters or scikit-learn's digits / wine / breast cancer / iris), ``conv`` (a 1-2 layer
conv net on digits or generated prototype images), ``sequence`` (a GRU or an attention block on
generated reverse / sort / shift strings), ``autoencoder`` (digits or generated low-rank data),
``regression`` (a random teacher network or scikit-learn's diabetes), ``memorization`` (random
labels of ids), and ``lm`` - the language-model ladder's registered ``lm_*`` tasks, drawn by name,
when they are installed. Each is crossed with its sampled width, depth, activation,
normalization, batch size and horizon ``h`` (the small fidelity's steps; tiny is ``h // 6``, full
``4 h``). Every task trains through ``ModuleTask`` (the stacked lr x wd x seed path).

Re-parameterization (``rp``, learned-optimizer meta-training's augmentation): after init, each
hidden layer's units are rescaled by ``s_j = exp(rp * N(0, 1))`` and the change undone where it
passes: ``act(s z) = s act(z)`` for ReLU, so the next layer's inputs are divided by ``s_j``;
batch norm undoes a per-unit scale and layer norm a per-layer one, so those layers need no
compensation. The network computes the same function (up to the norms' epsilon) but its weights,
and so the optimization geometry, differ. The scales come from the spec's seed, and the
initialization ignores ``rp``, so ``rp=0`` and ``rp=1`` of one spec are the same function.

A spec is a task name anywhere (``resolve_task("bank:mlp/...")``); the task's family is its bank
family (``task_family``), disjoint-set checks and the search's bank split use it.
"""
from __future__ import annotations

import hashlib
import random
from collections.abc import Mapping, Sequence

import torch
from torch import nn

from . import bank_data as BD
from .bank_spec import FAMILIES, BankSpecError, Value, format_spec, is_bank_spec, parse_spec, sample_spec
from .families import CLS, CharGRU, Reverser, ce, mse
from .module import ModuleTask
from .ops import seed_of
from .registry import list_tasks

#: the language-model ladder's tasks form the bank family ``lm`` (drawn by name)
LM_FAMILY = "lm"
VERSION = "bank2"   # bank2: constant training features keep their scale (bank_data._standardize)
#: solved levels (``StackedTask.metric_floor``) of the bank's losses: 0.02 nats of cross-entropy (a
#: mean probability of about 98% on the right class) and 1e-3 of mean squared error on standardized
#: targets (0.1% of their variance); below them a task is solved and two rules that reach it tie
SOLVED_CE, SOLVED_MSE = 0.02, 1e-3
_NORMS = (nn.LayerNorm, nn.modules.batchnorm._BatchNorm)


def lm_tasks() -> list[str]:
    """The registered ``lm_*`` task names (the ``lm`` family; empty when none is installed)."""
    return sorted(t for t in list_tasks() if t.startswith("lm_"))


def bank_families() -> list[str]:
    """Every family the bank can draw from here (``lm`` only when ``lm_*`` tasks are registered)."""
    return list(FAMILIES) + ([LM_FAMILY] if lm_tasks() else [])


def bank_family(name: str) -> str:
    """The bank family of a spec (or of an ``lm_*`` name): what disjoint task sets are disjoint in."""
    if is_bank_spec(name):
        return name[len("bank:"):].partition("/")[0]
    return LM_FAMILY if name in lm_tasks() else name


def _stable_int(*parts: object) -> int:
    return int(hashlib.sha256("/".join(map(str, parts)).encode()).hexdigest()[:12], 16)


def draw_seed(*parts: object) -> int:
    """A seed for a draw from the bank, a stable function of ``parts`` (e.g. campaign seed, purpose,
    generation): the same in every process and Python version."""
    return _stable_int("draw", *parts) % (2**31)


# -- re-parameterization -------------------------------------------------------------------
def reparameterize(model: nn.Sequential, strength: float, g: torch.Generator) -> int:
    """Rescale ``model``'s hidden units so it computes the same function (see the module docstring).

    Returns the number of layers rescaled (a pair whose in-between layers admit no exact rescaling,
    e.g. a tanh without normalization, is left alone)."""
    if strength <= 0:
        return 0
    mods = list(model)
    weighted = [i for i, m in enumerate(mods) if isinstance(m, (nn.Linear, nn.Conv2d))]
    done = 0
    with torch.no_grad():
        for a, b in zip(weighted, weighted[1:]):
            layer, nxt, between = mods[a], mods[b], mods[a + 1:b]
            norms = [m for m in between if isinstance(m, _NORMS)]
            rest = [m for m in between if not isinstance(m, _NORMS)]
            s = torch.exp(strength * torch.randn(layer.weight.shape[0], generator=g))
            if norms and isinstance(norms[0], nn.LayerNorm):
                s = torch.full_like(s, float(s[0]))   # layer norm undoes one scale per layer
            elif not norms:
                if not all(isinstance(m, (nn.ReLU, nn.Flatten)) for m in rest):
                    continue
                comp = s.repeat_interleave(nxt.weight.shape[1] // s.numel())   # a Flatten spreads channels
                nxt.weight.div_(comp.view(1, -1, *[1] * (nxt.weight.dim() - 2)))
            layer.weight.mul_(s.view(-1, *[1] * (layer.weight.dim() - 1)))
            if layer.bias is not None:
                layer.bias.mul_(s)
            done += 1
    return done


# -- models ------------------------------------------------------------------------------------
def _act(name: str) -> nn.Module:
    return {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh, "silu": nn.SiLU}[name]()


def _norm(kind: str, n: int, conv: bool = False) -> list[nn.Module]:
    if kind == "layer":
        return [nn.LayerNorm(n)]
    if kind == "batch":
        return [(nn.BatchNorm2d if conv else nn.BatchNorm1d)(n, track_running_stats=False)]
    return []


def _mlp(sizes: list[int], act: str, norm: str) -> nn.Sequential:
    layers: list[nn.Module] = []
    for a, b in zip(sizes[:-2], sizes[1:-1]):
        layers += [nn.Linear(a, b), *_norm(norm, b), _act(act)]
    return nn.Sequential(*layers, nn.Linear(sizes[-2], sizes[-1]))


def _conv(v: Mapping[str, Value], classes: int) -> nn.Sequential:
    ch, act, norm = int(v["ch"]), str(v["act"]), str(v["norm"])
    layers: list[nn.Module] = [nn.Conv2d(1, ch, 3, padding=1), *_norm(norm, ch, True), _act(act)]
    size, cin = 8, ch
    if int(v["depth"]) >= 2:
        layers += [nn.Conv2d(ch, 2 * ch, 3, stride=2, padding=1), *_norm(norm, 2 * ch, True), _act(act)]
        size, cin = 4, 2 * ch
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(cin * size * size, classes))


def _data(family: str, v: Mapping[str, Value]):
    """(data function, input dim or None, classes or None) of a family's configuration."""
    seed = int(v["seed"])
    if family == "mlp":
        if v["data"] == "gauss":
            return (lambda: BD.gauss(int(v["d"]), int(v["c"]), float(v["sep"]), float(v["noise"]), seed),
                    int(v["d"]), int(v["c"]))
        dims = {"digits": (64, 10), "wine": (13, 3), "cancer": (30, 2), "iris": (4, 3)}[str(v["data"])]
        return (lambda: BD.sklearn_classification(str(v["data"]), seed)), *dims
    if family == "conv":
        if v["data"] == "protos":
            return (lambda: BD.protos(int(v["c"]), float(v["noise"]), seed)), None, int(v["c"])
        return (lambda: BD.sklearn_classification("digits", seed, flat=False)), None, 10
    if family == "autoencoder":
        if v["data"] == "lowrank":
            return (lambda: BD.lowrank(int(v["d"]), int(v["r"]), float(v["noise"]), seed)), int(v["d"]), None
        return (lambda: BD.digits_flat_autoencode(seed)), 64, None
    if family == "regression":
        if v["data"] == "teacher":
            return (lambda: BD.teacher(int(v["d"]), float(v["noise"]), seed)), int(v["d"]), None
        return (lambda: BD.diabetes(seed)), 10, None
    if family == "sequence":
        return (lambda: BD.sequences(str(v["task"]), int(v["v"]), int(v["len"]), seed)), None, int(v["v"])
    return (lambda: BD.memo(int(v["n"]), int(v["c"]), seed)), None, int(v["c"])


def _architecture(family: str, v: Mapping[str, Value], dim: int | None, classes: int | None) -> nn.Module:
    if family in ("mlp", "regression"):
        out = classes if family == "mlp" else 1
        return _mlp([dim] + [int(v["w"])] * int(v["depth"]) + [out], str(v["act"]), str(v["norm"]))
    if family == "conv":
        return _conv(v, classes)
    if family == "autoencoder":
        w, z, act = int(v["w"]), int(v["z"]), str(v["act"])
        return nn.Sequential(nn.Linear(dim, w), _act(act), nn.Linear(w, z), _act(act), nn.Linear(z, w),
                             _act(act), nn.Linear(w, dim))
    if family == "sequence":
        if v["cell"] == "attn":
            return Reverser(vocab=int(v["v"]), length=int(v["len"]), d=int(v["w"]), heads=2)
        return CharGRU(vocab=int(v["v"]), d=int(v["w"]), hidden=int(v["w"]))
    return nn.Sequential(nn.Embedding(int(v["n"]), int(v["w"])), nn.Linear(int(v["w"]), classes))


def _salt(family: str, v: Mapping[str, Value]) -> int:
    """The init/data-order salt: from the spec without ``rp`` (rp changes geometry, not init)."""
    return _stable_int(format_spec(family, {**v, "rp": 0.0})) % (2**31)


def _factory(family: str, v: Mapping[str, Value], dim: int | None, classes: int | None):
    rp = float(v.get("rp", 0.0))

    def model() -> nn.Module:
        m = _architecture(family, v, dim, classes)
        if rp > 0 and isinstance(m, nn.Sequential):
            reparameterize(m, rp, torch.Generator().manual_seed(_stable_int("rp", v["seed"]) % (2**63)))
        return m
    return model


def build_task(spec: str) -> ModuleTask:
    """The task a ``bank:`` spec names (raises :class:`BankSpecError` for a bad spec)."""
    family, v = parse_spec(spec)
    data, dim, classes = _data(family, v)
    h = int(v["h"])
    steps = {"tiny": max(10, h // 6), "small": h, "full": 4 * h}
    regression = family in ("autoencoder", "regression")
    name = format_spec(family, v)
    wd = 0.0 if family in ("memorization", "autoencoder") else 1e-2
    return ModuleTask(name, _factory(family, v, dim, classes), data, mse if regression else ce,
                      metrics=None if regression else CLS, batch_size=int(v["bs"]), steps=steps,
                      weight_decay=wd, schedule="constant" if family == "memorization" else "warmup_cosine",
                      blowup=5.0, salt=_salt(family, v), version=VERSION,
                      metric_floor=SOLVED_MSE if regression else SOLVED_CE,
                      description=f"sampled {family} task ({name[len('bank:'):]})")


def build_model(spec: str, seed: int) -> nn.Module:
    """Copy ``seed``'s initial network of a spec's task, as training starts from it (re-parameterized)."""
    family, v = parse_spec(spec)
    _, dim, classes = _data(family, v)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed_of(seed, _salt(family, v)))
        return _factory(family, v, dim, classes)()


# -- drawing banks ---------------------------------------------------------------------------
def sample_tasks(families: Sequence[str], n: int, seed: int) -> list[str]:
    """``n`` distinct tasks drawn from ``families`` (cycled in a seeded shuffled order, so every
    family appears before one repeats); a pure function of the arguments."""
    unknown = [f for f in families if f not in FAMILIES and f != LM_FAMILY]
    if unknown:
        raise BankSpecError(f"bank:{unknown[0]}", f"unknown bank family; families: {', '.join(bank_families())}")
    if LM_FAMILY in families and not lm_tasks():
        raise BankSpecError("bank:lm", "the lm family needs the language-model ladder's lm_* tasks, and none "
                            "is registered; drop 'lm' from the families")
    rng = random.Random(seed)
    out: list[str] = []
    order: list[str] = []
    for _ in range(50 * max(n, 1)):
        if len(out) >= n or not families:
            break
        if not order:
            order = list(families)
            rng.shuffle(order)
        fam = order.pop()
        name = rng.choice(lm_tasks()) if fam == LM_FAMILY else sample_spec(fam, rng)
        if name not in out:
            out.append(name)
    return out


def split_families(families: Sequence[str], seed: int, n_validation: int = 1, n_test: int = 1
                   ) -> dict[str, list[str]]:
    """Split ``families`` (a seeded shuffle) into disjoint ``search`` / ``validation`` / ``test`` lists
    of sizes ``len - n_validation - n_test`` / ``n_validation`` / ``n_test``."""
    fams = list(dict.fromkeys(families))
    if len(fams) < n_validation + n_test + 1:
        raise BankSpecError("bank:" + ",".join(fams), f"{len(fams)} families cannot be split into search, "
                            f"{n_validation} validation and {n_test} test families; give more families")
    random.Random(seed).shuffle(fams)
    return {"validation": sorted(fams[:n_validation]), "test": sorted(fams[n_validation:n_validation + n_test]),
            "search": sorted(fams[n_validation + n_test:])}


__all__ = ["LM_FAMILY", "VERSION", "lm_tasks", "bank_families", "bank_family", "draw_seed", "reparameterize",
           "build_task", "build_model", "sample_tasks", "split_families"]
