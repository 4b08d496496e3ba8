"""Tune n-best rescoring on a dev set and measure word error rates.

    python -m training.tune_rescoring --nbest runs/nbest/ptb-dev.jsonl --model ptb-kn5 --model wikitext2-lstm \\
        --eval runs/nbest/ptb-test.jsonl --output runs/nbest/ptb-weights.json

Each hypothesis is scored by every model (natural-log probability from the start token through
the end token, unknown words spelled, exactly as `/v1/rescore` scores it), then the language
model weights, the weights of the named scores the file's hypotheses carry (`scores`) and the
word insertion penalty are chosen by coordinate search over grids to minimise dev WER, the
acoustic weight staying 1 (`models.rescoring` combines them). With those weights the posterior
scale is chosen on a grid: by default to maximise the normalised cross entropy (NCE) of the dev
word confidences, that is to minimise their cross entropy, the way temperature scaling
calibrates a classifier (`--scale-objective nce`); `--scale-objective mbr` instead minimises the
dev WER of the minimum-Bayes-risk decision (`models.confidence`; `training.rescoring_metrics`).

Each model reads the hypotheses (and contexts) in the form its training text was in, as
`/v1/rescore` gives them to it (`text_normalization` in its config.json; `--no-normalize`: as
the file has them).

Reported for dev and each --eval file: the WER of the recogniser's first pass (its first
hypothesis), of the rescored best (MAP), of the minimum-Bayes-risk decision (MBR), and of the
oracle (the hypothesis with the fewest errors), as NeMo's rescorer reports them; the NCE of the
MAP decision's word confidences, and the WER when only its words with confidence at or above
each of CONFIDENCE_THRESHOLDS are kept. WER comes from jiwer. `--url http://host:port` scores
through a running service's /v1/rescore instead of loading the models here; the numbers are the
same.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import asdict
from pathlib import Path

import httpx
import jiwer
from tqdm import tqdm

from models.confidence import agreeing_hypotheses, confidences_from, expected_errors, mbr_choice, posteriors
from models.interpolation import Tokenization, check_weights, incompatibility, mix
from models.registry import is_language_model, load_model
from models.rescoring import RescoringWeights, in_model_form, recorded_normalization, rescore_list
from models.text_normalization import NONE
from training.cli import UsageError, parser_for, resolve_model, run_cli
from training.nbest_files import NBestList, read_nbest
from training.rescoring_metrics import correct_words, filtered_wer, normalised_cross_entropy

# Grids wide enough for recognisers whose acoustic scores are hundreds of nats per utterance
# (pocketsphinx's LM weight is 6.5 on its own scale).
LM_WEIGHTS = (0.0, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0, 10.0, 12.0, 16.0, 24.0, 32.0, 48.0, 64.0, 96.0, 128.0)
# Named scores (a second acoustic model, a CTC score, the recogniser's own language model score)
# start at 0 in one search and at 1 in the other, so tuning can only gain on them; negative
# weights subtract a score.
NAMED_WEIGHTS = (-4.0, -2.0, -1.0, -0.5, -0.25, 0.0, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 8.0, 16.0, 32.0, 64.0)
PENALTIES = (-400.0, -200.0, -100.0, -50.0, -30.0, -20.0, -10.0, -5.0, -3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 30.0, 50.0, 100.0, 200.0, 400.0)
BATCH = 64
# Scores are compared at the precision the service returns them with.
DECIMALS = 6
# Posterior scales tried (10^-6 to 10, four a decade): combined scores of hundreds of nats need
# small ones for the posteriors to be anything but 0 and 1.
POSTERIOR_SCALES = tuple(10 ** (k / 4) for k in range(-24, 5))
CONFIDENCE_THRESHOLDS = (0.3, 0.5, 0.7, 0.9)

Scores = dict[str, list[list[float]]]  # model id -> per n-best list, per hypothesis


MIXTURE = "linear"  # the per-token mixture's name among the models' scores


def score_in_process(lists: list[NBestList], model_names: list[str], unknown_words: str, mixture: list[float] | None = None,
                     normalize: bool = True) -> Scores:
    scores: Scores = {}
    token_logprobs: list[list[list[float]]] = []  # per model, per hypothesis (for a mixture)
    loaded_models = []
    forms = []
    for name in model_names:
        loaded = load_model(resolve_model(name), "cpu")
        if not is_language_model(loaded.model_type):
            raise UsageError(f"{name} is a {loaded.model_type}, not a language model")
        # As /v1/rescore: each model reads the hypotheses in its training text's form.
        form = recorded_normalization(loaded.config.get("tokenizer") or {}) if normalize else NONE
        forms.append(form)
        flat = [(in_model_form([h.text], form)[0], in_model_form([nbest.context], form)[0])
                for nbest in lists for h in nbest.hypotheses]
        values: list[float] = []
        per_token: list[list[float]] = []
        for start in tqdm(range(0, len(flat), BATCH), desc=f"scoring with {loaded.model_id}", file=sys.stderr, leave=False):
            encoded = [loaded.encode_text(text, True, True, context) for text, context in flat[start : start + BATCH]]
            for result in loaded.score_encoded(encoded, unknown_words):
                values.append(round(result.score.logprob, DECIMALS))
                per_token.append([round(v, DECIMALS) for v in result.score.token_logprobs])
        scores[name] = _regroup(lists, values)
        token_logprobs.append(per_token)
        loaded_models.append(loaded)
    if mixture is not None:
        check_mixture(loaded_models, mixture)
        if len(set(forms)) > 1:
            raise UsageError(f"--mix: the models read text in different forms ({', '.join(forms)}), so cannot mix per token; "
                             "mix models of one form, or leave out --mix")
        mixed = [round(float(mix(list(rows), mixture).sum()), DECIMALS) for rows in zip(*token_logprobs)]
        scores = {MIXTURE: _regroup(lists, mixed)}
    return scores


def check_mixture(models: list, weights: list[float]) -> None:
    if len(weights) != len(models):
        raise UsageError(f"--mix gives {len(weights)} weights for {len(models)} models")
    try:
        check_weights(weights)
    except ValueError as error:
        raise UsageError(f"--mix: {error}") from error
    for other in models[1:]:
        why = incompatibility(Tokenization.of(models[0]), Tokenization.of(other))
        if why:
            raise UsageError(f"{other.model_id} cannot be mixed per token with {models[0].model_id}: {why}")


def score_through_service(lists: list[NBestList], model_names: list[str], unknown_words: str, url: str,
                          mixture: list[float] | None = None, normalize: bool = True) -> Scores:
    names = [MIXTURE] if mixture is not None else model_names
    per_model: dict[str, list[float]] = {name: [] for name in names}
    with httpx.Client(base_url=url.rstrip("/"), timeout=600) as client:
        for start in tqdm(range(0, len(lists), 32), desc="scoring through the service", file=sys.stderr, leave=False):
            weights = mixture or [1.0] * len(model_names)
            body = {"models": [{"model": name, "weight": w} for name, w in zip(model_names, weights)], "acoustic_weight": 0.0,
                    "unknown_words": unknown_words, "normalize": normalize, "interpolation": "linear" if mixture is not None else "loglinear",
                    "utterances": [{"id": n.id, "context": n.context, "hypotheses": [{"text": h.text} for h in n.hypotheses]}
                                   for n in lists[start : start + 32]]}
            response = client.post("/v1/rescore", json=body)
            if response.status_code != 200:
                raise UsageError(f"{url}/v1/rescore answered {response.status_code}: {response.text[:300]}")
            for result in response.json()["results"]:
                for hypothesis in result["hypotheses"]:
                    for name in names:
                        per_model[name].append(hypothesis["lm_logprobs"][name])
    return {name: _regroup(lists, values) for name, values in per_model.items()}


def _regroup(lists: list[NBestList], values: list[float]) -> list[list[float]]:
    grouped, position = [], 0
    for nbest in lists:
        grouped.append(values[position : position + len(nbest.hypotheses)])
        position += len(nbest.hypotheses)
    return grouped


def combine(lists: list[NBestList], scores: Scores, weights: RescoringWeights) -> list[tuple[list[float], list[int]]]:
    """Per list, each hypothesis's combined score and the ranking, best first."""
    combined = []
    for index, nbest in enumerate(lists):
        lm = [{m: scores[m][index][j] for m in weights.lm_weights} for j in range(len(nbest.hypotheses))]
        totals, _, order = rescore_list([h.text for h in nbest.hypotheses], [h.acoustic_score for h in nbest.hypotheses], lm,
                                        weights, [h.scores for h in nbest.hypotheses])
        combined.append((totals, order))
    return combined


