"""lossbench.train: training-step transforms and a lean training loop.

A step is a loss, wrapped by objective transforms (flooding, iFlood, gradient penalty, WEISSI),
then gradient transforms (clipping, EXACT's gradient normaliser, Su's ascent/descent
alternation), then the update (the optimizer's, or MGS's sampled one): small composable
pieces configured in one place, in the spirit of optax's chained gradient transformations.
Every transform is registered by name in ``TRANSFORMS`` (through ``register_transform``) with its
hyperparameters' defaults and search spaces.

    step = build_step(model, loss, optimizer, transforms=[("flooding", {"b": 0.05}), "clip_norm"])
    for x, y in batches:
        stats = step(x, y)
"""

import importlib

from lossbench.train._base import StepContext, Transform, global_norm, packing_refusal, reads_per_sample
from lossbench.train._registry import (
    TRANSFORMS,
    TransformInfo,
    compatible,
    get_transform,
    make_transform,
    register_transform,
)

# Imported in pipeline order, which is the registry's (and `lossbench transforms`') listing order.
from lossbench.train.flooding import Flooding, IFlood, flood, iflood  # isort: skip
from lossbench.train.gradient_penalty import GradientPenalty, grad_norm_sq  # isort: skip
from lossbench.train.weissi import L2Penalty, Weissi, weight_matrices, weissi_penalty  # isort: skip
from lossbench.train.ascent_descent import AscentDescent  # isort: skip
from lossbench.train.clipping import (  # isort: skip
    ClipNorm,
    GradientNormalizer,
    SmoothClipNorm,
    clip_grad_norm_,
    clip_scale,
)
from lossbench.train.mgs import MGS  # isort: skip
from lossbench.train.metrics import error_rate, macro_f1_cost  # isort: skip
from lossbench.train.vocabulary import OPTIMIZERS  # isort: skip

# The step builder and the fit loop load on first use (PEP 562), so that reading the registry (a
# spec, a report, `lossbench transforms`) does not load the training machinery.
_LAZY = {
    "TrainStep": "lossbench.train.step",
    "build_step": "lossbench.train.step",
    "trainable_parameters": "lossbench.train.step",
    "eval_logits": "lossbench.train.loop",
    "fit": "lossbench.train.loop",
    "make_optimizer": "lossbench.train.loop",
}


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "TRANSFORMS",
    "TransformInfo",
    "Transform",
    "StepContext",
    "packing_refusal",
    "reads_per_sample",
    "get_transform",
    "make_transform",
    "register_transform",
    "compatible",
    "TrainStep",
    "build_step",
    "trainable_parameters",
    "fit",
    "eval_logits",
    "make_optimizer",
    "OPTIMIZERS",
    "flood",
    "iflood",
    "Flooding",
    "IFlood",
    "AscentDescent",
    "grad_norm_sq",
    "GradientPenalty",
    "clip_grad_norm_",
    "clip_scale",
    "global_norm",
    "ClipNorm",
    "SmoothClipNorm",
    "GradientNormalizer",
    "weight_matrices",
    "weissi_penalty",
    "Weissi",
    "L2Penalty",
    "MGS",
    "error_rate",
    "macro_f1_cost",
]
