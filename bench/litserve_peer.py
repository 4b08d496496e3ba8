"""The peer: a LitServe server around this project's own model code (`models/`), as a Python
user would write one, in LitServe's two batching modes.

    python -m bench.litserve_peer --model-dir weights/wikitext2-lstm --mode dynamic --port 8100
    python -m bench.litserve_peer --model-dir weights/wikitext2-lstm --mode continuous --port 8100
    python -m bench.litserve_peer --model-dir weights/wikitext2-lstm --mode score --port 8100

dynamic      LitServe's dynamic batcher (`max_batch_size`, `batch_timeout`): a batch of requests
             runs `models.generation.generate` together, until its longest member is done.
continuous   LitServe's continuous-batching loop (streaming): requests join and leave between
             steps; every step prefills the newcomers and advances all live rows by one token
             with the same `prefill` / `decode_step` / `BatchSampler` the service uses.
score        LitServe's dynamic batcher around the service's scoring code: the texts of a batch
             of requests are sorted by length and scored in chunks of `--score-chunk` sequences
             by `score_encoded` (unknown words spelled, as /v1/score does by default).

Requests: POST /predict {"prompt": str, "max_tokens": int, "min_tokens": int, "seed": int | null};
the dynamic server answers {"text", "completion_tokens"}, the continuous one streams JSON lines
{"text"} per token, the last with "finish_reason" and "completion_tokens". Scoring:
POST /predict {"texts": [str, ...]} -> {"results": [{"tokens", "token_logprobs", "logprob", "num_tokens"}, ...]}.
"""
from __future__ import annotations

import argparse
import threading

import litserve as ls
import torch
from litserve.loops.continuous_batching_loop import ContinuousBatchingLoop, Output
from litserve.utils import LitAPIStatus

from models.generation import CompletionTracker, GenerationBatch, generate
from models.registry import load_model
from models.sampling import BatchSampler, SamplingParams
from training.cli import parser_for


def decode(loaded, request: dict) -> tuple[list[int], SamplingParams]:
    params = SamplingParams(strategy="multinomial", max_tokens=int(request["max_tokens"]),
                            min_tokens=int(request.get("min_tokens", 0)), seed=request.get("seed"))
    return loaded.encode_text(request["prompt"], add_start=True).ids, params


