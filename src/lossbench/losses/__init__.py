"""lossbench.losses: classification losses on raw logits, each a function + ``nn.Module`` twin.

Every loss is registered by name (``LOSSES``) with its input signature, hyperparameters
(defaults and search spaces) and reference.  This package depends on torch only.
"""

from lossbench.losses._registry import LOSSES, SIGNATURES, LossInfo, LossModule, get_loss
from lossbench.losses.cross_entropy import CrossEntropyLoss, cross_entropy
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
from lossbench.losses.class_weights import balanced_class_weights, effective_number_weights
from lossbench.losses.focal import FocalLoss, SigmoidFocalLoss, focal, sigmoid_focal
from lossbench.losses.imbalance import (
    BalancedSoftmaxLoss,
    LDAMLoss,
    LogitAdjustedCrossEntropyLoss,
    balanced_softmax,
    drw_weights,
    ldam,
    logit_adjust,
    logit_adjusted_cross_entropy,
)
from lossbench.losses.truncation import (
    BinaryHardTruncationLoss,
    BinarySoftTruncationLoss,
    HardTruncationLoss,
    SoftTruncationLoss,
    binary_hard_truncation,
    binary_soft_truncation,
    hard_truncation,
    soft_truncation,
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
    # class imbalance and focusing
    "focal",
    "FocalLoss",
    "sigmoid_focal",
    "SigmoidFocalLoss",
    "hard_truncation",
    "HardTruncationLoss",
    "binary_hard_truncation",
    "BinaryHardTruncationLoss",
    "soft_truncation",
    "SoftTruncationLoss",
    "binary_soft_truncation",
    "BinarySoftTruncationLoss",
    "logit_adjusted_cross_entropy",
    "LogitAdjustedCrossEntropyLoss",
    "logit_adjust",
    "balanced_softmax",
    "BalancedSoftmaxLoss",
    "ldam",
    "LDAMLoss",
    "drw_weights",
    "balanced_class_weights",
    "effective_number_weights",
]
