"""The task registry: built-in names, and users' own tasks named ``"package.module:factory"``.

``resolve_task(spec)`` is what a campaign calls at start: a registered name, or a
spec whose module is imported and whose attribute is a ``StackedTask`` instance,
a ``StackedTask`` subclass, or a zero-argument factory returning an instance. Any
problem raises :class:`TaskLoadError` naming the spec and what to fix. Instances
are built once per process (their data too); ``get_task`` is the same lookup.

A spec's module must be importable in every process that trains it: the
evaluator passes its ``sys.path`` to pool workers with each job, so a module
found through a ``sys.path`` entry added at run time is found there too.
"""
from __future__ import annotations

import difflib
import importlib
import inspect
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence

from .core import StackedTask
from .errors import TaskLoadError, TaskOverlapError, UnknownTaskError
from .outcome import FIDELITIES

_FACTORIES: dict[str, Callable[[], StackedTask]] = {}
_FAMILY: dict[str, str] = {}
_INSTANCES: dict[str, StackedTask] = {}
#: spec prefixes with their own resolver (``"bank"``: the sampled task bank): prefix -> (build, family)
_PREFIXES: dict[str, tuple[Callable[[str], StackedTask], Callable[[str], str]]] = {}
#: built prefixed tasks, least recently used first (at most PREFIXED_KEPT with their data)
_PREFIXED: OrderedDict[str, StackedTask] = OrderedDict()
PREFIXED_KEPT = 64


def register_task(name: str, factory: Callable[[], StackedTask], family: str | None = None) -> None:
    """Register a built-in task: ``factory()`` builds it on first use. ``family`` groups tasks that
    share data or architecture (disjoint search / validation / transfer sets are disjoint in family)."""
    if ":" in name:
        raise ValueError(f"task name {name!r} must not contain ':' (that form is a module:factory spec)")
    if name in _FACTORIES:
        raise ValueError(f"task {name!r} is registered twice")
    _FACTORIES[name] = factory
    _FAMILY[name] = family or name


def register_task_prefix(prefix: str, build: Callable[[str], StackedTask], family: Callable[[str], str]) -> None:
    """Names ``"<prefix>:..."`` are built by ``build(name)`` (not imported as ``module:factory``);
    ``family(name)`` gives their family. Used by the sampled task bank (``bank:<family>/...``)."""
    _PREFIXES[prefix] = (build, family)


def split_task_list(text: str) -> list[str]:
    """Task names from a comma-separated command-line list. A prefixed spec has commas of its own
    (``bank:mlp/w=32,depth=2``): a ``key=value`` piece after one belongs to it, not a new task."""
    out: list[str] = []
    for piece in (p.strip() for p in text.split(",")):
        if not piece:
            continue
        if out and "=" in piece and ":" not in piece and out[-1].partition(":")[0] in _PREFIXES:
            out[-1] += "," + piece
        else:
            out.append(piece)
    return out


def list_tasks() -> list[str]:
    """Names of every registered (built-in) rule task."""
    return list(_FACTORIES)


def task_family(name: str) -> str:
    """The family of a registered task (a prefixed spec's comes from its prefix; a spec task is its
    own family)."""
    prefix = name.partition(":")[0] if ":" in name else None
    if prefix in _PREFIXES:
        return _PREFIXES[prefix][1](name)
    return _FAMILY.get(name, name)


def check_disjoint(sets: Mapping[str, Sequence[str]], by_family: bool = True) -> None:
    """Raise :class:`TaskOverlapError` when two named task sets share a task (or, with
    ``by_family``, a family: ``digits_logreg`` and ``digits_mlp`` share data), naming both sets."""
    owner: dict[str, tuple[str, str]] = {}
    for set_name, tasks in sets.items():
        for t in tasks:
            key = task_family(t) if by_family else t
            if key in owner and owner[key][0] != set_name:
                other_set, other_task = owner[key]
                what = f"task {t!r}" if other_task == t else f"{t!r} and {other_task!r} (family {key!r})"
                raise TaskOverlapError(f"{set_name} and {other_set} must be disjoint but share {what}; "
                                       f"move one of them (suggested sets: proxies.TASK_GROUPS)")
            owner.setdefault(key, (set_name, t))


def is_task_spec(name: str) -> bool:
    """Whether ``name`` is a ``module:factory`` spec rather than a registered name."""
    return ":" in name


