"""Training really learns: a tiny captioner on synthetic shapes names colour and shape."""
import csv
import json

import pytest
import torch

from models.captioning.captioner import load_captioner
from models.captioning.decoding import beam_search, sample_captions
from models.captioning.images import load_image
from models.sampling import SamplingParams
from training import evaluate_captioner
from training.caption_data import read_flickr8k


def test_training_learns_colour_and_shape(shapes_captioner, shapes_dir):
    export, run_dir = shapes_captioner
    loaded = load_captioner(export)
    dev = read_flickr8k(shapes_dir)["dev"]
    images = torch.stack([load_image(image.path, loaded.image_size) for image in dev])
    with torch.inference_mode():
        features = loaded.model.encode(images)
    captions = beam_search(loaded.model.decoder, features, loaded.vocab.bos_id, loaded.vocab.eos_id, beam_size=1)
    correct = 0
    for image, (best,) in zip(dev, captions):
        words = loaded.vocab.decode(best.token_ids)
        colour, shape = image.captions[0].split()[1:3]
        correct += colour in words and shape in words
    assert correct / len(dev) > 0.6  # chance is 1/9
    rows = list(csv.DictReader(open(run_dir / "metrics.csv")))
    assert float(rows[-1]["bleu1"]) > 0.5
    config = json.loads((export / "config.json").read_text())
    assert config["model_type"] == "captioner" and config["encoder_weights"] == "checkpoint"
    assert config["metrics"]["dev_cider"] > 0


def test_beam_size_one_equals_argmax(shapes_captioner, shapes_dir):
    loaded = load_captioner(shapes_captioner[0])
    dev = read_flickr8k(shapes_dir)["dev"][:10]
    features = loaded.model.encode(torch.stack([load_image(i.path, loaded.image_size) for i in dev]))
    beams = beam_search(loaded.model.decoder, features, loaded.vocab.bos_id, loaded.vocab.eos_id, beam_size=1, max_tokens=8)
    greedy = sample_captions(loaded.model.decoder, features, [SamplingParams(strategy="argmax", max_tokens=8, min_tokens=1)] * len(dev),
                             loaded.vocab.bos_id, loaded.vocab.eos_id, loaded.vocab.unk_id)
    for (beam,), argmax in zip(beams, greedy):
        assert beam.token_ids == argmax.token_ids
        assert beam.logprob == pytest.approx(argmax.logprob, abs=1e-4)


def test_n_best_is_sorted_and_distinct(shapes_captioner, shapes_dir):
    loaded = load_captioner(shapes_captioner[0])
    image = read_flickr8k(shapes_dir)["dev"][0]
    features = loaded.model.encode(load_image(image.path, loaded.image_size).unsqueeze(0))
    (n_best,) = beam_search(loaded.model.decoder, features, loaded.vocab.bos_id, loaded.vocab.eos_id, beam_size=5, n_best=3)
    assert len(n_best) == 3 and len({tuple(c.token_ids) for c in n_best}) == 3
    assert all(c.token_ids for c in n_best)


def test_evaluate_captioner_cli(shapes_captioner, shapes_dir, capsys):
    results = evaluate_captioner.main([str(shapes_captioner[0]), "--data", str(shapes_dir), "--split", "dev", "--strategies", "argmax", "beam3"])
    assert set(results) == {"argmax", "beam3"}
    assert all(0 <= r["bleu4"] <= 1 and r["cider"] >= 0 for r in results.values())


