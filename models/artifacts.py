"""The serving artifact, whatever the model type: one directory per model holding config.json,
vocab.json, model.safetensors and any companion files (a spelling model, a piece model).
Reading and writing it, checksums and revisions. Nothing here unpickles.

`models.registry` maps each ``model_type`` to its loader.
"""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from models.spelling import SPELLING_FILE
from models.tokenizers import TokenizerConfig, make_tokenizer
from models.tokenizers.pieces import PIECE_MODEL_FILE
from models.vocab import Vocabulary

FORMAT_VERSION = 1
CONFIG_FILE, VOCAB_FILE, WEIGHTS_FILE = "config.json", "vocab.json", "model.safetensors"
WEIGHT_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


class CheckpointError(ValueError):
    """A model directory is missing a file or holds something inconsistent."""


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# Files beside the weights that change a model's answers: a spelling model (which may be added
# later) and a piece model.
COMPANION_FILES = (SPELLING_FILE, PIECE_MODEL_FILE)


def model_revision(directory: str | Path) -> str:
    """What cache keys name a model by: the sha256 of its weights, combined with its companion
    files' when it has any (a spelling model added later changes the scores, so the revision)."""
    directory = Path(directory)
    weights = file_sha256(directory / WEIGHTS_FILE)
    companions = [file_sha256(directory / name) for name in COMPANION_FILES if (directory / name).is_file()]
    if not companions:
        return weights
    return hashlib.sha256(":".join([weights, *companions]).encode()).hexdigest()


def read_config(directory: str | Path) -> dict[str, Any]:
    path = Path(directory) / CONFIG_FILE
    if not path.is_file():
        raise CheckpointError(f"{path} not found")
    config = json.loads(path.read_text(encoding="utf-8"))
    if config.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path}: unsupported format_version {config.get('format_version')!r}")
    return config


def write_model_directory(directory: str | Path, config: dict[str, Any], vocab: Vocabulary, write_weights,
                          files: dict[str, Path] | None = None) -> Path:
    """Write a serving artifact: `write_weights(path)` writes model.safetensors, then the
    vocabulary and `files` (name -> source, e.g. a piece model), then config.json last, so a
    directory with a config is a complete model."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    write_weights(directory / WEIGHTS_FILE)
    vocab.save(directory / VOCAB_FILE)
    for name, source in (files or {}).items():
        shutil.copyfile(source, directory / name)
    write_config(directory, config)
    make_world_readable(directory)
    return directory


def write_config(directory: str | Path, config: dict[str, Any]) -> None:
    path = Path(directory) / CONFIG_FILE
    path.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    path.chmod(0o644)


def make_world_readable(directory: str | Path) -> None:
    """Files 0644, directories 0755: a model is mounted into containers whose service runs as
    another (non-root) user, and some writers (safetensors) create files 0600."""
    directory = Path(directory)
    directory.chmod(0o755)
    for path in directory.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)


def save_weights(module: torch.nn.Module, path: Path, dtype: str = "float32", skip: frozenset[str] = frozenset()) -> None:
    """Write a module's tensors as safetensors, floating tensors in `dtype`, leaving out the
    names in `skip` (the second name of a tied weight)."""
    target = WEIGHT_DTYPES[dtype]
    tensors = {
        name: (tensor.to(target) if tensor.is_floating_point() else tensor).detach().cpu().contiguous()
        for name, tensor in module.state_dict().items()
        if name not in skip
    }
    save_file(tensors, str(path))


def load_weights(module: torch.nn.Module, path: Path, tied: frozenset[str] = frozenset()) -> None:
    """Load safetensors weights into `module` in its own dtype; only the tied names may be absent."""
    tensors = load_file(str(path))
    own = module.state_dict()
    for name, tensor in tensors.items():
        if name in own and tensor.is_floating_point():
            tensors[name] = tensor.to(own[name].dtype)
    try:
        missing, unexpected = module.load_state_dict(tensors, strict=False)
    except RuntimeError as error:  # shapes that differ from the architecture's
        raise CheckpointError(f"{path}: weights do not match the architecture ({str(error).splitlines()[-1].strip()})") from error
    if set(missing) - tied or unexpected:
        raise CheckpointError(f"{path}: weights do not match the architecture (missing {sorted(set(missing) - tied)}, unexpected {sorted(unexpected)})")


def load_tokenizer(directory: Path, config: TokenizerConfig):
    try:
        return make_tokenizer(config, directory)
    except (OSError, ValueError, RuntimeError) as error:
        raise CheckpointError(f"{directory}: cannot load its tokenizer ({error})") from error
