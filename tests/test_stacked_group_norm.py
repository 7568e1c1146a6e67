"""The stacked training loop gives ``global_norm`` the norm over all of a copy's parameters."""
from __future__ import annotations

import numpy as np

from proxies import get_task
from proxies.tasks.core import run_sweep

GLOBAL = """\
def gnorm(w, g, lr):
    w = w - lr * g / (global_norm(g) + 1e-12)
    return w
"""
PER_TENSOR = GLOBAL.replace("global_norm(g)", "norm(g)").replace("gnorm", "tnorm")


def _metrics(task: str, src: str) -> np.ndarray:
    out = run_sweep(get_task(task), src, lrs=[0.1, 0.3], seeds=[0], fidelity="tiny")
    return np.asarray(out.final, dtype=float)


def test_group_norm_spans_every_parameter_of_a_copy():
    # digits_mlp has several weight tensors: one step of size lr over the whole model is not one
    # step of size lr per tensor, so the two rules must train differently
    a, b = _metrics("digits_mlp", GLOBAL), _metrics("digits_mlp", PER_TENSOR)
    assert np.all(np.isfinite(a)) and np.all(np.isfinite(b))
    assert not np.allclose(a, b, rtol=1e-6, atol=0)


def test_group_norm_of_one_tensor_is_its_norm():
    # quadratic trains one tensor per copy: the group's norm is that tensor's norm
    a, b = _metrics("quadratic", GLOBAL), _metrics("quadratic", PER_TENSOR)
    np.testing.assert_allclose(a, b, rtol=1e-6)
