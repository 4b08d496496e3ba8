"""Turning a decoded PIL image into the encoder's input."""
from __future__ import annotations

import numpy as np
import torch
from PIL import Image


def to_rgb(image: Image.Image) -> Image.Image:
    """Any mode (palette, CMYK, 16-bit, alpha) -> 8-bit RGB; transparency becomes white."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        array = np.asarray(image, dtype=np.float64)
        high = array.max() or 1.0
        image = Image.fromarray((array * (255.0 / max(high, 255.0 if high <= 255 else 65535.0))).clip(0, 255).astype(np.uint8))
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        image = image.convert("RGBA")
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, image)
    return image.convert("RGB")


def image_tensor(image: Image.Image, size: int) -> torch.Tensor:
    """PIL image -> (3, size, size) uint8 tensor (resized, no cropping: captions describe the
    whole picture)."""
    resized = to_rgb(image).resize((size, size), Image.Resampling.BILINEAR)
    return torch.from_numpy(np.asarray(resized, dtype=np.uint8).copy()).permute(2, 0, 1)


def load_image(path, size: int) -> torch.Tensor:
    with Image.open(path) as image:
        return image_tensor(image, size)
