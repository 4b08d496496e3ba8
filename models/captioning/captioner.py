"""Captioner = image encoder + caption decoder, and its serving checkpoint.

When the encoder is a frozen pretrained backbone, its weights are not copied into the
checkpoint: they come from where the backbone's weights always come from (the pip package
for EfficientNet-Lite0, torchvision's cache for the others) and config.json says so. A
fine-tuned or from-scratch encoder is saved with the decoder.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch
from torch import nn

from models.artifacts import (FORMAT_VERSION, VOCAB_FILE, WEIGHTS_FILE, CheckpointError, load_tokenizer,
                              load_weights, model_revision, read_config, save_weights, write_model_directory)
from models.captioning.decoder import CaptionDecoder, CaptionDecoderConfig
from models.captioning.encoders import EncoderConfig, ImageEncoder, build_encoder
from models.loaded import LoadedModel
from models.rnn_lm import count_parameters
from models.tokenizers import TokenizerConfig
from models.vocab import Vocabulary


class Captioner(nn.Module):
    def __init__(self, encoder_config: EncoderConfig, decoder_config: CaptionDecoderConfig) -> None:
        super().__init__()
        self.encoder_config = encoder_config
        self.encoder: ImageEncoder = build_encoder(encoder_config)
        self.decoder = CaptionDecoder(decoder_config)

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) uint8 or [0, 1] images -> (B, N, F) features."""
        return self.encoder(images)


CAPTION_TOKENIZER = TokenizerConfig(level="word", style="caption", start_token="<bos>", end_token="<eos>")


def captioner_facts(config: dict) -> dict:
    """What the HTTP layer needs of a captioner from its config.json before loading it: the
    image size its encoder reads (uploads are resized to it)."""
    return {"image_size": int(config["encoder"].get("image_size", 224))}


@dataclass
class LoadedCaptioner(LoadedModel):
    model_type: ClassVar[str] = "captioner"
    model: Captioner

    @property
    def image_size(self) -> int:
        return self.model.encoder_config.image_size

    def caption_text(self, token_ids: list[int], finished: bool = True) -> str:
        """A caption's words as a sentence: capitalised, with a full stop when it reached its end
        token (a caption cut off at max_tokens is not a whole sentence, so it gets none)."""
        text = " ".join(self.vocab.decode(token_ids))
        if not text:
            return ""
        return text[:1].upper() + text[1:] + ("." if finished else "")


def save_captioner(directory: str | Path, model: Captioner, vocab: Vocabulary, extra: dict | None = None,
                   include_encoder: bool = False, weights_dtype: str = "float32") -> Path:
    module = model if include_encoder else model.decoder
    config = {
        "model_type": "captioner",
        "format_version": FORMAT_VERSION,
        "encoder": model.encoder_config.to_json(),
        "encoder_weights": "checkpoint" if include_encoder else "pretrained",
        "decoder": model.decoder.config.to_json(),
        "tokenizer": CAPTION_TOKENIZER.to_json(),
        "weights_dtype": weights_dtype,
        "parameters": count_parameters(model),
        **(extra or {}),
    }
    return write_model_directory(directory, config, vocab, lambda path: save_weights(module, path, weights_dtype))


def load_captioner(directory: str | Path, device: str | torch.device = "cpu") -> LoadedCaptioner:
    directory = Path(directory)
    config = read_config(directory)
    try:
        encoder_config = EncoderConfig.from_json(config["encoder"])
        decoder_config = CaptionDecoderConfig.from_json(config["decoder"])
        in_checkpoint = config.get("encoder_weights") == "checkpoint"
    except (KeyError, TypeError) as error:
        raise CheckpointError(f"{directory}: bad config.json ({error})") from error
    if in_checkpoint:
        encoder_config = EncoderConfig(encoder_config.name, False, encoder_config.image_size)
    model = Captioner(encoder_config, decoder_config)
    vocab = Vocabulary.load(directory / VOCAB_FILE)
    if len(vocab) != decoder_config.vocab_size:
        raise CheckpointError(f"{directory}: vocab.json has {len(vocab)} tokens, config says {decoder_config.vocab_size}")
    load_weights(model if in_checkpoint else model.decoder, directory / WEIGHTS_FILE)
    model.to(device).eval()
    return LoadedCaptioner(directory.name, model, vocab, load_tokenizer(directory, TokenizerConfig.from_json(config.get("tokenizer", CAPTION_TOKENIZER.to_json()))),
                           config, model_revision(directory), directory)

