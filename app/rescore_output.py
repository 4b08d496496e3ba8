"""The result of one rescored utterance: every hypothesis with its score and posterior, the
decision (MAP or MBR, models.confidence) with its words' confidences and times, and those words
as NIST CTM lines when asked."""
from __future__ import annotations

from app.rescore_schemas import Utterance
from models.confidence import decide

# The precision scores, posteriors and confidences are returned with.
DECIMALS = 6


def ctm_lines(utterance_id: str, words: list[dict]) -> str:
    """`<id> 1 <start> <duration> <word> <confidence>` per word (channel 1), a newline after each."""
    return "".join(f"{utterance_id} 1 {w['start']:.3f} {w['end'] - w['start']:.3f} {w['word']} {w['confidence']:.4f}\n"
                   for w in words)


def utterance_result(utterance: Utterance, lm: list[dict[str, float]], scores: list[float], num_words: list[int],
                     ranking: list[int], posterior_scale: float, decision: str, ctm: bool) -> dict:
    hypotheses = utterance.hypotheses
    chosen = decide([h.text for h in hypotheses], scores, ranking, posterior_scale, decision)
    timed = hypotheses[chosen.best].words
    words = [{"word": word, "confidence": round(confidence, DECIMALS)}
             | ({"start": timed[i].start, "end": timed[i].end} if timed is not None else {})
             for i, (word, confidence) in enumerate(zip(hypotheses[chosen.best].text.split(), chosen.confidences))]
    rescored = [{"text": h.text, "acoustic_score": h.acoustic_score, "lm_logprobs": lm[j], "num_words": num_words[j],
                 "scores": h.scores, "score": round(scores[j], DECIMALS), "posterior": chosen.posteriors[j],
                 "expected_errors": None if chosen.expected_errors is None else round(chosen.expected_errors[j], DECIMALS)}
                for j, h in enumerate(hypotheses)]
    result = {"id": utterance.id, "best": chosen.best, "ranking": ranking, "words": words, "hypotheses": rescored}
    if ctm:
        result["ctm"] = ctm_lines(utterance.id, words)
    return result