def test_coco_format_is_read_and_trains(tmp_path, shapes_dir):
    from training.caption_data import read_coco
    from training.train_captioner import main as train

    splits = read_flickr8k(shapes_dir)
    for split in ("train", "dev"):
        images = splits[split][:20]
        payload = {"images": [{"id": i, "file_name": image.image_id} for i, image in enumerate(images)],
                   "annotations": [{"id": 10 * i + n, "image_id": i, "caption": caption}
                                   for i, image in enumerate(images) for n, caption in enumerate(image.captions)]}
        (tmp_path / f"captions_{split}.json").write_text(json.dumps(payload))
    read = read_coco(tmp_path / "captions_train.json", shapes_dir / "images")
    assert len(read) == 20 and read[0].captions == splits["train"][0].captions
    best = train(["--coco-train", str(tmp_path / "captions_train.json"), "--coco-dev", str(tmp_path / "captions_dev.json"),
                  "--images-dir", str(shapes_dir / "images"), "--encoder", "small_cnn", "--image-size", "32", "--embedding-dim", "8",
                  "--hidden-dim", "16", "--attention-dim", "0", "--conditioning", "per_step", "--min-count", "1", "--epochs", "1",
                  "--run-dir", str(tmp_path / "run"), "--export-dir", str(tmp_path / "coco-captioner"), "--no-progress"])
    assert "dev_bleu4" in best
    assert load_captioner(tmp_path / "coco-captioner").model.decoder.image_input is not None  # the seed's per-step term


@pytest.mark.parametrize("cell", ["gru", "peephole"])
def test_the_decoder_takes_any_registered_cell(tmp_path, shapes_dir, cell):
    """`train_captioner --cell` builds the decoder on a cell of models.cells (the state keeps
    the cell's tuple-of-tensors convention); the export loads and captions by beam search."""
    from training.train_captioner import main as train

    train(["--data", str(shapes_dir), "--encoder", "small_cnn", "--image-size", "32", "--embedding-dim", "8",
           "--hidden-dim", "16", "--attention-dim", "8", "--min-count", "1", "--epochs", "1", "--cell", cell,
           "--run-dir", str(tmp_path / "run"), "--export-dir", str(tmp_path / "captioner"), "--no-progress"])
    loaded = load_captioner(tmp_path / "captioner")
    assert loaded.model.decoder.config.cell == cell
    pixels = torch.zeros(1, 3, 32, 32, dtype=torch.uint8)
    captions = beam_search(loaded.model.decoder, loaded.model.encode(pixels), loaded.vocab.bos_id, loaded.vocab.eos_id,
                           beam_size=2, max_tokens=5)
    assert captions


def test_a_retrain_writes_its_export_directory_when_it_ends(tmp_path, shapes_dir, monkeypatch):
    """The improving epochs go to the run directory; the export directory (a served models
    directory's) gets the best one when training ends, so a reload meanwhile keeps its model."""
    from training.train_captioner import CaptionTrainer
    from training.train_captioner import main as train

    run_dir, models_dir = tmp_path / "run", tmp_path / "models"
    args = ["--data", str(shapes_dir), "--encoder", "small_cnn", "--image-size", "32", "--embedding-dim", "8",
            "--hidden-dim", "16", "--attention-dim", "0", "--min-count", "1", "--batch-size", "128", "--epochs", "2", "--eval-images", "10",
            "--run-dir", str(run_dir), "--export-dir", str(models_dir / "shapes"), "--no-progress"]
    train_epoch = CaptionTrainer.train_epoch

    def stopped_in_the_second_epoch(self):
        if self.state["epoch"] == 2:
            raise KeyboardInterrupt  # the person running it stops it
        return train_epoch(self)

    with monkeypatch.context() as patch:
        patch.setattr(CaptionTrainer, "train_epoch", stopped_in_the_second_epoch)
        with pytest.raises(KeyboardInterrupt):
            train(args)
    assert json.loads((run_dir / "export" / "shapes" / "config.json").read_text())["metrics"]["best_epoch"] == 1
    assert not models_dir.exists() or list(models_dir.iterdir()) == []
    train(args)  # resumes in epoch 2 and ends
    assert load_captioner(models_dir / "shapes").model_id == "shapes"
    assert [p.name for p in models_dir.iterdir()] == ["shapes"]
