"""lossbench: metric-aimed classification losses and an equal-budget bench to compare them."""

__version__ = "0.1.0"
