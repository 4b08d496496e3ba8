"""Perplexity of an exported language model on a text file, the standard way.

    python -m training.evaluate_lm weights/wikitext2-lstm --data ../shared/data/wikitext-2/test.txt

Works for recurrent models and for n-gram models (`training.train_ngram`) alike.
The file is read like the model's training read its corpus (one <eos> per line for word
models, through the service's tokenizer when training tokenized raw text; every character for
char models) and scored as one stream with the hidden state carried across lines; the
result agrees with what training reported for the same split.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from models.checkpoint import CheckpointError
from models.registry import load_model
from training.corpus import model_reads_raw_text, read_tokens
from training.evaluation import EVAL_BATCH_SIZE, EVAL_BPTT, loaded_model_stream_loss, perplexity
from training.cli import parser_for, resolve_model, run_cli


def main(argv: list[str] | None = None) -> dict:
    parser = parser_for(__doc__)
    parser.add_argument("checkpoint", type=resolve_model, help="model directory, or a model id in the model directories")
    parser.add_argument("--data", type=Path, required=True, help="text file to score")
    parser.add_argument("--batch-size", type=int, default=EVAL_BATCH_SIZE)
    parser.add_argument("--bptt", type=int, default=EVAL_BPTT)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    loaded = load_model(args.checkpoint, args.device)
    if loaded.model_type not in ("rnn_lm", "ngram"):
        raise CheckpointError(f"{args.checkpoint} is a {loaded.model_type}, not a language model")
    # Read the file exactly as the model's training read its corpus.
    tokens = read_tokens(args.data, loaded.tokenizer.config, model_reads_raw_text(loaded.config))
    ids = torch.tensor(loaded.vocab.encode(tokens), dtype=torch.long)
    started = time.time()
    loss = loaded_model_stream_loss(loaded, ids, args.batch_size, args.bptt, args.device)
    seconds = time.time() - started
    result = {
        "model": loaded.model_id,
        "data": str(args.data),
        "tokens": int(ids.numel()),
        "oov_tokens": int((ids == loaded.vocab.unk_id).sum()),
        "loss_nats_per_token": round(loss, 5),
        "perplexity": round(perplexity(loss), 3),
        "tokens_per_second": round((ids.numel() - 1) / seconds, 1),
    }
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    run_cli(main)
