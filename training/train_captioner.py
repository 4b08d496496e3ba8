r"""Train a CNN+RNN captioner and export the best epoch (by dev CIDEr) as a serving checkpoint.

    python -m training.train_captioner --data ../shared/data/flickr8k --run-dir runs/captioner \
        --export-dir weights/flickr8k-captioner

With a frozen encoder (the default) the CNN features of every image are computed once and
cached in the run directory; `--fine-tune-encoder` trains the encoder too. Each epoch reports
dev BLEU-1..4 and CIDEr with beam search. Re-running the same command resumes. Every epoch
that improves dev CIDEr is exported to RUN_DIR/export/MODEL_ID; the export directory receives
the best one once, when training ends (--export-every-improvement: after every improving
epoch), so a server reloading its models directory meanwhile keeps the previous model.
"""
from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import random
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch.nn import functional as F
from tqdm import tqdm

from models.artifacts import CONFIG_FILE, copy_model_directory, staged_model_directory
from models.captioning.captioner import Captioner, save_captioner
from models.captioning.decoder import CaptionDecoderConfig
from models.captioning.decoding import beam_search
from models.captioning.encoders import EncoderConfig
from models.captioning.images import load_image
from models.cells import CELLS
from models.vocab import Vocabulary
from training.caption_data import CaptionedImage, build_vocab, caption_tokens, encode_captions, read_coco, read_flickr8k
from training.caption_metrics import caption_scores
from training.cli import add_export_options, check_export_target, parser_for, run_cli
from training.run_setup import prepare_run

logger = logging.getLogger("training.train_captioner")
FIELDS = ["epoch", "step", "train_loss", "bleu1", "bleu2", "bleu3", "bleu4", "cider", "seconds"]


def build_parser() -> argparse.ArgumentParser:
    p = parser_for(__doc__)
    d = p.add_argument_group("data")
    d.add_argument("--data", type=Path,
                   help="Flickr8k-layout directory (text/ and images/) (default: none; give it, or the three COCO options)")
    d.add_argument("--coco-train", type=Path,
                   help="COCO caption JSON for training, with --coco-dev and --images-dir (default: none)")
    d.add_argument("--coco-dev", type=Path, help="COCO caption JSON scored after each epoch (default: none)")
    d.add_argument("--images-dir", type=Path, help="the directory the COCO files name their images in (default: none)")
    d.add_argument("--min-count", type=int, default=5, help="vocabulary: words seen at least this often in train")
    d.add_argument("--max-caption-tokens", type=int, default=30, help="longer training captions are cut to this many words")
    m = p.add_argument_group("model")
    m.add_argument("--encoder", default="efficientnet_lite0", help="efficientnet_lite0, vgg16, resnet18, resnet50, small_cnn")
    m.add_argument("--no-pretrained", action="store_true", help="random encoder initialisation")
    m.add_argument("--image-size", type=int, default=224, help="images are resized to this many pixels square")
    m.add_argument("--fine-tune-encoder", action="store_true",
                   help="train the CNN too (slower: features cannot be cached; see --encoder-lr)")
    m.add_argument("--embedding-dim", type=int, default=256, help="width of the decoder's word vectors")
    m.add_argument("--hidden-dim", type=int, default=512, help="units in the decoder's recurrent layer")
    m.add_argument("--attention-dim", type=int, default=256, help="0 disables attention")
    m.add_argument("--cell", choices=list(CELLS), default="lstm", help="the decoder's recurrent cell (models.cells)")
    m.add_argument("--conditioning", choices=["init", "per_step", "both"], default="both",
                   help="how the image reaches the decoder: its initial state, a term in every step, or both")
    m.add_argument("--dropout", type=float, default=0.5, help="dropout in the decoder")
    o = p.add_argument_group("optimisation")
    o.add_argument("--batch-size", type=int, default=64, help="captions per training step")
    o.add_argument("--lr", type=float, default=4e-4, help="learning rate of the decoder")
    o.add_argument("--encoder-lr", type=float, default=1e-4, help="learning rate of a pretrained encoder being fine-tuned")
    o.add_argument("--attention-reg", type=float, default=1.0, help="doubly stochastic attention weight")
    o.add_argument("--clip", type=float, default=5.0, help="gradient norm clipping")
    o.add_argument("--epochs", type=int, default=15, help="passes over the training captions at most")
    o.add_argument("--patience", type=int, default=3, help="epochs without a better dev CIDEr before stopping")
    o.add_argument("--max-steps", type=int, default=None, help="stop after this many steps, for smoke tests (default: no limit)")
    r = p.add_argument_group("run")
    r.add_argument("--run-dir", type=Path, required=True,
                   help="where checkpoints, cached features, metrics and the log go; running again resumes from it")
    add_export_options(r, "RUN_DIR/export/captioner", "dev CIDEr")
    r.add_argument("--eval-beam-size", type=int, default=3, help="beam width of the captions scored after each epoch")
    r.add_argument("--eval-images", type=int, default=None,
                   help="score only the first N dev images each epoch (default: every dev image)")
    r.add_argument("--weights-dtype", choices=["float32", "float16"], default="float32",
                   help="how the exported weights are stored (float16: half the size)")
    r.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:N")
    r.add_argument("--seed", type=int, default=1234, help="random seed (initialisation, dropout, batch order)")
    r.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    r.add_argument("--no-progress", action="store_true", help="no progress bars (logs only)")
    return p


