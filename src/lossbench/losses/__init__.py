"""lossbench.losses: classification losses on raw logits, each a function + ``nn.Module`` twin.

Every loss is registered by name (``LOSSES``, through ``register_loss``, as every registry of
lossbench registers: ``register_<kind>`` exported from its package) with its input signature,
hyperparameters (defaults and search spaces) and reference.  This package depends on torch only.
"""

from lossbench.losses._registry import LOSSES, SIGNATURES, LossInfo, LossModule, get_loss, register_loss
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
from lossbench.losses.class_weights import balanced_class_weights, effective_number_weights
from lossbench.losses.focal import FocalLoss, SigmoidFocalLoss, focal, sigmoid_focal
from lossbench.losses.imbalance import (
    BalancedSoftmaxLoss,
    LDAMLoss,
    LogitAdjustedCrossEntropyLoss,
    WeightedCrossEntropyLoss,
    balanced_softmax,
    drw_weights,
    ldam,
    logit_adjust,
    logit_adjusted_cross_entropy,
    weighted_cross_entropy,
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
from lossbench.losses.f1 import (
    F1WeightedBCELoss,
    MacroSoftF1Loss,
    MultilabelSoftF1Loss,
    SoftDiceLoss,
    SoftF1Loss,
    f1_weighted_bce,
    macro_soft_f1,
    multilabel_soft_f1,
    soft_dice,
    soft_f1,
)
from lossbench.losses.multilabel import (
    AsymmetricLoss,
    BinaryCrossEntropyLoss,
    SparseZLPRLoss,
    ZLPRLoss,
    asymmetric_loss,
    binary_cross_entropy,
    zlpr,
    zlpr_predict,
    zlpr_probabilities,
    zlpr_sparse,
)
from lossbench.losses.nway import NWayMClassLoss, nway_mclass
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
    "register_loss",
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
    "weighted_cross_entropy",
    "WeightedCrossEntropyLoss",
    "drw_weights",
    "balanced_class_weights",
    "effective_number_weights",
    # soft F1 / Dice, F1-weighted BCE, multi-label and n-way m-class losses
    "soft_f1",
    "SoftF1Loss",
    "soft_dice",
    "SoftDiceLoss",
    "multilabel_soft_f1",
    "MultilabelSoftF1Loss",
    "macro_soft_f1",
    "MacroSoftF1Loss",
    "f1_weighted_bce",
    "F1WeightedBCELoss",
    "zlpr",
    "ZLPRLoss",
    "zlpr_sparse",
    "SparseZLPRLoss",
    "zlpr_probabilities",
    "zlpr_predict",
    "binary_cross_entropy",
    "BinaryCrossEntropyLoss",
    "asymmetric_loss",
    "AsymmetricLoss",
    "nway_mclass",
    "NWayMClassLoss",
]
