"""Offline training, evaluation and export CLIs for rnnserve models."""
import sys
from importlib.util import find_spec

# The `train` extra in pyproject.toml: the service's install (`make serve`, `pip install .`)
# leaves these out. Checked here, once, so that a CLI stops before it starts rather than at the
# end of a run (the plots are drawn last).
TRAIN_DEPENDENCIES = ("tqdm", "matplotlib", "pycocoevalcap", "jiwer", "httpx")

_missing = [name for name in TRAIN_DEPENDENCIES if find_spec(name) is None]
if _missing:
    _message = (f"the training CLIs need {', '.join(_missing)}, which the service's install leaves out: "
                "pip install -e '.[train]' (or make install-train)")
    if sys.argv[:1] == ["-m"]:  # `python -m training.<cli>` while the package is imported
        raise SystemExit(f"error: {_message}")
    raise ImportError(_message, name=__name__)
