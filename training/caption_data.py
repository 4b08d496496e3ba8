"""Caption datasets: Flickr8k's layout (a token file `<image>#<n>\\t<caption>` and split lists)
and COCO's caption annotation JSON (`images` + `annotations`)."""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import torch

from models.captioning.captioner import CAPTION_TOKENIZER
from models.tokenizers import make_tokenizer
from models.vocab import Vocabulary

FLICKR_SPLITS = {"train": "Flickr_8k.trainImages.txt", "dev": "Flickr_8k.devImages.txt", "test": "Flickr_8k.testImages.txt"}


@dataclass
class CaptionedImage:
    image_id: str
    path: Path
    captions: list[str] = field(default_factory=list)


def read_flickr8k(root: str | Path) -> dict[str, list[CaptionedImage]]:
    """Splits of a Flickr8k directory (text/ and images/); a missing split list is skipped."""
    root = Path(root)
    text, images = root / "text", root / "images"
    captions: dict[str, list[str]] = {}
    for line in (text / "Flickr8k.token.txt").read_text(encoding="utf-8").splitlines():
        if "\t" not in line:
            continue
        key, caption = line.split("\t", 1)
        captions.setdefault(key.split("#")[0], []).append(caption.strip())
    splits = {}
    for split, filename in FLICKR_SPLITS.items():
        listing = text / filename
        if listing.exists():
            names = [n.strip() for n in listing.read_text().splitlines() if n.strip()]
            splits[split] = [CaptionedImage(n, images / n, captions.get(n, [])) for n in names if (images / n).exists() and captions.get(n)]
    return splits


def read_coco(annotations: str | Path, images_dir: str | Path) -> list[CaptionedImage]:
    """COCO caption annotations (e.g. captions_train2014.json) -> images with their captions."""
    data = json.loads(Path(annotations).read_text(encoding="utf-8"))
    by_id = {image["id"]: CaptionedImage(str(image["id"]), Path(images_dir) / image["file_name"]) for image in data["images"]}
    for annotation in data["annotations"]:
        if annotation["image_id"] in by_id:
            by_id[annotation["image_id"]].captions.append(annotation["caption"].strip())
    return [image for image in by_id.values() if image.captions and image.path.exists()]


_tokenizer = make_tokenizer(CAPTION_TOKENIZER)


def caption_tokens(caption: str) -> list[str]:
    """The tokenization used for training and for BLEU/CIDEr: NLTK Treebank words, lower case,
    punctuation removed."""
    return _tokenizer.tokenize(caption)


def build_vocab(images: list[CaptionedImage], min_count: int) -> Vocabulary:
    return Vocabulary.build(Counter(t for image in images for c in image.captions for t in caption_tokens(c)), min_count=min_count)


def encode_captions(images: list[CaptionedImage], vocab: Vocabulary, max_tokens: int) -> list[tuple[int, torch.Tensor]]:
    """(image index, ids [<bos> ... <eos>]) for every caption, truncated to max_tokens words."""
    pairs = []
    for index, image in enumerate(images):
        for caption in image.captions:
            ids = [vocab.bos_id] + vocab.encode(caption_tokens(caption)[:max_tokens]) + [vocab.eos_id]
            pairs.append((index, torch.tensor(ids)))
    return pairs