def resolve_task(spec: str) -> StackedTask:
    """The task for a registered name or a ``"module:factory"`` spec (built once per process).

    Raises :class:`TaskLoadError` (an ``UnknownTaskError`` for an unknown plain name)."""
    if not isinstance(spec, str) or not spec.strip():
        raise TaskLoadError(str(spec), "a task is a registered name or 'module:factory', got "
                            f"{type(spec).__name__} {spec!r}")
    if spec in _INSTANCES:
        return _INSTANCES[spec]
    if spec.partition(":")[0] in _PREFIXES and ":" in spec:
        if spec in _PREFIXED:
            _PREFIXED.move_to_end(spec)
            return _PREFIXED[spec]
        _PREFIXED[spec] = task = _PREFIXES[spec.partition(":")[0]][0](spec)
        while len(_PREFIXED) > PREFIXED_KEPT:   # a search draws new ones every generation: keep the recent
            _PREFIXED.popitem(last=False)
        return task
    elif is_task_spec(spec):
        task = _load_spec(spec)
    elif spec in _FACTORIES:
        task = _FACTORIES[spec]()
    else:
        near = difflib.get_close_matches(spec, list(_FACTORIES), n=1)
        hint = f" (did you mean {near[0]!r}?)" if near else ""
        raise UnknownTaskError(spec, f"unknown rule task{hint}; known tasks: {', '.join(_FACTORIES)} (or name "
                               "your own as 'package.module:factory', or a sampled task 'bank:<family>/...')")
    _INSTANCES[spec] = task
    return task


def get_task(name: str) -> StackedTask:
    """The task called ``name`` (a registered name or a spec; one shared instance per process)."""
    return resolve_task(name)


def _load_spec(spec: str) -> StackedTask:
    mod_name, _, attr = spec.partition(":")
    mod_name, attr = mod_name.strip(), attr.strip()
    if not mod_name or not attr or ":" in attr:
        raise TaskLoadError(spec, "expected 'package.module:factory', e.g. 'mytasks:my_task'")
    try:
        mod = importlib.import_module(mod_name)
    except ModuleNotFoundError as e:
        raise TaskLoadError(spec, f"cannot import module {mod_name!r} ({e}); put its directory on "
                            "PYTHONPATH (or sys.path) or install its package") from e
    except Exception as e:  # noqa: BLE001 - the user's module failed while importing
        raise TaskLoadError(spec, f"importing module {mod_name!r} raised {type(e).__name__}: {e}") from e
    if not hasattr(mod, attr):
        have = sorted(n for n, v in vars(mod).items() if not n.startswith("_") and callable(v))
        raise TaskLoadError(spec, f"module {mod_name!r} ({getattr(mod, '__file__', '?')}) has no attribute "
                            f"{attr!r}; its public callables: {', '.join(have) or 'none'}")
    obj = getattr(mod, attr)
    if isinstance(obj, StackedTask):
        task = obj
    elif callable(obj):
        if inspect.isclass(obj) and not issubclass(obj, StackedTask):
            raise TaskLoadError(spec, f"{attr} is the class {obj.__name__}, not a proxies.StackedTask "
                                "subclass (or a function returning a task)")
        try:
            task = obj()
        except Exception as e:  # noqa: BLE001 - the user's factory failed
            raise TaskLoadError(spec, f"calling {attr}() raised {type(e).__name__}: {e}") from e
    else:
        raise TaskLoadError(spec, f"{attr} is a {type(obj).__name__}; expected a proxies.StackedTask, a "
                            "StackedTask subclass, or a zero-argument function returning one")
    if not isinstance(task, StackedTask):
        raise TaskLoadError(spec, f"{attr}() returned {type(task).__name__}, not a proxies.StackedTask "
                            "(build one with proxies.ModuleTask(...) or subclass StackedTask)")
    _check_task(spec, task)
    if not getattr(task, "name", ""):
        task.name = spec
    return task


def _check_task(spec: str, task: StackedTask) -> None:
    steps = getattr(task, "steps", None)
    if not isinstance(steps, dict) or list(steps) != list(FIDELITIES) or \
            not all(isinstance(v, int) and v > 0 for v in steps.values()):
        raise TaskLoadError(spec, f"its steps must map each fidelity {', '.join(FIDELITIES)} (in that order) "
                            f"to a positive step count, got {steps!r}")
    if not isinstance(getattr(task, "metric_name", None), str) or not task.metric_name:
        raise TaskLoadError(spec, "it needs a metric_name (e.g. 'val_loss')")
    wd = getattr(task, "weight_decay", None)
    if not isinstance(wd, (int, float)) or wd < 0:
        raise TaskLoadError(spec, f"its weight_decay must be a number >= 0, got {wd!r}")


__all__ = ["register_task", "register_task_prefix", "split_task_list",
           "list_tasks", "task_family", "check_disjoint", "is_task_spec", "resolve_task", "get_task"]