def choose(lists: list[NBestList], scores: Scores, weights: RescoringWeights) -> list[str]:
    return [nbest.hypotheses[order[0]].text for nbest, (_, order) in zip(lists, combine(lists, scores, weights))]


def named_score_names(lists: list[NBestList]) -> list[str]:
    return sorted(lists[0].hypotheses[0].scores)


def wer(lists: list[NBestList], hypotheses: list[str]) -> float:
    return jiwer.wer([n.reference for n in lists], hypotheses)


def oracle(lists: list[NBestList]) -> list[str]:
    """Per list, the hypothesis with the fewest word errors (the first of equals)."""
    return [min(n.hypotheses, key=lambda h: jiwer.process_words(n.reference, h.text).wer * len(n.reference.split())).text
            for n in lists]


def tune(lists: list[NBestList], scores: Scores, rounds: int = 4) -> tuple[RescoringWeights, float]:
    """Coordinate search from two starts, the better on the set kept (the first of equals): each
    language model at 1 and the named scores at 0, and, when the hypotheses carry named scores
    (the recogniser's own language model score), those at 1 and the language models at 0, where
    the search starts from the recogniser's own combination."""
    names, named_names = list(scores), named_score_names(lists)
    starts = [({name: 1.0 for name in names}, {name: 0.0 for name in named_names})]
    if named_names:
        starts.append(({name: 0.0 for name in names}, {name: 1.0 for name in named_names}))
    results = [coordinate_search(lists, scores, lm, named, rounds) for lm, named in starts]
    return min(results, key=lambda result: result[1])


