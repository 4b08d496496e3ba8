"""BLEU-1..4 and CIDEr-D with pycocoevalcap's scorers (the COCO caption evaluation code; pure
Python, no Java). Hypotheses and references are tokenized alike beforehand (see
caption_data.caption_tokens)."""
from __future__ import annotations

import contextlib
import io

from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider


def caption_scores(references: dict[str, list[str]], hypotheses: dict[str, str]) -> dict[str, float]:
    """references: image id -> tokenized reference strings; hypotheses: image id -> one string."""
    gts = {key: references[key] for key in hypotheses}
    res = {key: [hypotheses[key] or "<empty>"] for key in hypotheses}
    with contextlib.redirect_stdout(io.StringIO()):  # the scorers print their progress
        bleu, _ = Bleu(4).compute_score(gts, res)
        cider, _ = Cider().compute_score(gts, res)
    return {"bleu1": bleu[0], "bleu2": bleu[1], "bleu3": bleu[2], "bleu4": bleu[3], "cider": cider}
