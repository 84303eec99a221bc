"""lossbench.losses: classification losses on raw logits, each a function + ``nn.Module`` twin.

Every loss is registered by name (``LOSSES``) with its input signature, hyperparameters
(defaults and search spaces) and reference.  This package depends on torch only.
"""

from lossbench.losses._registry import LOSSES, SIGNATURES, LossInfo, LossModule, get_loss
from lossbench.losses.cross_entropy import CrossEntropyLoss, cross_entropy
from lossbench.losses.exact import ExactLoss, exact, exact_sigma_schedule
from lossbench.losses.hinge import MultiClassHingeLoss, multi_class_hinge
from lossbench.losses.relaxations import (
    BetaBernoulliRelaxationLoss,
    Poly1CrossEntropyLoss,
    PolynomialRelaxationLoss,
    SigmoidRelaxationLoss,
    beta_bernoulli_relaxation,
    poly1_cross_entropy,
    polynomial_relaxation,
    sigmoid_relaxation,
)
from lossbench.losses.smooth_accuracy import (
    BinarySmoothAccuracyLoss,
    SmoothAccuracyLoss,
    binary_smooth_accuracy,
    smooth_accuracy,
)

__all__ = [
    "LOSSES",
    "SIGNATURES",
    "LossInfo",
    "LossModule",
    "get_loss",
    "cross_entropy",
    "CrossEntropyLoss",
    "exact",
    "ExactLoss",
    "exact_sigma_schedule",
    "multi_class_hinge",
    "MultiClassHingeLoss",
    "smooth_accuracy",
    "SmoothAccuracyLoss",
    "binary_smooth_accuracy",
    "BinarySmoothAccuracyLoss",
    "sigmoid_relaxation",
    "SigmoidRelaxationLoss",
    "polynomial_relaxation",
    "PolynomialRelaxationLoss",
    "beta_bernoulli_relaxation",
    "BetaBernoulliRelaxationLoss",
    "poly1_cross_entropy",
    "Poly1CrossEntropyLoss",
]