def coordinate_search(lists: list[NBestList], scores: Scores, current: dict[str, float], named: dict[str, float],
                      rounds: int) -> tuple[RescoringWeights, float]:
    """Each LM weight, named score weight and the penalty in turn over its grid, until no change helps."""
    names = list(scores)
    penalty = 0.0
    best = wer(lists, choose(lists, scores, RescoringWeights(current, 1.0, penalty, named)))
    for _ in range(rounds):
        improved = False
        for name in names:
            for value in LM_WEIGHTS:
                trial = RescoringWeights({**current, name: value}, 1.0, penalty, named)
                result = wer(lists, choose(lists, scores, trial))
                if result < best - 1e-12:
                    best, current, improved = result, dict(trial.lm_weights), True
        for name in list(named):
            for value in NAMED_WEIGHTS:
                trial = RescoringWeights(current, 1.0, penalty, {**named, name: value})
                result = wer(lists, choose(lists, scores, trial))
                if result < best - 1e-12:
                    best, named, improved = result, dict(trial.score_weights), True
        for value in PENALTIES:
            result = wer(lists, choose(lists, scores, RescoringWeights(current, 1.0, value, named)))
            if result < best - 1e-12:
                best, penalty, improved = result, value, True
        if not improved:
            break
    return RescoringWeights(current, 1.0, penalty, named), best


