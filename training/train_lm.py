r"""Train a recurrent language model and export the best epoch as a serving checkpoint.

    python -m training.train_lm --data ../shared/data/wikitext-2 --run-dir runs/wt2 \
        --export-dir weights/wikitext2-lstm

The run directory holds `last.pt` (resumable: model, optimizer, scheduler, position, RNG),
`metrics.csv`, `curves.png`, `train.log` and `export/MODEL_ID`, the best epoch so far (rewritten
after every epoch that improves validation); re-running the same command resumes after an
interruption. The export directory is the artifact the service loads (see models/checkpoint.py):
it receives the best epoch once, when training ends, with its test metrics and spelling model,
so a server reloading a models directory that holds it keeps serving the previous model until
then (--export-every-improvement replaces it after every improving epoch instead). Every export
is written beside its target and renamed into place, so nobody sees half of one.
"""
from __future__ import annotations

import argparse
import csv
import json
import logging
import math
import os
import random
import shutil
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from tqdm import tqdm

from models.artifacts import CONFIG_FILE, copy_model_directory, staged_model_directory, write_config
from models.cells import CELLS
from models.checkpoint import load_language_model, save_language_model
from models.rnn_lm import LanguageModelConfig, RNNLanguageModel, count_parameters
from models.streams import EVAL_BATCH_SIZE, EVAL_BPTT, batchify, stream_loss, windows
from models.text_normalization import NONE, NORMALIZATIONS
from models.tokenizers import LEVELS, Tokenizer, make_tokenizer
from models.vocab import Vocabulary
from training.awd import FUSED_CELLS, AWDLoss, AWDRegularisation, NonMonotoneAveraging
from training.cli import add_export_options, check_export_target, parser_for, run_cli
from training.corpus import (
    Corpus,
    CorpusFiles,
    corpus_reading,
    count_words,
    default_tokenize_raw,
    lm_tokenizer_config,
    load_corpus,
    with_start_context,
)
from training.distributed import Distributed, LossModule
from training.evaluation import perplexity, word_perplexity
from training.normalized_corpus import write_normalized_corpus
from training.piece_model import piece_tokenizer
from training.plots import plot_metrics
from training.pretrained_embeddings import initialise_embeddings
from training.run_setup import bf16_recurrence_supported, prepare_run
from training.spelling import DEFAULT_ORDER, attach_spelling

logger = logging.getLogger("training.train_lm")
METRIC_FIELDS = ["epoch", "step", "train_loss", "valid_loss", "valid_ppl", "lr", "seconds"]


