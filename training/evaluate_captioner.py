"""Score an exported captioner on a split: BLEU-1..4 and CIDEr-D (pycocoevalcap) per decoding
strategy, captions tokenized as in training (NLTK Treebank words, lower case, no punctuation).

    python -m training.evaluate_captioner weights/flickr8k-captioner --data ../shared/data/flickr8k --split dev

`--precision int8` decodes with the decoder's recurrent and output layers in int8 (as the service
serves it with RNNSERVE_PRECISION=int8); the image encoder stays fp32.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from tqdm import tqdm

from models.artifacts import CheckpointError
from models.captioning.decoding import NO_REPEAT_NGRAM_SIZE, beam_search, has_repeated_ngram, sample_captions
from models.captioning.images import load_image
from models.quantization import PRECISIONS
from models.registry import load_model
from models.sampling import SamplingParams
from training.caption_data import caption_tokens, read_flickr8k
from training.caption_metrics import caption_scores
from training.cli import parser_for, resolve_model, run_cli


def decode(loaded, features: torch.Tensor, strategy: str, max_tokens: int, no_repeat_ngram_size: int) -> list[list[int]]:
    vocab = loaded.vocab
    if strategy.startswith("beam"):
        results = beam_search(loaded.model.decoder, features, vocab.bos_id, vocab.eos_id, int(strategy[4:]), max_tokens,
                              banned_ids=(vocab.unk_id,), no_repeat_ngram_size=no_repeat_ngram_size)
        return [r[0].token_ids for r in results]
    params = [SamplingParams(strategy="argmax", max_tokens=max_tokens, min_tokens=1)] * features.size(0)
    return [c.token_ids for c in sample_captions(loaded.model.decoder, features, params, vocab.bos_id, vocab.eos_id, vocab.unk_id)]


def build_parser() -> argparse.ArgumentParser:
    parser = parser_for(__doc__)
    parser.add_argument("checkpoint", type=resolve_model, help="captioner directory or model id")
    parser.add_argument("--data", type=Path, default=Path("../shared/data/flickr8k"),
                        help="Flickr8k-layout directory (text/ and images/)")
    parser.add_argument("--split", default="dev", help="the split to caption: train, dev or test")
    parser.add_argument("--strategies", nargs="+", default=["argmax", "beam3", "beam5"],
                        help="decoding strategies to score: argmax, or beamN for beam search of width N")
    parser.add_argument("--max-tokens", type=int, default=20, help="words per caption at most")
    parser.add_argument("--limit", type=int, default=None, help="only the first N images (default: the whole split)")
    parser.add_argument("--no-repeat-ngram-size", type=int, default=NO_REPEAT_NGRAM_SIZE,
                        help="beam search never repeats an n-gram of this many words in a caption (0: off)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--precision", choices=PRECISIONS, default="fp32",
                        help="what the decoder computes in (int8: recurrent and output layers, CPU only)")
    return parser


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    loaded = load_model(args.checkpoint, args.device, args.precision)
    if loaded.model_type != "captioner":
        raise CheckpointError(f"{args.checkpoint} is a {loaded.model_type}, not a captioner")
    images = read_flickr8k(args.data)[args.split][: args.limit]
    references = {image.image_id: [" ".join(caption_tokens(c)) for c in image.captions] for image in images}
    hypotheses: dict[str, dict[str, str]] = {strategy: {} for strategy in args.strategies}
    repeats = {strategy: 0 for strategy in args.strategies}
    with torch.inference_mode():
        for start in tqdm(range(0, len(images), 50), desc=f"captioning {args.split}"):
            chunk = images[start : start + 50]
            features = loaded.model.encode(torch.stack([load_image(i.path, loaded.image_size) for i in chunk]).to(args.device))
            for strategy in args.strategies:
                for image, ids in zip(chunk, decode(loaded, features, strategy, args.max_tokens, args.no_repeat_ngram_size)):
                    hypotheses[strategy][image.image_id] = " ".join(loaded.vocab.decode(ids))
                    repeats[strategy] += has_repeated_ngram(ids, 3)
    results = {strategy: {k: round(v, 4) for k, v in caption_scores(references, hyps).items()} | {"repeated_trigram_captions": repeats[strategy]}
               for strategy, hyps in hypotheses.items()}
    print(json.dumps({"model": loaded.model_id, "precision": loaded.precision, "split": args.split, "images": len(images),
                      "no_repeat_ngram_size": args.no_repeat_ngram_size, "results": results}, indent=2))
    return results


if __name__ == "__main__":
    run_cli(main)
