"""Caption work inside a worker: images of several requests go through the encoder together,
then each request is decoded with its own strategy (beam search, or sampling rows)."""
from __future__ import annotations

import numpy as np
import torch

from app.engine.messages import JobResult, TaskJob
from models.captioning.captioner import LoadedCaptioner
from models.captioning.decoding import beam_search, sample_captions
from models.sampling import BEAM


@torch.inference_mode()
def run_caption_batch(models: dict, jobs: list[TaskJob], emit, config=None) -> list[int]:
    """Returns the encoder batch sizes used."""
    sizes = []
    by_model: dict[str, list[TaskJob]] = {}
    for job in jobs:
        by_model.setdefault(job.request.model_id, []).append(job)
    for model_id, model_jobs in by_model.items():
        loaded: LoadedCaptioner = models[model_id]
        device = next(loaded.model.parameters()).device
        pixels = torch.stack([
            torch.from_numpy(np.frombuffer(job.request.pixels, dtype=np.uint8).reshape(3, job.request.size, job.request.size).copy())
            for job in model_jobs
        ]).to(device)
        features = loaded.model.encode(pixels)  # (B, N, F), one encoder pass for all requests
        sizes.append(len(model_jobs))
        vocab = loaded.vocab
        for index, job in enumerate(model_jobs):
            request = job.request
            image_features = features[index : index + 1]
            if request.params[0].strategy == BEAM:
                beam = request.params[0]
                (captions,) = beam_search(loaded.model.decoder, image_features, vocab.bos_id, vocab.eos_id, beam.beam_size,
                                          beam.max_tokens, n_best=request.n, banned_ids=(vocab.unk_id,),
                                          no_repeat_ngram_size=request.no_repeat_ngram_size)
            else:
                captions = sample_captions(loaded.model.decoder, image_features.expand(len(request.params), -1, -1),
                                           request.params, vocab.bos_id, vocab.eos_id, vocab.unk_id)
                captions.sort(key=lambda c: (not c.finished, -c.ranking_score()))  # best first, like beam search
            emit(JobResult(job.request_id, [(loaded.caption_text(c.token_ids, c.finished), c.logprob, c.ranking_score(), c.finished) for c in captions]))
    return sizes