def build_parser() -> argparse.ArgumentParser:
    parser = parser_for(__doc__)
    data = parser.add_argument_group("data")
    data.add_argument("--data", required=True, help="directory with *train*/*valid*/*test* files, or one text file")
    data.add_argument("--level", choices=LEVELS, default="word",
                      help="sentencepiece: an open vocabulary of subword pieces learnt from the training text "
                           "(--max-vocab pieces, default 8000)")
    data.add_argument("--piece-model", choices=["unigram", "bpe"], default="unigram",
                      help="how the SentencePiece vocabulary is learnt")
    data.add_argument("--style", choices=["wikitext", "ptb", "plain"], default="wikitext",
                      help="tokenizer conventions the service applies to raw request text")
    data.add_argument("--tokenize-raw", action=argparse.BooleanOptionalAction, default=None,
                      help="run the text through the service's tokenizer (NLTK words and punctuation split apart) "
                           "(default: on for --style plain, off for the already tokenized wikitext and ptb corpora)")
    data.add_argument("--text-normalization", choices=NORMALIZATIONS, default=NONE,
                      help="recogniser: train on the text as a speech recogniser writes it (lower case, no punctuation, "
                           "numbers spelled out, one sentence a line), recorded in config.json so rescoring puts "
                           "hypotheses in the same form (word level)")
    data.add_argument("--extra-data", action="append", default=[], metavar="PATH:STYLE",
                      help="with --text-normalization: another tokenized corpus (directory with train/valid/test) "
                           "and the style it is written in, normalised and added to each split (repeatable)")
    data.add_argument("--valid-fraction", type=float, default=0.1, help="valid share of a single-file corpus")
    data.add_argument("--max-vocab", type=int, default=None,
                      help="keep the most frequent words, the rest become <unk>; for sentencepiece the number of pieces "
                           "(default: every word seen --min-count times; 8000 pieces)")
    data.add_argument("--min-count", type=int, default=1,
                      help="words seen fewer times in the training text become <unk>")
    model = parser.add_argument_group("model")
    model.add_argument("--cell", choices=list(CELLS), default="lstm",
                       help="peephole: LSTM whose gates see the cell state; jordan: the recurrence reads the "
                            "previous output (both written out in PyTorch, slower than the fused cells)")
    model.add_argument("--embedding-dim", type=int, default=256, help="width of the input word (or character) vectors")
    model.add_argument("--hidden-dim", type=int, default=256, help="units in each recurrent layer")
    model.add_argument("--num-layers", type=int, default=2, help="recurrent layers stacked")
    model.add_argument("--dropout", type=float, default=0.2,
                       help="dropout on the embeddings, between recurrent layers and on the output")
    model.add_argument("--embedding-dropout", type=float, default=0.0,
                       help="drop whole words from the input in training (every occurrence of a word at once)")
    model.add_argument("--tie-weights", action="store_true",
                       help="share the input embeddings with the output layer (fewer parameters; the top layer is "
                            "projected to --embedding-dim when wider)")
    model.add_argument("--head", choices=["linear", "adaptive"], default="linear",
                       help="output layer: a full softmax, or an adaptive softmax that is cheaper for large vocabularies")
    model.add_argument("--adaptive-cutoffs", type=int, nargs="*", default=[],
                       help="vocabulary ranks where the adaptive head's clusters start, e.g. 2000 10000")
    model.add_argument("--pretrained-embeddings", type=Path, default=None,
                       help="word2vec-format vectors (text or binary) to initialise the input embeddings (default: random)")
    awd = parser.add_argument_group(
        "AWD-LSTM regularisation (training only; the export serves like any model)",
        "--awd runs each layer on its own with DropConnect on its hidden-to-hidden matrix and "
        "variational dropout (one mask per sequence) on the embeddings (--input-dropout), between "
        "layers (--hidden-dropout) and on the output (--dropout); --embedding-dropout drops whole words",
    )
    awd.add_argument("--awd", action="store_true", help="train with AWD-LSTM's regularisation (rnn, gru, lstm cells)")
    awd.add_argument("--weight-drop", type=float, default=0.5, help="DropConnect on hidden-to-hidden weights")
    awd.add_argument("--input-dropout", type=float, default=0.65, help="variational dropout on the embeddings")
    awd.add_argument("--hidden-dropout", type=float, default=0.3, help="variational dropout between layers")
    awd.add_argument("--activation-penalty", type=float, default=2.0, help="AR: alpha on the top output's squares")
    awd.add_argument("--temporal-penalty", type=float, default=1.0, help="TAR: beta on the top output's step changes")
    optim = parser.add_argument_group("optimisation")
    optim.add_argument("--optimizer", choices=["adamw", "adam", "sgd", "ntasgd"], default="adamw",
                       help="ntasgd: SGD, then averaged weights once validation stops improving (--nonmono)")
    optim.add_argument("--nonmono", type=int, default=5, help="NT-ASGD: epochs a validation loss is compared back over")
    optim.add_argument("--lr", type=float, default=2e-3, help="learning rate")
    optim.add_argument("--weight-decay", type=float, default=0.0, help="L2 weight decay")
    optim.add_argument("--schedule", choices=["plateau", "cosine", "none"], default="plateau",
                       help="plateau: divide the LR by 4 when validation stops improving")
    optim.add_argument("--batch-size", type=int, default=32, help="parallel token streams per training step")
    optim.add_argument("--bptt", type=int, default=70, help="truncated backpropagation window")
    optim.add_argument("--clip", type=float, default=0.25, help="gradient norm clipping")
    optim.add_argument("--epochs", type=int, default=10, help="passes over the training text at most")
    optim.add_argument("--patience", type=int, default=3, help="epochs without improvement before stopping")
    optim.add_argument("--max-steps", type=int, default=None,
                       help="stop after this many steps, for smoke tests (default: no limit)")
    optim.add_argument("--max-epoch-steps", type=int, default=None,
                       help="cap the steps of each epoch, for quick runs (default: the whole training text)")
    run = parser.add_argument_group("run")
    run.add_argument("--run-dir", type=Path, required=True,
                     help="where checkpoints, metrics, curves and the log go; running again resumes from it")
    add_export_options(run, "RUN_DIR/export/MODEL_ID", "validation")
    run.add_argument("--model-id", default=None, help="the id the service lists the model under (default: the export directory's name)")
    run.add_argument("--spelling-order", type=int, default=DEFAULT_ORDER,
                     help="order of the character n-gram that spells unknown words (word models; 0: none)")
    run.add_argument("--example-prompt", default=None,
                     help="a prompt that suits the model, offered first by the playground (default: none)")
    run.add_argument("--weights-dtype", choices=["float32", "float16"], default="float32",
                     help="how the exported weights are stored (float16: half the size)")
    run.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:N")
    run.add_argument("--precision", choices=["fp32", "bf16"], default="fp32",
                     help="bf16: mixed precision (autocast; weights, optimizer and loss stay fp32). Meant for GPUs; "
                          "CPUs run it too, fast only with bf16 matrix units")
    run.add_argument("--seed", type=int, default=1111, help="random seed (initialisation and dropout)")
    run.add_argument("--checkpoint-every", type=int, default=500, help="steps between resumable checkpoints")
    run.add_argument("--eval-batch-size", type=int, default=EVAL_BATCH_SIZE,
                     help="parallel streams when measuring validation and test perplexity")
    run.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    run.add_argument("--no-progress", action="store_true", help="no progress bar (logs only)")
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.text_normalization != NONE and args.level != "word":
        parser.error("--text-normalization applies to word-level models")
    if args.extra_data and args.text_normalization == NONE:
        parser.error("--extra-data is read with --text-normalization (the corpora are normalised into one)")
    for extra in args.extra_data:
        path, _, style = extra.rpartition(":")
        if not path or style not in ("wikitext", "ptb"):
            parser.error(f"--extra-data {extra!r}: give PATH:STYLE with STYLE wikitext or ptb")
    if args.awd:
        if args.cell not in FUSED_CELLS:
            parser.error(f"--awd runs the fused cells ({', '.join(FUSED_CELLS)}), not {args.cell!r}")
        try:
            awd_regularisation(args)
        except ValueError as error:
            parser.error(str(error))
    return args