class Decisions:
    """A set's lists under fixed weights: the MAP choice, and what the posterior scale changes
    (posteriors, the MAP words' confidences, the MBR choice)."""

    def __init__(self, lists: list[NBestList], scores: Scores, weights: RescoringWeights) -> None:
        self.lists, self.combined = lists, combine(lists, scores, weights)
        self.word_lists = [[h.text.split() for h in nbest.hypotheses] for nbest in lists]
        self.best = [order[0] for _, order in self.combined]
        self.agreeing = [agreeing_hypotheses(best, words) for best, words in zip(self.best, self.word_lists)]
        self.correct = [correct_words(words[best], nbest.reference.split())
                        for best, words, nbest in zip(self.best, self.word_lists, self.lists)]

    def confidences(self, scale: float) -> list[list[float]]:
        return [confidences_from(agreeing, posteriors(totals, scale)) for agreeing, (totals, _) in zip(self.agreeing, self.combined)]

    def nce(self, scale: float) -> float | None:
        return normalised_cross_entropy([c for row in self.confidences(scale) for c in row],
                                        [ok for row in self.correct for ok in row])

    def mbr(self, scale: float) -> list[str]:
        chosen = []
        for nbest, words, (totals, order) in zip(self.lists, self.word_lists, self.combined):
            chosen.append(nbest.hypotheses[mbr_choice(expected_errors(words, posteriors(totals, scale)), order)].text)
        return chosen


def tune_posterior_scale(decisions: Decisions, objective: str = "nce") -> float:
    """nce: the scale whose MAP word confidences have the highest NCE on the set; mbr: the one whose
    MBR decision has the lowest WER, of equals the highest NCE. The first of equals on the grid;
    1 when NCE is undefined (every chosen word right, or none)."""
    candidates = []
    for scale in POSTERIOR_SCALES:
        nce = decisions.nce(scale)
        error = wer(decisions.lists, decisions.mbr(scale)) if objective == "mbr" else 0.0
        candidates.append((error, -math.inf if nce is None else -nce, scale))
    if objective == "nce" and all(nce == -math.inf for _, nce, _ in candidates):
        return 1.0
    return min(candidates, key=lambda row: row[:2])[2]


def report(name: str, lists: list[NBestList], scores: Scores, weights: RescoringWeights, posterior_scale: float = 1.0) -> dict:
    decisions = Decisions(lists, scores, weights)
    confidences = decisions.confidences(posterior_scale)
    chosen = [words[best] for words, best in zip(decisions.word_lists, decisions.best)]
    nce = decisions.nce(posterior_scale)
    filtered = []
    flat = [(c, ok) for row, oks in zip(confidences, decisions.correct) for c, ok in zip(row, oks)]
    for threshold in CONFIDENCE_THRESHOLDS:
        result, kept = filtered_wer([n.reference for n in lists], chosen, confidences, threshold)
        right = [ok for c, ok in flat if c >= threshold]
        filtered.append({"threshold": threshold, "wer": round(result, 4), "words_kept": round(kept, 4),
                         "kept_correct": round(sum(right) / len(right), 4) if right else None})
    return {"file": name, "utterances": len(lists),
            "first_pass_wer": round(wer(lists, [n.hypotheses[0].text for n in lists]), 4),
            "rescored_wer": round(wer(lists, [n.hypotheses[best].text for n, best in zip(lists, decisions.best)]), 4),
            "mbr_wer": round(wer(lists, decisions.mbr(posterior_scale)), 4),
            "oracle_wer": round(wer(lists, oracle(lists)), 4),
            "nce": None if nce is None else round(nce, 4),
            "words_correct": round(sum(ok for _, ok in flat) / len(flat), 4) if flat else None,
            "confidence_filtered": filtered,
            "mean_hypotheses": round(sum(len(n.hypotheses) for n in lists) / len(lists), 2)}


