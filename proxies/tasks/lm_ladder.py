"""The language-model ladder: the same GPT-style character model at three sizes (``lm_s``, ``lm_m``,
``lm_l``), for asking whether an update rule's advantage holds as the model and the budget grow.

Every rung is ``char_lm``'s model (pre-LayerNorm GPT: learned token and position embeddings,
causal multi-head attention, 4x GELU MLP, final LayerNorm, untied head, no biases in linear
layers) on ``char_lm``'s corpus (Python's standard-library sources: training modules, two
disjoint validation modules, three disjoint test modules; nothing downloaded). Only the size,
the context, the batch and the number of steps change:

| rung | width | depth | heads | context | batch | params | steps tiny / small / full |
|---|---|---|---|---|---|---|---|
| lm_s | 48 | 2 | 2 | 32 | 8 | ~66 k | 40 / 150 / 500 |
| lm_m | 96 | 2 | 4 | 64 | 8 | ~0.24 M | 100 / 300 / 1000 |
| lm_l | 128 | 4 | 4 | 64 | 16 | ~0.82 M | 150 / 500 / 2000 |

Learning-rate schedule (the task's, equal for every rule): linear warm-up over the first 10% of
the steps to the swept lr, then cosine decay to 10% of it at the last step, i.e. the multiplier
at step t of T with W = round(0.1 T) is ``min(1, (t+1)/W)`` for t < W and
``0.1 + 0.9 * (1 + cos(pi (t - W) / (T - W))) / 2`` after (``StackedTask.lr_factors``).

Metric: end-of-training validation cross-entropy (nats per character) on 64 fixed windows
evenly spaced over the validation text (``split="test"``: the test text). A copy whose training
loss exceeds 5x its initial loss (~log 97 = 4.6 nats) is diverged.

Parameter roles (``param_roles``, ``dsl.ROLES``): each tensor is a hidden "matrix" (attention
and MLP weights), an "embedding" (token, position), the "head", or a "vector" (LayerNorm gains
and shifts), the grouping matrix optimizers such as Muon and Scion treat differently. The
stacked training loop hands a rule that reads roles (``is_matrix``, ``is_embedding``,
``is_head``, ``is_vector``) these roles; a rule that does not read them (plain ``muon``
included) treats every 2-D tensor alike, embeddings and head too.

Cost (stacked, 1 torch thread, 2-core CPU container): see docs/tasks.md for measured seconds per
lr x seed copy; the smallest rung is meant for screening (a few seconds per copy at ``small``).
"""
from __future__ import annotations

from dataclasses import dataclass

from .char_lm import VOCAB, CharLM


@dataclass(frozen=True)
class LadderRung:
    """One size of the ladder (see the module docstring's table)."""
    name: str
    d_model: int
    n_layer: int
    n_head: int
    ctx: int
    batch: int
    tiny: int
    small: int
    full: int
    salt: int

    def n_params(self) -> int:
        """Parameters of one copy: embeddings, blocks (12 d^2 + 4 d each), final norm and head."""
        d, V = self.d_model, len(VOCAB)
        return 2 * V * d + self.ctx * d + self.n_layer * (12 * d * d + 4 * d) + 2 * d


#: The ladder, smallest first.
RUNGS: dict[str, LadderRung] = {r.name: r for r in (
    LadderRung("lm_s", d_model=48, n_layer=2, n_head=2, ctx=32, batch=8, tiny=40, small=150, full=500, salt=61),
    LadderRung("lm_m", d_model=96, n_layer=2, n_head=4, ctx=64, batch=8, tiny=100, small=300, full=1000, salt=62),
    LadderRung("lm_l", d_model=128, n_layer=4, n_head=4, ctx=64, batch=16, tiny=150, small=500, full=2000,
               salt=63),
)}

ROLES = ("matrix", "embedding", "head", "vector")


class LadderLM(CharLM):
    """One rung of the language-model ladder (a ``char_lm`` model of the rung's size)."""
    schedule = "warmup_cosine"
    warmup_frac = 0.1
    final_lr_frac = 0.1
    weight_decay = 1e-2
    blowup = 5.0
    n_val_windows = 64
    version = "1"

    def __init__(self, rung: LadderRung):
        if rung.d_model % rung.n_head:
            raise ValueError(f"{rung.name}: width {rung.d_model} is not divisible by {rung.n_head} heads")
        self.rung = rung
        self.name = rung.name
        self.d_model, self.n_layer, self.n_head = rung.d_model, rung.n_layer, rung.n_head
        self.ctx, self.batch, self.salt = rung.ctx, rung.batch, rung.salt
        self.steps = {"tiny": rung.tiny, "small": rung.small, "full": rung.full}
        self.description = (f"GPT char LM rung {rung.name}: width {rung.d_model}, depth {rung.n_layer}, "
                            f"ctx {rung.ctx}, batch {rung.batch}, ~{rung.n_params() / 1e3:.0f}k params, "
                            "stdlib sources, warm-up + cosine, val nats/char")
        super().__init__()

    def param_roles(self) -> dict[str, str]:
        """Parameter name -> role: "matrix" (attention / MLP matrices), "embedding" (token and
        position tables), "head" (the output matrix) or "vector" (LayerNorm gains and shifts)."""
        out = {}
        for name in self.init(0):
            if name in ("tok", "pos"):
                out[name] = "embedding"
            elif name == "head":
                out[name] = "head"
            elif name.endswith(("_g", "_b")):
                out[name] = "vector"
            else:
                out[name] = "matrix"
        return out


def factory(name: str):
    """A zero-argument factory of the rung ``name`` (for the task registry)."""
    rung = RUNGS[name]
    return lambda: LadderLM(rung)


__all__ = ["LadderRung", "LadderLM", "RUNGS", "ROLES", "factory"]
