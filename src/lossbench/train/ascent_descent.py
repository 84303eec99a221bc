"""Su's alternating descent/ascent schedule (kexue.fm/archives/7643)."""

from __future__ import annotations

import torch

from lossbench._checks import check_interval
from lossbench.registry import FloatRange, HyperParam
from lossbench.train._base import StepContext, Transform, scale_
from lossbench.train._registry import register_transform


class AscentDescent(Transform):
    """Alternate from step 0: descend with lr ``eps1``, then ascend with lr ``eps2 = ascent_ratio * eps1``.

    The optimizer's learning rate is ``eps1``; on odd steps the gradient handed to it is
    multiplied by ``-ascent_ratio``.  For plain SGD, one descent step followed by one ascent
    step equals, up to O(eps^3), one descent step at lr ``eps1 - eps2`` on
    ``L + eps1 eps2 / (2 (eps1 - eps2)) |grad L|^2``; with ``ascent_ratio = 1`` it is descent on
    ``|grad L|^2`` alone at lr ``eps^2 / 2`` (Su, "We need to lower the training loss to zero?",
    kexue.fm/archives/7643, analysing flooding).  With momentum or Adam the sign flip still
    reaches the optimizer but the ratio of the step sizes is only approximately kept.
    """

    name = "ascent_descent"
    stage = "gradient"
    packs = True  # (its sign flip reads only its run's step count and gradients)

    def __init__(self, ascent_ratio: float = 0.5) -> None:
        check_interval("ascent_ratio", ascent_ratio, 0.0, 1.0, closed="right")
        self.ascent_ratio = ascent_ratio

    def gradients(self, grads: list[torch.Tensor], ctx: StepContext) -> None:
        ascend = ctx.step % 2 == 1
        if ascend:
            scale_(grads, -self.ascent_ratio)
        self.record(ctx, "ascent", float(ascend))


register_transform(
    AscentDescent,
    reference="Su, kexue.fm/archives/7643",
    hyperparams=(HyperParam("ascent_ratio", 0.5, FloatRange(0.05, 0.95), "eps2 / eps1"),),
)
