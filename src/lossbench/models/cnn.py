"""Convolutional networks for small images (28x28 MNIST-family digits and the like)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from lossbench.models._registry import ModelInfo, register_model
from lossbench.registry import Choice, FloatRange, HyperParam

M3_CHANNELS = tuple(32 + 16 * i for i in range(10))  # 32, 48, ..., 176


def _conv_bn_relu(cin: int, cout: int, padding: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=padding, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]


class M3(nn.Module):
    """M3 of An et al. 2020 (arXiv 2008.10400), the EXACT paper's MNIST model.

    Ten 3x3 convolutions without padding (28x28 -> 8x8), with 32, 48, ..., 176 channels (16
    more per layer), each without bias and followed by BatchNorm and ReLU.  Heads:

    - ``"avgpool"`` (default): global average pooling to 176 features, then a linear layer
      with bias -- the configuration of the EXACT paper's code (mdn-metric ``vgg_m3``
      embedder, average pooling, no head BatchNorm, linear classifier);
    - ``"flatten"``: An et al.'s head, the 8x8x176 = 11264 activations flattened into a
      linear layer without bias followed by BatchNorm1d on the logits.

    Both papers rescale the input ((x - 0.5) * 2, or x - 0.5); that is omitted because the
    first convolution has no padding and no bias and feeds BatchNorm, which cancels any
    affine rescaling of the input exactly (up to BatchNorm's eps).
    """

    def __init__(
        self, in_channels: int, num_outputs: int, image_size: tuple[int, int], head: str = "avgpool"
    ) -> None:
        super().__init__()
        h, w = image_size
        if min(h, w) < 21:
            raise ValueError(f"M3's ten unpadded 3x3 convolutions need images of at least 21x21, got {h}x{w}")
        layers: list[nn.Module] = []
        for cin, cout in zip((in_channels, *M3_CHANNELS[:-1]), M3_CHANNELS):
            layers += _conv_bn_relu(cin, cout, padding=0)
        self.features = nn.Sequential(*layers)
        width = M3_CHANNELS[-1]
        if head == "avgpool":
            self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, num_outputs))
        elif head == "flatten":
            flat = width * (h - 20) * (w - 20)
            self.head = nn.Sequential(
                nn.Flatten(), nn.Linear(flat, num_outputs, bias=False), nn.BatchNorm1d(num_outputs)
            )
        else:
            raise ValueError(f"head must be 'avgpool' or 'flatten', got {head!r}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class SmallCNN(nn.Module):
    """Three ``conv3x3 (padding 1) -> BatchNorm -> ReLU -> 2x2 max-pool`` blocks with ``w, 2w, 4w``
    channels (28 -> 14 -> 7 -> 3), global average pooling, dropout, a linear layer.

    A VGG-style (Simonyan & Zisserman 2015) network about 20x cheaper than M3 at ``w = 32``:
    the model for CPU runs on 28x28 images.
    """

    def __init__(self, in_channels: int, num_outputs: int, width: int = 32, dropout: float = 0.0) -> None:
        super().__init__()
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout must lie in [0, 1), got {dropout!r}")
        layers: list[nn.Module] = []
        cin = in_channels
        for cout in (width, 2 * width, 4 * width):
            layers += [*_conv_bn_relu(cin, cout, padding=1), nn.MaxPool2d(2)]
            cin = cout
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout), nn.Linear(cin, num_outputs)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def _build_m3(ds: Any, num_outputs: int, *, head: str) -> M3:
    c, h, w = ds.input_shape
    return M3(c, num_outputs, (h, w), head)


def _build_cnn(ds: Any, num_outputs: int, *, width: int, dropout: float) -> SmallCNN:
    return SmallCNN(ds.input_shape[0], num_outputs, width, dropout)


register_model(
    ModelInfo(
        "m3",
        _build_m3,
        ("image",),
        (
            HyperParam(
                "head", "avgpool", None, "'avgpool' (EXACT's configuration) or 'flatten' (An et al.'s)"
            ),
        ),
        "An et al. 2020, arXiv 2008.10400 (M3); as configured in Karpukhin et al. 2022, arXiv 2205.09615",
        "ten 3x3 conv-BN-ReLU layers (32..176 channels), the EXACT paper's MNIST model",
    )
)
register_model(
    ModelInfo(
        "cnn",
        _build_cnn,
        ("image",),
        (
            HyperParam("width", 32, Choice((16, 32, 64)), "channels of the first block (doubled per block)"),
            HyperParam("dropout", 0.0, FloatRange(0.0, 0.5), "dropout before the output layer"),
        ),
        "VGG-style blocks, Simonyan & Zisserman 2015, arXiv 1409.1556",
        "three conv-BN-ReLU-maxpool blocks, global average pooling, linear",
    )
)