def parse_args(argv=None) -> argparse.Namespace:
    p = build_parser()
    args = p.parse_args(argv)
    if not args.data and not (args.coco_train and args.coco_dev and args.images_dir):
        p.error("give --data, or --coco-train, --coco-dev and --images-dir")
    return args


def load_splits(args) -> tuple[list[CaptionedImage], list[CaptionedImage], dict]:
    if args.data:
        splits = read_flickr8k(args.data)
        source = {"format": "flickr8k", "path": str(args.data)}
        return splits["train"], splits["dev"], source
    source = {"format": "coco", "train": str(args.coco_train), "dev": str(args.coco_dev)}
    return read_coco(args.coco_train, args.images_dir), read_coco(args.coco_dev, args.images_dir), source


@torch.inference_mode()
def cached_features(encoder, images: list[CaptionedImage], path: Path, size: int, device, progress: bool) -> torch.Tensor:
    """(num_images, N, F) float16 features, computed once and kept in `path`."""
    if path.exists():
        stored = load_file(str(path))
        if stored["ids"].tolist() == [hash_id(i.image_id) for i in images]:
            return stored["features"]
    encoder.eval()
    chunks = []
    for start in tqdm(range(0, len(images), 32), desc="encoding images", disable=not progress, file=sys.stderr):
        batch = torch.stack([load_image(image.path, size) for image in images[start : start + 32]]).to(device)
        chunks.append(encoder(batch).half().cpu())
    features = torch.cat(chunks)
    save_file({"features": features.contiguous(), "ids": torch.tensor([hash_id(i.image_id) for i in images])}, str(path))
    return features


def hash_id(image_id: str) -> int:
    import hashlib

    return int.from_bytes(hashlib.sha256(image_id.encode()).digest()[:7], "big")


