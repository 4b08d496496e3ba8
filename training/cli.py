"""What every training and evaluation CLI shares: help that shows defaults, user mistakes
reported in one line (never a traceback), model arguments given as a path or a model id, and
export directories that are never replaced by accident."""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Callable

from models.artifacts import CONFIG_FILE, CheckpointError

REPOSITORY_ROOT = Path(__file__).resolve().parent.parent
SHIPPED_MODELS_DIR = REPOSITORY_ROOT / "weights"


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """The module docstring as written, and every option's default."""


def parser_for(description: str | None) -> argparse.ArgumentParser:
    return argparse.ArgumentParser(description=description, formatter_class=HelpFormatter)


class UsageError(Exception):
    """A mistake in what the user asked for: reported as one line, exit status 2."""


# What a user's mistake raises on its way out of a CLI: a missing or broken file, a bad value.
USER_ERRORS = (UsageError, CheckpointError, FileNotFoundError, NotADirectoryError, IsADirectoryError,
               PermissionError, ValueError, json.JSONDecodeError, UnicodeDecodeError)


def run_cli(main: Callable[[], object]) -> None:
    """Run a CLI's main; a user's mistake ends with `error: ...` and status 2."""
    try:
        main()
    except USER_ERRORS as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        raise SystemExit(130) from None


def model_search_dirs() -> list[Path]:
    """Where a model id is looked up: the service's model directories (RNNSERVE_MODELS_DIR,
    several separated by the path separator), then the shipped models."""
    listed = [Path(part) for part in os.environ.get("RNNSERVE_MODELS_DIR", "").split(os.pathsep) if part]
    return listed + [SHIPPED_MODELS_DIR]


def resolve_model(name: str | Path) -> Path:
    """A model directory given as a path, or as a model id found in the model directories."""
    path = Path(name)
    if (path / CONFIG_FILE).is_file():
        return path
    if path.exists():
        raise UsageError(f"{path} is not a model directory (it has no {CONFIG_FILE})")
    if len(path.parts) == 1:
        for directory in model_search_dirs():
            if (directory / path / CONFIG_FILE).is_file():
                return directory / path
    searched = ", ".join(str(d) for d in model_search_dirs())
    raise UsageError(f"no model {str(name)!r}: not a model directory, nor a model id in {searched}")


def check_export_target(directory: Path, force: bool, run_dir: Path | None = None) -> None:
    """Refuse to replace a model directory another run (or a person) put there, unless
    `force`. A run may re-export into the directory it exported to before (resuming)."""
    config_path = directory / CONFIG_FILE
    if force or not config_path.is_file():
        return
    if run_dir is not None:
        try:
            owner = json.loads(config_path.read_text(encoding="utf-8")).get("provenance", {}).get("run_dir")
        except (OSError, ValueError, AttributeError):
            owner = None
        if owner == str(run_dir.resolve()):
            return
    raise UsageError(f"{directory} already holds a model; choose another export directory, or pass --force to replace it")