def awd_regularisation(args: argparse.Namespace) -> AWDRegularisation:
    return AWDRegularisation(
        weight_drop=args.weight_drop, input_dropout=args.input_dropout, hidden_dropout=args.hidden_dropout,
        output_dropout=args.dropout, activation_penalty=args.activation_penalty, temporal_penalty=args.temporal_penalty,
    )


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


@dataclass
class TrainState:
    """Where a run is: saved in last.pt so an interrupted run resumes where it stopped."""

    epoch: int = 1
    position: int = 0  # token column inside the epoch
    step: int = 0
    best_valid_loss: float = math.inf
    epochs_without_improvement: int = 0
    done: bool = False


def build_optimizer(args: argparse.Namespace, model: torch.nn.Module) -> torch.optim.Optimizer:
    if args.optimizer in ("sgd", "ntasgd"):
        return torch.optim.SGD(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    if args.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    return torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)


def build_scheduler(args: argparse.Namespace, optimizer: torch.optim.Optimizer):
    if args.schedule == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.25, patience=0)
    if args.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=args.epochs)
    return None


def save_resumable(path: Path, model, optimizer, scheduler, state: TrainState, vocab: Vocabulary,
                   averaging: NonMonotoneAveraging | None = None) -> None:
    payload = {
        "averaging": averaging.state_dict() if averaging else None,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict() if scheduler else None,
        "train_state": vars(state),
        "vocab_tokens": vocab.tokens,
        "torch_rng": torch.get_rng_state(),
    }
    temporary = path.with_suffix(".tmp")
    torch.save(payload, temporary)
    os.replace(temporary, path)  # atomic: an interruption never leaves half a checkpoint


