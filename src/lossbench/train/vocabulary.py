"""The training options' names: optimizers, learning-rate schedules and where weight decay applies.

Kept apart from the training loop (which imports torch and the step builder) so that a spec or a
report can check and describe these options without loading the trainer.
"""

OPTIMIZERS = ("sgd", "adam", "adamw")
LR_SCHEDULES = ("step", "epoch")  # exponential decay to lr_final: step by step, or once per epoch
WEIGHT_DECAY_ON = ("all", "weights", "none")  # weights: parameters of >= 2 dimensions only (not biases)
