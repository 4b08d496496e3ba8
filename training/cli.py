"""What every training, evaluation and benchmark CLI shares: help that explains every option
and shows its default, user mistakes reported in one line (never a traceback), model arguments
given as a path or a model id, and export directories that are never replaced by accident.

The model library (and with it torch) is imported only where a function needs it, so that
`--help` and the light CLIs (the data fetcher, the HTTP benchmarks) start at once."""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Callable

REPOSITORY_ROOT = Path(__file__).resolve().parent.parent
SHIPPED_MODELS_DIR = REPOSITORY_ROOT / "weights"

# Python's BooleanOptionalAction appends this to its help by itself; the formatter says it in words.
_BOOLEAN_DEFAULT_SUFFIX = " (default: %(default)s)"


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """The description exactly as written (its line breaks and indented example commands kept),
    and after each option's help what happens without it: `(required)`, `(default: VALUE)`, or
    `(default: on|off)` for a flag. An option whose default is None says what that means in its
    own help, as `(default: ...)`, since "None" tells a reader nothing."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if text == argparse.SUPPRESS:
            return text
        text = text.removesuffix(_BOOLEAN_DEFAULT_SUFFIX)
        note = default_note(action)
        if note is None or "default:" in text:
            return text
        return f"{text} ({note})" if text else f"({note})"


def default_note(action: argparse.Action) -> str | None:
    """`required`, `default: ...`, or None when there is nothing to add (help, a required
    positional, a default of None that the help itself explains)."""
    if not action.option_strings:
        if action.required:
            return None  # every plain positional is required; saying so on each is noise
    elif action.required:
        return "required"
    default = action.default
    if default is None or default == argparse.SUPPRESS:
        return None
    if action.nargs == 0 and isinstance(default, bool):  # store_true, store_false, --x/--no-x
        return f"default: {'on' if default else 'off'}"
    return f"default: {format_default(default)}"


def format_default(value: object) -> str:
    """A default as a user would type it: lists space-separated, an empty one as `none`; a
    string whose spaces or line breaks would vanish in the wrapped help, quoted with escapes."""
    if isinstance(value, (list, tuple)):
        text = " ".join(str(item) for item in value) or "none"
    elif isinstance(value, str) and (not value.strip() or value != value.strip() or "\n" in value or "\t" in value):
        text = repr(value)
    else:
        text = str(value)
    return text.replace("%", "%%")  # argparse %-formats help strings


def parser_for(description: str | None) -> argparse.ArgumentParser:
    return argparse.ArgumentParser(description=description, formatter_class=HelpFormatter)


class UsageError(Exception):
    """A mistake in what the user asked for: reported as one line, exit status 2."""


def user_errors() -> tuple[type[BaseException], ...]:
    """What a user's mistake raises on its way out of a CLI: a missing or broken file, a bad value."""
    from models.artifacts import CheckpointError

    return (UsageError, CheckpointError, FileNotFoundError, NotADirectoryError, IsADirectoryError,
            PermissionError, ValueError, json.JSONDecodeError, UnicodeDecodeError)


def run_cli(main: Callable[[], object]) -> None:
    """Run a CLI's main; a user's mistake ends with `error: ...` and status 2."""
    try:
        main()
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        raise SystemExit(130) from None
    except Exception as error:
        if not isinstance(error, user_errors()):
            raise
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2) from None


def model_search_dirs() -> list[Path]:
    """Where a model id is looked up: the service's model directories (RNNSERVE_MODELS_DIR,
    several separated by the path separator), then the shipped models."""
    listed = [Path(part) for part in os.environ.get("RNNSERVE_MODELS_DIR", "").split(os.pathsep) if part]
    return listed + [SHIPPED_MODELS_DIR]


def resolve_model(name: str | Path) -> Path:
    """A model directory given as a path, or as a model id found in the model directories."""
    from models.artifacts import CONFIG_FILE

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
    from models.artifacts import CONFIG_FILE

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


def add_export_options(group, default_dir: str, improvement: str) -> None:
    """The options every trainer shares about its export: where the best model goes when training
    ends, whether it is replaced after every improving epoch, whether an existing model may be
    replaced, and the precision the service computes it in. `default_dir` names the run directory's export, `improvement` what improves."""
    group.add_argument("--export-dir", type=Path, default=None,
                       help=f"where the best model goes when training ends (default: {default_dir}, where every "
                            "improving epoch is exported meanwhile)")
    group.add_argument("--export-every-improvement", action="store_true",
                       help=f"replace the --export-dir model after every epoch that improves {improvement}, not only at the "
                            "end (a server that reloads meanwhile serves that epoch's weights)")
    group.add_argument("--force", action="store_true", help="replace a model already in the export directory")
    group.add_argument("--serving-precision", choices=["fp32", "int8"], default="fp32",
                       help="what the service computes the model in when RNNSERVE_PRECISION is auto, recorded in config.json "
                            "(int8: recurrent and output layers quantized at load on CPU workers; docs/quantization.md)")