class Trainer:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.dist = Distributed.from_environment()
        self.device = self.dist.start(resolve_device(args.device))
        if args.precision == "bf16" and not bf16_recurrence_supported(self.device):
            raise SystemExit(f"--precision bf16: {self.device} cannot run recurrent layers in bf16 (on a CPU this needs "
                             "AVX-512 BF16 or AMX instructions); train with --precision fp32")
        self.run_dir: Path = args.run_dir
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.model_id = args.model_id or (args.export_dir.name if args.export_dir else "model")
        # Improving epochs are exported inside the run directory, the export directory (often
        # in a models directory a server reloads) gets the best once training ends.
        self.run_export_dir = self.run_dir / "export" / self.model_id
        self.export_dir: Path = args.export_dir or self.run_export_dir
        self.tokenizer_config = lm_tokenizer_config(args.level, args.style)
        if args.text_normalization != NONE:
            self.tokenizer_config = replace(self.tokenizer_config, text_normalization=args.text_normalization)
        self.tokenize_raw = default_tokenize_raw(args.style, args.tokenize_raw)
        if self.dist.is_main:
            check_export_target(self.export_dir, args.force, self.run_dir)
        self.files = CorpusFiles.find(args.data, args.valid_fraction)
        self.last_path = self.run_dir / "last.pt"
        resumed = torch.load(self.last_path, weights_only=True, map_location="cpu") if self.last_path.exists() else None
        vocab = Vocabulary(list(resumed["vocab_tokens"])) if resumed else None
        self.tokenizer = self.make_tokenizer()
        self.normalized_from: list[dict] | None = None
        if args.text_normalization != NONE:
            self.files = self.normalized_corpus()
        if vocab is None:
            vocab = self.tokenizer.corpus_vocabulary()
        logger.info("reading corpus %s", args.data)
        self.corpus: Corpus = load_corpus(
            self.files, self.tokenizer, args.max_vocab, args.min_count, self.tokenize_raw, vocab
        )
        seed_everything(args.seed)
        self.config = LanguageModelConfig(
            vocab_size=len(self.corpus.vocab),
            embedding_dim=args.embedding_dim,
            hidden_dim=args.hidden_dim,
            num_layers=args.num_layers,
            cell=args.cell,
            dropout=args.dropout,
            embedding_dropout=args.embedding_dropout,
            tie_weights=args.tie_weights,
            head=args.head,
            adaptive_cutoffs=tuple(args.adaptive_cutoffs),
        )
        self.model = RNNLanguageModel(self.config).to(self.device)
        if self.dist.enabled:
            torch.manual_seed(args.seed + 1000 * self.dist.rank)  # each process its own dropout masks
        self.optimizer = build_optimizer(args, self.model)
        self.scheduler = build_scheduler(args, self.optimizer)
        self.state = TrainState()
        self.averaging = NonMonotoneAveraging(args.nonmono) if args.optimizer == "ntasgd" else None
        self.embeddings_source: dict | None = None
        if args.pretrained_embeddings and not resumed:
            self.embeddings_source = initialise_embeddings(self.model.embedding, self.corpus.vocab, args.pretrained_embeddings)
        if resumed:
            self.model.load_state_dict(resumed["model"])
            self.optimizer.load_state_dict(resumed["optimizer"])
            if self.scheduler and resumed["scheduler"]:
                self.scheduler.load_state_dict(resumed["scheduler"])
            self.state = TrainState(**resumed["train_state"])
            if self.averaging and resumed.get("averaging"):
                self.averaging.load_state_dict(resumed["averaging"], self.model)
            torch.set_rng_state(resumed["torch_rng"])
            logger.info("resumed from %s at epoch %d, step %d", self.last_path, self.state.epoch, self.state.step)
        self.train_data = batchify(self.corpus.train, args.batch_size)[self.dist.rows(args.batch_size)].to(self.device)
        self.trainable = self.dist.wrap(self.objective(), self.device)

    def normalized_corpus(self) -> CorpusFiles:
        """--data and each --extra-data in the normalisation's form, in the run directory."""
        sources = [(CorpusFiles.find(self.args.data, self.args.valid_fraction), self.args.style)]
        for extra in self.args.extra_data:
            path, _, style = extra.rpartition(":")
            sources.append((CorpusFiles.find(path), style))
        self.normalized_from = [{"style": style, "data": files.provenance()} for files, style in sources]
        logger.info("normalising %d corpora (%s) into %s", len(sources), self.args.text_normalization,
                    self.run_dir / "normalized-corpus")
        return write_normalized_corpus(sources, self.args.text_normalization, self.tokenizer,
                                       self.run_dir / "normalized-corpus")

    def objective(self) -> torch.nn.Module:
        if not self.args.awd:
            return LossModule(self.model)
        return AWDLoss(self.model, awd_regularisation(self.args))

    def evaluated_model(self) -> torch.nn.Module:
        """The weights validation and the export read: NT-ASGD's average once it has begun."""
        return self.averaging.model_for_evaluation(self.model) if self.averaging else self.model

    def make_tokenizer(self) -> Tokenizer:
        # A tokenizer with a file of its own (a piece model) learns it from the training text first.
        if self.tokenizer_config.model_file is None:
            return make_tokenizer(self.tokenizer_config)
        if self.dist.is_main:
            piece_tokenizer(self.tokenizer_config, self.run_dir, self.files, self.args.max_vocab, self.args.piece_model)
        self.dist.barrier()
        return make_tokenizer(self.tokenizer_config, self.run_dir)

    def tokenizer_files(self) -> dict[str, Path]:
        """Files the tokenizer needs beside the weights (the piece model)."""
        name = self.tokenizer_config.model_file
        return {name: self.run_dir / name} if name else {}

    def autocast(self):
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, enabled=self.args.precision == "bf16")

    def checkpoint(self) -> None:
        if self.dist.is_main:
            save_resumable(self.last_path, self.model, self.optimizer, self.scheduler, self.state, self.corpus.vocab, self.averaging)

    def train_epoch(self) -> float | None:
        """One pass (or the rest of one, after a resume); mean training loss, None if stopped early."""
        args, model = self.args, self.model
        model.train()
        state = model.init_state(self.train_data.size(0), self.device)
        total_windows = math.ceil((self.train_data.size(1) - 1) / args.bptt)
        progress = tqdm(
            total=total_windows, initial=self.state.position // args.bptt, desc=f"epoch {self.state.epoch}",
            unit="batch", disable=args.no_progress or not self.dist.is_main, dynamic_ncols=True, file=sys.stderr,
        )
        losses: list[float] = []
        steps_this_epoch = 0
        for position, inputs, targets in windows(self.train_data, args.bptt, self.state.position):
            if args.max_steps is not None and self.state.step >= args.max_steps:
                break
            state = tuple(s.detach() for s in state)
            with self.autocast():
                objective, loss, state = self.trainable(inputs, targets, state)
            self.optimizer.zero_grad(set_to_none=True)
            objective.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip)
            self.optimizer.step()
            if self.averaging:
                self.averaging.after_step(model)
            losses.append(loss.item())
            self.state.step += 1
            self.state.position = position + args.bptt
            steps_this_epoch += 1
            progress.update(1)
            if self.state.step % 10 == 0:
                recent = sum(losses[-10:]) / len(losses[-10:])
                progress.set_postfix(loss=f"{recent:.3f}", ppl=f"{perplexity(recent):.1f}")
            if self.state.step % args.checkpoint_every == 0:
                self.checkpoint()
            if args.max_epoch_steps is not None and steps_this_epoch >= args.max_epoch_steps:
                break
        progress.close()
        return sum(losses) / len(losses) if losses else float("nan")

    def validate(self) -> float:
        loss = stream_loss(self.evaluated_model(), self.corpus.valid, self.args.eval_batch_size, EVAL_BPTT, self.device) if self.dist.is_main else 0.0
        return self.dist.broadcast_float(loss, self.device)

    def export(self, metrics: dict) -> None:
        if not self.dist.is_main:
            return
        provenance = {
            "data": self.files.provenance(),
            **({"normalized_from": self.normalized_from} if self.normalized_from else {}),
            "tokens": {"train": self.corpus.train.numel(), "valid": self.corpus.valid.numel(),
                       "test": None if self.corpus.test is None else self.corpus.test.numel()},
            "epochs": self.state.epoch,
            "steps": self.state.step,
            "seed": self.args.seed,
            "processes": self.dist.world_size,
            "pretrained_embeddings": self.embeddings_source,
            "command": "python -m training.train_lm " + " ".join(self.args.argv),
            "run_dir": str(self.run_dir.resolve()),
            "hyperparameters": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(self.args).items() if k != "argv"},
        }
        with staged_model_directory(self.run_export_dir, replace=True) as staging:
            save_language_model(
                staging, self.evaluated_model().cpu(), self.corpus.vocab,
                with_start_context(self.tokenizer_config, self.corpus),
                {"model_id": self.model_id, **corpus_reading(self.tokenize_raw), "serving_precision": self.args.serving_precision,
                 "provenance": provenance, "metrics": metrics,
                 **({"example_prompt": self.args.example_prompt} if self.args.example_prompt else {})},
                weights_dtype=self.args.weights_dtype, files=self.tokenizer_files(),
            )
        self.evaluated_model().to(self.device)
        if self.args.export_every_improvement:
            self.publish()

    def publish(self) -> None:
        """Copy the run's export to the export directory (when that is another directory)."""
        if self.export_dir.resolve() == self.run_export_dir.resolve():
            return
        # Checked again: a model may have been put there since the run started.
        check_export_target(self.export_dir, self.args.force, self.run_dir)
        copy_model_directory(self.run_export_dir, self.export_dir, replace=True)
        logger.info("exported %s to %s", self.run_export_dir, self.export_dir)

    def run(self) -> dict:
        args = self.args
        metrics_path = self.run_dir / "metrics.csv"
        main_process = self.dist.is_main
        if main_process and not metrics_path.exists():
            with open(metrics_path, "w", newline="") as handle:
                csv.DictWriter(handle, METRIC_FIELDS).writeheader()
        logger.info("model: %s, %d parameters, device %s", self.config, count_parameters(self.model), self.device)
        best_metrics: dict = {}
        while not self.state.done and self.state.epoch <= args.epochs:
            started = time.time()
            train_loss = self.train_epoch()
            stopped_early = args.max_steps is not None and self.state.step >= args.max_steps
            valid_loss = self.validate()
            lr = self.optimizer.param_groups[0]["lr"]
            row = {"epoch": self.state.epoch, "step": self.state.step, "train_loss": round(train_loss, 5),
                   "valid_loss": round(valid_loss, 5), "valid_ppl": round(perplexity(valid_loss), 3),
                   "lr": lr, "seconds": round(time.time() - started, 1)}
            if main_process:
                with open(metrics_path, "a", newline="") as handle:
                    csv.DictWriter(handle, METRIC_FIELDS).writerow(row)
            logger.info("epoch %d: train loss %.4f, valid loss %.4f, valid ppl %.2f", row["epoch"], train_loss, valid_loss, row["valid_ppl"])
            if self.averaging and self.averaging.after_validation(valid_loss, self.model):
                logger.info("epoch %d: validation stopped improving; averaging the weights from here (NT-ASGD)", row["epoch"])
            if valid_loss < self.state.best_valid_loss:
                self.state.best_valid_loss = valid_loss
                self.state.epochs_without_improvement = 0
                best_metrics = {"valid_loss": round(valid_loss, 5), "valid_ppl": round(perplexity(valid_loss), 3), "best_epoch": self.state.epoch}
                self.export(best_metrics)
            else:
                self.state.epochs_without_improvement += 1
            if main_process:
                plot_metrics(metrics_path, self.run_dir / "curves.png", f"{self.model_id}: {self.config.cell} {self.config.num_layers}x{self.config.hidden_dim}")
            if stopped_early:
                # A capped run keeps its place inside the epoch: a later run without the cap
                # (or with a larger one) continues from here.
                self.checkpoint()
                break
            if isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                self.scheduler.step(valid_loss)
            elif self.scheduler is not None:
                self.scheduler.step()
            self.state.epoch += 1
            self.state.position = 0
            if self.state.epochs_without_improvement >= args.patience:
                logger.info("no improvement for %d epochs: stopping", args.patience)
                self.state.done = True
            self.checkpoint()
        return self.finish()

    def finish(self) -> dict:
        """Evaluate the best epoch's export on test, record the final metrics and the spelling
        model in it, then export it to the export directory (rank 0)."""
        if not self.dist.is_main:
            return {}
        config_path = self.run_export_dir / CONFIG_FILE
        if not config_path.exists():
            raise SystemExit("no epoch finished: nothing to export")
        best = load_language_model(self.run_export_dir, self.device)
        config = json.loads(config_path.read_text())
        metrics = dict(config.get("metrics", {}))
        metrics["eval"] = {"batch_size": self.args.eval_batch_size, "bptt": EVAL_BPTT, "unit": self.tokenizer.loss_unit}
        if self.corpus.test is not None and "test_ppl" not in metrics:
            test_loss = stream_loss(best.model, self.corpus.test, self.args.eval_batch_size, EVAL_BPTT, self.device)
            metrics.update(test_loss=round(test_loss, 5), test_ppl=round(perplexity(test_loss), 3))
            if self.tokenizer.reports_word_perplexity and self.files.test is not None:
                # Pieces per word vary with the text: per word, the number compares with word models.
                words = count_words(self.files.test)
                metrics.update(test_words=words, test_word_ppl=word_perplexity(test_loss, self.corpus.test.numel(), words))
        config["metrics"] = metrics
        with staged_model_directory(self.run_export_dir, replace=True) as staging:
            shutil.copytree(self.run_export_dir, staging, dirs_exist_ok=True)
            write_config(staging, config)
            if self.tokenizer.spells_unknown_words and self.args.spelling_order > 0:
                attach_spelling(staging, self.corpus.vocab, self.corpus.train_counts, self.args.spelling_order)
        self.publish()
        logger.info("exported %s: %s", self.export_dir, metrics)
        return metrics


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    args.argv = list(argv) if argv is not None else sys.argv[1:]  # recorded in the export's provenance
    prepare_run(args.run_dir, args.threads)
    trainer = Trainer(args)
    try:
        metrics = trainer.run()
    finally:
        trainer.dist.stop()
    if trainer.dist.is_main:
        print(json.dumps(metrics, indent=2))
    return metrics


if __name__ == "__main__":
    run_cli(main)