class CaptionTrainer:
    def __init__(self, args) -> None:
        self.args = args
        self.device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else ("cpu" if args.device == "auto" else args.device))
        self.run_dir = args.run_dir
        self.run_dir.mkdir(parents=True, exist_ok=True)
        # Improving epochs are exported inside the run directory, the export directory (often
        # in a models directory a server reloads) gets the best once training ends.
        self.run_export_dir = self.run_dir / "export" / (args.export_dir.name if args.export_dir else "captioner")
        self.export_dir = args.export_dir or self.run_export_dir
        check_export_target(self.export_dir, args.force, self.run_dir)
        random.seed(args.seed)
        torch.manual_seed(args.seed)
        self.train_images, self.dev_images, self.source = load_splits(args)
        if args.eval_images:
            self.dev_images = self.dev_images[: args.eval_images]
        self.last_path = self.run_dir / "last.pt"
        resumed = torch.load(self.last_path, map_location="cpu", weights_only=True) if self.last_path.exists() else None
        self.vocab = Vocabulary(list(resumed["vocab_tokens"])) if resumed else build_vocab(self.train_images, args.min_count)
        self.encoder_config = EncoderConfig(args.encoder, not args.no_pretrained, args.image_size)
        self.model = Captioner(self.encoder_config, CaptionDecoderConfig(
            vocab_size=len(self.vocab), feature_dim=self._feature_dim(), embedding_dim=args.embedding_dim,
            hidden_dim=args.hidden_dim, attention_dim=args.attention_dim, conditioning=args.conditioning, dropout=args.dropout,
            cell=args.cell,
        )).to(self.device)
        # An encoder that starts random must learn (and ships in the checkpoint).
        self.train_encoder = args.fine_tune_encoder or not self.encoder_config.pretrained
        groups = [{"params": self.model.decoder.parameters(), "lr": args.lr}]
        if self.train_encoder:
            groups.append({"params": self.model.encoder.parameters(), "lr": args.encoder_lr if self.encoder_config.pretrained else args.lr})
        self.optimizer = torch.optim.Adam(groups)
        self.state = {"epoch": 1, "step": 0, "best_cider": -1.0, "stale": 0}
        if resumed:
            self.model.load_state_dict(resumed["model"])
            self.optimizer.load_state_dict(resumed["optimizer"])
            self.state = dict(resumed["state"])
            logger.info("resumed at epoch %d", self.state["epoch"])
        self.pairs = encode_captions(self.train_images, self.vocab, args.max_caption_tokens)
        self.references = {image.image_id: [" ".join(caption_tokens(c)) for c in image.captions] for image in self.dev_images}
        self.train_features = self.dev_features = None
        self._pixels: dict[int, torch.Tensor] = {}
        if not self.train_encoder:
            name = f"features-{args.encoder}-{args.image_size}"
            self.train_features = cached_features(self.model.encoder, self.train_images, self.run_dir / f"{name}-train.safetensors", args.image_size, self.device, not args.no_progress)
            self.dev_features = cached_features(self.model.encoder, self.dev_images, self.run_dir / f"{name}-dev.safetensors", args.image_size, self.device, not args.no_progress)

    def _feature_dim(self) -> int:
        from models.captioning.encoders import build_encoder

        return build_encoder(EncoderConfig(self.args.encoder, False, self.args.image_size)).feature_dim

    def features_for(self, images: list[CaptionedImage], indices: list[int], cached: torch.Tensor | None) -> torch.Tensor:
        if cached is not None:
            return cached[indices].to(self.device).float()
        return self.model.encode(self.pixels(images)[indices].to(self.device))

    def pixels(self, images: list[CaptionedImage]) -> torch.Tensor:
        """All images of a split decoded once, as uint8 (N, 3, S, S): fine-tuning reads them every epoch."""
        key = id(images)
        if key not in self._pixels:
            self._pixels[key] = torch.stack([load_image(image.path, self.args.image_size) for image in images])
        return self._pixels[key]

    def train_epoch(self) -> float:
        args = self.args
        self.model.train()
        if not self.train_encoder:
            self.model.encoder.eval()
        order = list(range(len(self.pairs)))
        random.Random(args.seed + self.state["epoch"]).shuffle(order)
        losses = []
        batches = range(0, len(order), args.batch_size)
        for start in tqdm(batches, desc=f"epoch {self.state['epoch']}", disable=args.no_progress, file=sys.stderr):
            chunk = [self.pairs[i] for i in order[start : start + args.batch_size]]
            features = self.features_for(self.train_images, [image for image, _ in chunk], self.train_features)
            captions = torch.nn.utils.rnn.pad_sequence([ids for _, ids in chunk], batch_first=True, padding_value=self.vocab.pad_id).to(self.device)
            logits, alphas = self.model.decoder(features, captions)
            targets = captions[:, 1:]
            loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1), ignore_index=self.vocab.pad_id)
            if alphas is not None and args.attention_reg:
                mask = (targets != self.vocab.pad_id).unsqueeze(2).float()
                loss = loss + args.attention_reg * ((1.0 - (alphas * mask).sum(dim=1)) ** 2).mean()
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), args.clip)
            self.optimizer.step()
            losses.append(loss.item())
            self.state["step"] += 1
            if args.max_steps and self.state["step"] >= args.max_steps:
                break
        return sum(losses) / max(len(losses), 1)

    @torch.inference_mode()
    def evaluate(self, beam_size: int) -> dict:
        self.model.eval()
        hypotheses = {}
        for start in range(0, len(self.dev_images), 50):
            indices = list(range(start, min(start + 50, len(self.dev_images))))
            features = self.features_for(self.dev_images, indices, self.dev_features)
            results = beam_search(self.model.decoder, features, self.vocab.bos_id, self.vocab.eos_id, beam_size, banned_ids=(self.vocab.unk_id,))
            for index, captions in zip(indices, results):
                hypotheses[self.dev_images[index].image_id] = " ".join(self.vocab.decode(captions[0].token_ids))
        # Plain floats: the state that holds the best score is reloaded with weights_only=True.
        return {key: round(float(value), 4) for key, value in caption_scores(self.references, hypotheses).items()}

    def checkpoint(self) -> None:
        temporary = self.last_path.with_suffix(".tmp")
        torch.save({"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(), "state": self.state,
                    "vocab_tokens": self.vocab.tokens}, temporary)
        os.replace(temporary, self.last_path)

    def export(self, metrics: dict) -> None:
        extra = {"model_id": self.export_dir.name, "serving_precision": self.args.serving_precision, "metrics": metrics,
                 "provenance": {"data": self.source, "train_images": len(self.train_images), "dev_images": len(self.dev_images),
                                "epochs": self.state["epoch"], "seed": self.args.seed,
                                "command": "python -m training.train_captioner " + " ".join(sys.argv[1:]),
                                "run_dir": str(self.run_dir.resolve())}}
        with staged_model_directory(self.run_export_dir, replace=True) as staging:
            save_captioner(staging, self.model, self.vocab, extra, include_encoder=self.train_encoder, weights_dtype=self.args.weights_dtype)
        if self.args.export_every_improvement:
            self.publish()

    def publish(self) -> None:
        """Copy the run's export to the export directory (when that is another directory)."""
        if self.export_dir.resolve() == self.run_export_dir.resolve() or not (self.run_export_dir / CONFIG_FILE).is_file():
            return
        # Checked again: a model may have been put there since the run started.
        check_export_target(self.export_dir, self.args.force, self.run_dir)
        copy_model_directory(self.run_export_dir, self.export_dir, replace=True)
        logger.info("exported %s to %s", self.run_export_dir, self.export_dir)

    def run(self) -> dict:
        args = self.args
        metrics_path = self.run_dir / "metrics.csv"
        if not metrics_path.exists():
            with open(metrics_path, "w", newline="") as handle:
                csv.DictWriter(handle, FIELDS).writeheader()
        best: dict = {}
        while self.state["epoch"] <= args.epochs and self.state["stale"] < args.patience:
            started = time.time()
            train_loss = self.train_epoch()
            scores = self.evaluate(args.eval_beam_size)
            row = {"epoch": self.state["epoch"], "step": self.state["step"], "train_loss": round(train_loss, 4), **scores, "seconds": round(time.time() - started, 1)}
            with open(metrics_path, "a", newline="") as handle:
                csv.DictWriter(handle, FIELDS).writerow(row)
            logger.info("epoch %d: %s", self.state["epoch"], row)
            if scores["cider"] > self.state["best_cider"]:
                self.state.update(best_cider=scores["cider"], stale=0)
                best = {f"dev_{k}": v for k, v in scores.items()} | {"best_epoch": self.state["epoch"], "eval": f"beam {args.eval_beam_size}"}
                self.export(best)
            else:
                self.state["stale"] += 1
            self.state["epoch"] += 1
            self.checkpoint()
            plot(metrics_path, self.run_dir / "curves.png")
            if args.max_steps and self.state["step"] >= args.max_steps:
                break
        self.publish()
        return best


def plot(metrics_csv: Path, output: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = list(csv.DictReader(open(metrics_csv)))
    epochs = [int(r["epoch"]) for r in rows]
    figure, (loss_axis, score_axis) = plt.subplots(1, 2, figsize=(10, 4))
    loss_axis.plot(epochs, [float(r["train_loss"]) for r in rows], marker="o")
    loss_axis.set(xlabel="epoch", ylabel="train loss", title="loss")
    for key in ("bleu1", "bleu4", "cider"):
        score_axis.plot(epochs, [float(r[key]) for r in rows], marker="o", label=key)
    score_axis.set(xlabel="epoch", title="dev scores")
    score_axis.legend()
    figure.tight_layout()
    figure.savefig(output, dpi=100)
    plt.close(figure)


def main(argv=None) -> dict:
    args = parse_args(argv)
    prepare_run(args.run_dir, args.threads)
    best = CaptionTrainer(args).run()
    print(json.dumps(best, indent=2))
    return best


if __name__ == "__main__":
    run_cli(main)
