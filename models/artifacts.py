"""The serving artifact, whatever the model type: one directory per model holding config.json,
vocab.json, model.safetensors and any companion files (a spelling model, a piece model).
Reading and writing it, checksums and revisions. Nothing here unpickles.

`models.registry` maps each ``model_type`` to its loader.
"""
from __future__ import annotations

import glob
import hashlib
import json
import logging
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import torch
from safetensors.torch import load_file, save_file

from models.spelling import SPELLING_FILE
from models.tokenizers import TokenizerConfig, make_tokenizer, text_start
from models.tokenizers.pieces import PIECE_MODEL_FILE
from models.vocab import Vocabulary

FORMAT_VERSION = 1
CONFIG_FILE, VOCAB_FILE, WEIGHTS_FILE = "config.json", "vocab.json", "model.safetensors"
WEIGHT_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
# A model directory is written under a hidden name beside its target and renamed into place
# (`staged_model_directory`); the replaced one is renamed aside before it is removed. Names
# starting with "." are never models (`model_directories_in`).
STAGING_INFIX, RETIRED_INFIX = ".tmp-", ".old-"

logger = logging.getLogger(__name__)


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
    files' when it has any (a spelling model added later changes the scores, so the revision),
    and with its start context when that is more than the start token (config.json changes the
    scores there without changing a file)."""
    directory = Path(directory)
    weights = file_sha256(directory / WEIGHTS_FILE)
    companions = [file_sha256(directory / name) for name in COMPANION_FILES if (directory / name).is_file()]
    start = start_context_of(directory)
    parts = companions + ([json.dumps(start, ensure_ascii=False)] if start is not None else [])
    if not parts:
        return weights
    return hashlib.sha256(":".join([weights, *parts]).encode()).hexdigest()


def start_context_of(directory: Path) -> list[str] | None:
    """The tokens the model in `directory` reads every text after, when they are not just its
    start token; None for a model that reads no text or starts from its start token alone."""
    path = directory / CONFIG_FILE
    if not path.is_file():
        return None
    settings = json.loads(path.read_text(encoding="utf-8")).get("tokenizer")
    if not isinstance(settings, dict):
        return None
    try:
        config = TokenizerConfig.from_json(settings)
    except TypeError as error:
        raise CheckpointError(f"{path}: bad tokenizer settings ({error})") from error
    vocab = Vocabulary.load(directory / VOCAB_FILE)
    recorded = config.start_context
    known = recorded is None or all(isinstance(token, str) and token in vocab for token in recorded)
    if recorded == () or not known:
        raise CheckpointError(f"{path}: start_context {list(recorded)!r} needs at least one token, all in vocab.json")
    start = text_start(config, vocab)
    return None if start == (config.start_token,) else list(start)


def read_config(directory: str | Path) -> dict[str, Any]:
    path = Path(directory) / CONFIG_FILE
    if not path.is_file():
        raise CheckpointError(f"{path} not found")
    config = json.loads(path.read_text(encoding="utf-8"))
    if config.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path}: unsupported format_version {config.get('format_version')!r}")
    return config


def model_directories_in(models_dir: str | Path) -> list[Path]:
    """The model directories directly inside a models directory, by name: sub-directories that
    hold a config.json, except hidden ones (an export still being written, or a replaced model
    on its way out)."""
    return sorted(path for path in Path(models_dir).iterdir() if not path.name.startswith(".") and (path / CONFIG_FILE).is_file())


def _check_replaceable(target: Path, replace: bool) -> None:
    if not target.exists() and not target.is_symlink():
        return
    if not target.is_dir():
        raise CheckpointError(f"{target} exists and is not a directory")
    if not any(target.iterdir()):
        return  # an empty directory holds nothing to lose
    if not (target / CONFIG_FILE).is_file():
        # Replacing means deleting: never a directory of other files named by mistake.
        raise CheckpointError(f"{target} holds files but no model ({CONFIG_FILE}); remove it or choose another directory")
    if not replace:
        raise CheckpointError(f"{target} already holds a model")


@contextmanager
def staged_model_directory(target: str | Path, replace: bool = False) -> Iterator[Path]:
    """Write a model directory so that nobody ever sees part of one: yields a new, empty,
    hidden directory beside `target` (`.NAME.tmp-XXXX`: the same file system, so a rename
    moves it) to write the whole model into; when the block ends normally it is renamed to
    `target`, replacing the model there if `replace` (otherwise a model there is refused).
    An exception, an interruption included, removes it and leaves `target` as it was.

    Replacing renames the old model aside, the new one in, then removes the old one: a scan of
    the models directory in between misses the model for that moment, never sees half of one."""
    target = Path(target)
    _check_replaceable(target, replace)
    target.parent.mkdir(parents=True, exist_ok=True)
    prefix = f".{target.name}{STAGING_INFIX}"
    leftovers = sorted(path.name for path in target.parent.glob(f"{glob.escape(prefix)}*"))
    if leftovers:
        logger.warning("%s holds %s: left by a killed export of %s (or one still running); remove them once none runs",
                       target.parent, ", ".join(leftovers), target.name)
    staging = Path(tempfile.mkdtemp(prefix=prefix, dir=target.parent))
    try:
        yield staging
        make_world_readable(staging)  # mkdtemp makes the directory 0700
        _move_into_place(staging, target, replace, retired=target.with_name(f".{target.name}{RETIRED_INFIX}{staging.name[len(prefix):]}"))
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _move_into_place(staging: Path, target: Path, replace: bool, retired: Path) -> None:
    _check_replaceable(target, replace)  # again: another writer may have finished meanwhile
    if not target.exists() and not target.is_symlink():
        os.rename(staging, target)
        return
    os.rename(target, retired)
    try:
        os.rename(staging, target)
    except BaseException:
        os.rename(retired, target)
        raise
    if retired.is_symlink():
        retired.unlink()  # the target was a link to a model: the link goes, not what it named
    else:
        shutil.rmtree(retired, ignore_errors=True)


def copy_model_directory(source: str | Path, target: str | Path, replace: bool = False) -> Path:
    """Copy a model directory to `target` the way every export is written (`staged_model_directory`)."""
    with staged_model_directory(target, replace) as staging:
        shutil.copytree(source, staging, dirs_exist_ok=True)
    return Path(target)


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
