"""lossbench.models: registered models that map a dataset's features to raw logits.

``build_model(name, dataset, num_outputs=None, seed=None, **hyperparams)``; ``MODELS`` lists
each model with its hyperparameters (defaults and search spaces) and reference.  Every model
outputs raw logits ``(B, num_outputs)`` (no softmax or sigmoid).
"""

from lossbench.models._registry import MODELS, ModelInfo, build_model, register_model
from lossbench.models.cnn import M3, SmallCNN
from lossbench.models.linear import LinearClassifier
from lossbench.models.mlp import MLP
from lossbench.models.text import BagOfEmbeddings

__all__ = [
    "MODELS",
    "ModelInfo",
    "build_model",
    "register_model",
    "LinearClassifier",
    "MLP",
    "M3",
    "SmallCNN",
    "BagOfEmbeddings",
]
