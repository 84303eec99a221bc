"""The training options' names and ranges: optimizers, learning-rate schedules, where weight decay applies, SGD's momentum.

Kept apart from the training loop (which imports torch and the step builder) so that a spec or a
report can check and describe these options without loading the trainer.
"""

OPTIMIZERS = ("sgd", "adam", "adamw")
LR_SCHEDULES = ("step", "epoch")  # exponential decay to lr_final: step by step, or once per epoch
WEIGHT_DECAY_ON = ("all", "weights", "none")  # weights: parameters of >= 2 dimensions only (not biases)
MOMENTUM_BELOW = 1.0  # SGD's momentum lies in [0, MOMENTUM_BELOW): at 1 and above the steps never decay