class DynamicBatchGeneration(ls.LitAPI):
    def __init__(self, model_dir: str, threads: int | None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.model_dir, self.threads = model_dir, threads

    def setup(self, device) -> None:
        if self.threads:
            torch.set_num_threads(self.threads)
        self.loaded = load_model(self.model_dir, "cpu" if device == "cpu" else device)
        self.device = self.loaded.model.embedding.weight.device

    def decode_request(self, request):
        return decode(self.loaded, request)

    def predict(self, batch):
        if isinstance(batch, tuple):  # max_batch_size 1: one request, not a list
            batch = [batch]
        completions = generate(self.loaded.model, self.loaded.vocab, self.loaded.tokenizer,
                               [prompt for prompt, _ in batch], [params for _, params in batch])
        return [{"text": c.text, "completion_tokens": len(c.token_ids)} for c in completions]

    def unbatch(self, output):
        return output

    def encode_response(self, output):
        return output[0] if isinstance(output, list) and self.max_batch_size == 1 else output


class DynamicBatchScoring(ls.LitAPI):
    def __init__(self, model_dir: str, threads: int | None, chunk: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.model_dir, self.threads, self.chunk = model_dir, threads, chunk

    def setup(self, device) -> None:
        if self.threads:
            torch.set_num_threads(self.threads)
        self.loaded = load_model(self.model_dir, "cpu" if device == "cpu" else device)

    def decode_request(self, request):
        return [self.loaded.encode_text(text, True, True) for text in request["texts"]]

    def predict(self, batch):
        if batch and not isinstance(batch[0], list):  # max_batch_size 1: one request, not a list
            batch = [batch]
        flat = sorted(((r, i, e) for r, encoded in enumerate(batch) for i, e in enumerate(encoded)), key=lambda x: len(x[2].ids))
        results = [[None] * len(encoded) for encoded in batch]
        for start in range(0, len(flat), self.chunk):
            chunk = flat[start : start + self.chunk]
            for (request, index, _), scored in zip(chunk, self.loaded.score_encoded([e for _, _, e in chunk])):
                # What /v1/score answers besides offsets: the tokens and each one's log-probability.
                results[request][index] = {"tokens": scored.tokens, "token_logprobs": [round(x, 6) for x in scored.score.token_logprobs],
                                           "logprob": scored.score.logprob, "num_tokens": scored.score.num_tokens}
        return [{"results": r} for r in results]

    def unbatch(self, output):
        return output

    def encode_response(self, output):
        return output[0] if isinstance(output, list) and self.max_batch_size == 1 else output


class ContinuousGeneration(ls.LitAPI):
    """LitServe's step interface: `add_request` runs on the server's event loop while `step`
    runs on a thread, so newcomers wait in `pending` under a lock until the next step."""

    def __init__(self, model_dir: str, threads: int | None, capacity: int, **kwargs) -> None:
        super().__init__(stream=True, loop=ContinuousBatchingLoop(), **kwargs)
        self.model_dir, self.threads, self.capacity = model_dir, threads, capacity

    def setup(self, device) -> None:
        # Made here, in the worker: LitServe pickles the API object into it.
        self.lock = threading.Lock()
        self.pending: list[tuple[str, dict]] = []
        self.uids: list[str] = []
        self.trackers: list[CompletionTracker] = []
        self.batch: GenerationBatch | None = None
        if self.threads:
            torch.set_num_threads(self.threads)
        self.loaded = load_model(self.model_dir, "cpu" if device == "cpu" else device)
        self.device = self.loaded.model.embedding.weight.device

    def add_request(self, uid: str, request) -> None:
        with self.lock:
            self.pending.append((uid, request))

    def has_capacity(self) -> bool:
        with self.lock:
            return len(self.uids) + len(self.pending) < self.capacity

    def has_active_requests(self) -> bool:
        with self.lock:
            return bool(self.uids or self.pending)

    def _join(self, newcomers: list[tuple[str, dict]]) -> None:
        loaded = self.loaded
        decoded = [decode(loaded, request) for _, request in newcomers]
        sampler = BatchSampler([params for _, params in decoded], len(loaded.vocab), loaded.vocab.unk_id, loaded.vocab.eos_id, self.device)
        batch = GenerationBatch.prefilled(loaded.model, [prompt for prompt, _ in decoded], sampler)
        trackers = [CompletionTracker(params, loaded.vocab, loaded.tokenizer, context=loaded.vocab.decode(prompt)) for prompt, params in decoded]
        self.batch = self.batch.concatenate(batch) if self.uids else batch
        self.uids += [uid for uid, _ in newcomers]
        self.trackers += trackers

    @torch.inference_mode()
    def step(self, prev_outputs) -> list[Output]:
        with self.lock:
            newcomers, self.pending = self.pending, []
        if newcomers:
            self._join(newcomers)
        if not self.uids:
            return []
        generated = torch.tensor([len(t.completion.token_ids) for t in self.trackers], device=self.device)
        chosen = self.batch.choose(generated)
        outputs, keep = [], []
        for row, (uid, tracker, token) in enumerate(zip(self.uids, self.trackers, chosen.tolist())):
            event = {"text": tracker.add(token)}
            if tracker.finished:  # LitServe sends nothing of the finishing output: say it here
                event |= {"finish_reason": tracker.completion.finish_reason, "completion_tokens": len(tracker.completion.token_ids)}
            outputs.append(Output(uid, event, LitAPIStatus.OK))
            if tracker.finished:
                outputs.append(Output(uid, "", LitAPIStatus.FINISH_STREAMING))
            else:
                keep.append(row)
        if len(keep) < len(self.uids):
            self.uids = [self.uids[i] for i in keep]
            self.trackers = [self.trackers[i] for i in keep]
            self.batch = self.batch.filter(keep) if keep else None
            chosen = chosen[torch.tensor(keep, dtype=torch.long, device=self.device)]
        if self.uids:
            self.batch.advance(chosen)
        return outputs

    def encode_response(self, output):
        return output


def build_parser() -> argparse.ArgumentParser:
    parser = parser_for(__doc__)
    parser.add_argument("--model-dir", required=True, help="the model directory to serve")
    parser.add_argument("--mode", choices=["dynamic", "continuous", "score"], required=True,
                        help="which LitServe batching mode (see above)")
    parser.add_argument("--port", type=int, required=True, help="the port to listen on (127.0.0.1)")
    parser.add_argument("--max-batch-size", type=int, default=32, help="LitServe's max_batch_size: requests run together at most")
    parser.add_argument("--batch-timeout", type=float, default=0.02,
                        help="LitServe's batch_timeout: seconds the dynamic batcher waits to fill a batch")
    parser.add_argument("--threads", type=int, default=None, help="torch threads of the worker (default: torch's)")
    parser.add_argument("--accelerator", default="cpu", choices=["cpu", "cuda"], help="where LitServe runs the model")
    parser.add_argument("--score-chunk", type=int, default=64, help="sequences per scoring call (the service's default)")
    return parser


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.mode == "dynamic":
        api = DynamicBatchGeneration(args.model_dir, args.threads, max_batch_size=args.max_batch_size, batch_timeout=args.batch_timeout)
    elif args.mode == "score":
        api = DynamicBatchScoring(args.model_dir, args.threads, args.score_chunk, max_batch_size=args.max_batch_size,
                                  batch_timeout=args.batch_timeout)
    else:
        api = ContinuousGeneration(args.model_dir, args.threads, args.max_batch_size)
    server = ls.LitServer(api, accelerator=args.accelerator, devices=1, workers_per_device=1, timeout=600)
    server.run(host="127.0.0.1", port=args.port, log_level="warning", generate_client_file=False)


if __name__ == "__main__":
    main()
