"""A synthetic captioning dataset: coloured shapes on white, captioned "a red circle" etc.,
written in Flickr8k's layout so the real training CLI reads it."""
from __future__ import annotations

import random
from pathlib import Path

from PIL import Image, ImageDraw

COLOURS = {"red": (220, 30, 30), "green": (30, 170, 40), "blue": (30, 60, 220)}
SHAPES = ("circle", "square", "triangle")


def draw(shape: str, colour: str, rng: random.Random, size: int = 64) -> Image.Image:
    image = Image.new("RGB", (size, size), (255, 255, 255))
    pen = ImageDraw.Draw(image)
    extent = rng.randint(size // 3, size // 2)
    x, y = rng.randint(2, size - extent - 2), rng.randint(2, size - extent - 2)
    fill = COLOURS[colour]
    if shape == "circle":
        pen.ellipse((x, y, x + extent, y + extent), fill=fill)
    elif shape == "square":
        pen.rectangle((x, y, x + extent, y + extent), fill=fill)
    else:
        pen.polygon([(x, y + extent), (x + extent, y + extent), (x + extent // 2, y)], fill=fill)
    return image


def make_shapes_dataset(root: Path, train: int = 270, dev: int = 45, seed: int = 0) -> Path:
    rng = random.Random(seed)
    (root / "images").mkdir(parents=True)
    (root / "text").mkdir()
    lines, splits = [], {"train": [], "dev": []}
    for split, count in (("train", train), ("dev", dev)):
        for index in range(count):
            colour, shape = rng.choice(list(COLOURS)), rng.choice(SHAPES)
            name = f"{split}{index:04d}.png"
            draw(shape, colour, rng).save(root / "images" / name)
            splits[split].append(name)
            for n, template in enumerate(("a {c} {s}", "a {c} {s} .", "A {c} {s} on white", "the {c} {s}", "a {c} {s}")):
                lines.append(f"{name}#{n}\t{template.format(c=colour, s=shape)}")
    (root / "text" / "Flickr8k.token.txt").write_text("\n".join(lines) + "\n")
    (root / "text" / "Flickr_8k.trainImages.txt").write_text("\n".join(splits["train"]) + "\n")
    (root / "text" / "Flickr_8k.devImages.txt").write_text("\n".join(splits["dev"]) + "\n")
    return root