def print_tables(rows: list[dict]) -> None:
    print("| file | utterances | first pass WER | rescored (MAP) WER | MBR WER | oracle WER |")
    print("|---|---:|---:|---:|---:|---:|")
    for row in rows:
        print(f"| {row['file']} | {row['utterances']} | {row['first_pass_wer']:.4f} | {row['rescored_wer']:.4f} | "
              f"{row['mbr_wer']:.4f} | {row['oracle_wer']:.4f} |")
    print()
    thresholds = " | ".join(f"confidence ≥ {t:g}: WER (kept, right)" for t in CONFIDENCE_THRESHOLDS)
    print(f"| file | NCE | chosen words correct | {thresholds} |")
    print("|---|---:|---:|" + "---:|" * len(CONFIDENCE_THRESHOLDS))
    for row in rows:
        nce = "n/a" if row["nce"] is None else f"{row['nce']:.4f}"
        right = "n/a" if row["words_correct"] is None else f"{row['words_correct']:.0%}"
        cells = " | ".join(f"{f['wer']:.4f} ({f['words_kept']:.0%}, {'n/a' if f['kept_correct'] is None else format(f['kept_correct'], '.0%')} right)"
                           for f in row["confidence_filtered"])
        print(f"| {row['file']} | {nce} | {right} | {cells} |")


def build_parser() -> argparse.ArgumentParser:
    parser = parser_for(__doc__)
    parser.add_argument("--nbest", type=Path, required=True, help="dev n-best file (JSON lines with references)")
    parser.add_argument("--model", action="append", required=True, help="a language or n-gram model id or directory (repeat)")
    parser.add_argument("--eval", type=Path, action="append", default=[], help="n-best files to report with the tuned weights")
    parser.add_argument("--output", type=Path, default=None,
                        help="write the weights and WERs as JSON here (default: printed only)")
    parser.add_argument("--url", default=None,
                        help="score through this running service instead of in process (default: load the models here)")
    parser.add_argument("--unknown-words", choices=["spell", "unk"], default="spell",
                        help="score a word outside the vocabulary with the spelling model (spell) or as <unk> alone (unk)")
    parser.add_argument("--normalize", action=argparse.BooleanOptionalAction, default=True,
                        help="put each hypothesis in the form its model's training text was in (config.json's "
                             "text_normalization), as /v1/rescore does; --no-normalize scores the text as the file has it")
    parser.add_argument("--mix", default=None, metavar="W1,W2,...",
                        help="mix the models per token with these weights (summing to 1) into one language model, "
                             "instead of combining them log-linearly (default: log-linear, weights tuned)")
    parser.add_argument("--scale-objective", choices=["nce", "mbr"], default="nce",
                        help="choose the posterior scale for the NCE of dev's word confidences (nce) or for dev's MBR WER (mbr)")
    return parser


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    mixture = None
    if args.mix is not None:
        try:
            mixture = [float(w) for w in args.mix.split(",")]
        except ValueError as error:
            raise UsageError(f"--mix {args.mix}: give comma-separated weights") from error

    def scores_for(lists: list[NBestList]) -> Scores:
        if args.url:
            return score_through_service(lists, args.model, args.unknown_words, args.url, mixture, args.normalize)
        return score_in_process(lists, args.model, args.unknown_words, mixture, args.normalize)

    dev = read_nbest(args.nbest, need_reference=True)
    dev_scores = scores_for(dev)
    weights, _ = tune(dev, dev_scores)
    scale = tune_posterior_scale(Decisions(dev, dev_scores, weights), args.scale_objective)
    results = {"models": args.model, "mix": mixture, "normalize": args.normalize, "weights": asdict(weights), "posterior_scale": scale,
               "scale_objective": args.scale_objective,
               "unknown_words": args.unknown_words, "dev": report(str(args.nbest), dev, dev_scores, weights, scale)}
    results["eval"] = []
    for path in args.eval:
        lists = read_nbest(path, need_reference=True)
        if named_score_names(lists) != named_score_names(dev):
            raise UsageError(f"{path} carries the named scores {named_score_names(lists)}, the dev file "
                             f"{named_score_names(dev)}; the tuned weights apply to the dev file's")
        results["eval"].append(report(str(path), lists, scores_for(lists), weights, scale))
    print_tables([results["dev"], *results["eval"]])
    chosen_for = "the NCE of dev's confidences" if args.scale_objective == "nce" else "dev's MBR WER"
    print(f"weights: {json.dumps(results['weights'])}; posterior scale {scale:.4g} (chosen for {chosen_for})")
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return results


if __name__ == "__main__":
    run_cli(main)
