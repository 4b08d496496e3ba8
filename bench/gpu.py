"""The GPU run as one prepared script: a few minutes on a CUDA machine, everything written to
one folder (the device tool's $OUT).

    .venv/bin/python -m bench.gpu --device cuda --output-dir "$OUT"
    .venv/bin/python -m bench.gpu --device cpu --quick --output-dir /tmp/gpu-check   # the same steps, tiny

Steps, each a table in the output folder:
  1. models: the shipped word and character models, and a 2x650 LSTM with the word model's
     vocabulary and random weights (speed does not depend on training);
  2. the roofline of a decode step on the device (bench.roofline);
  3. the peer table on the device (bench.peers: rnnserve and LitServe, same weights), the
     ceiling of its ratio from step costs alone, and both schedules run for real in one
     process (bench.batching_ceiling);
  4. bf16 against fp32: per-token log-probabilities of WikiText-2 validation sentences with the
     embedding and the recurrent layers in bfloat16 (the output layer in float32), the largest
     difference and the perplexity change, so bf16 serving is only recommended where scores
     stay within 1e-3;
  5. CUDA graphs: one decode step (cell and output layer) captured once per batch size and
     replayed, against the same step run eagerly: time per step and the largest logit
     difference, to decide whether the engine should replay graphs (on the CPU it says why
     there is nothing to measure).
"""
from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import torch

from bench import batching_ceiling, peers, roofline
from models.checkpoint import load_language_model, save_language_model
from models.rnn_lm import LanguageModelConfig, RNNLanguageModel
from models.scoring import score_sequences
from training.cli import parser_for

ROOT = Path(__file__).resolve().parent.parent
VALID = ROOT.parent / "shared" / "data" / "wikitext-2" / "valid.txt"


def build_models(directory: Path, hidden: int) -> list[str]:
    """The shipped models plus a wide LSTM (2 x `hidden`, adaptive head) with random weights."""
    directory.mkdir(parents=True, exist_ok=True)
    for name in ("wikitext2-lstm", "shakespeare-char-lstm"):
        if not (directory / name).exists():
            shutil.copytree(ROOT / "weights" / name, directory / name)
    word = load_language_model(ROOT / "weights" / "wikitext2-lstm")
    config = LanguageModelConfig(vocab_size=len(word.vocab), embedding_dim=hidden, hidden_dim=hidden, num_layers=2, cell="lstm",
                                 dropout=0.5, head="adaptive", adaptive_cutoffs=tuple(word.model.config.adaptive_cutoffs))
    wide = f"wikitext2-2x{hidden}-random"
    torch.manual_seed(0)
    save_language_model(directory / wide, RNNLanguageModel(config).eval(), word.vocab, word.tokenizer.config,
                        {"model_id": wide, "example_prompt": "The game was released in"})
    return ["wikitext2-lstm", "shakespeare-char-lstm", wide]


def bf16_against_fp32(model_dir: Path, device: torch.device, sentences: int) -> dict:
    loaded = load_language_model(model_dir, device)
    lines = [line.strip() for line in VALID.read_text().splitlines() if len(line.split()) > 5][:sentences]
    sequences = [loaded.encode_text(line, True, True).ids for line in lines]
    with torch.inference_mode():
        exact = score_sequences(loaded.model, sequences)
        # The recurrent part in bfloat16, the output layer in float32 (it reads its input as
        # float32; torch's adaptive softmax does not run under autocast).
        model = loaded.model
        for part in (model.embedding, model.rnn, model.projection):
            if part is not None:
                part.to(torch.bfloat16)
        try:
            low = score_sequences(model, sequences)
        except RuntimeError as error:  # oneDNN has no bfloat16 LSTM on many CPUs
            return {"model": model_dir.name, "unsupported": str(error).splitlines()[0]}
    differences = [abs(a - b) for e, l in zip(exact, low) for a, b in zip(e.token_logprobs, l.token_logprobs)]
    tokens = len(differences)
    nll = lambda scores: -sum(sum(s.token_logprobs) for s in scores) / tokens
    return {"model": model_dir.name, "tokens": tokens, "max_abs_logprob_difference": max(differences),
            "mean_abs_logprob_difference": sum(differences) / tokens,
            "perplexity_fp32": float(torch.tensor(nll(exact)).exp()), "perplexity_bf16": float(torch.tensor(nll(low)).exp())}


def cuda_graph_steps(model_dir: Path, device: torch.device, batches: list[int], repeats: int) -> list[dict]:
    """Eager decode steps against the same step captured as a CUDA graph and replayed."""
    if device.type != "cuda":
        return [{"model": model_dir.name, "unsupported": "CUDA graphs need a CUDA device"}]
    model = load_language_model(model_dir, device).model.eval()
    rows = []
    for batch in batches:
        generator = torch.Generator(device=device).manual_seed(batch)
        tokens = torch.randint(0, model.config.vocab_size, (batch,), device=device, generator=generator)
        state = tuple(torch.randn(s.shape, device=device, generator=generator) * 0.1 for s in model.init_state(batch, device))
        try:
            static_tokens, static_state = tokens.clone(), tuple(s.clone() for s in state)
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):  # warm-up off the capture stream, as torch.cuda.graphs asks
                for _ in range(3):
                    model.step(static_tokens, static_state)
            torch.cuda.current_stream().wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                static_logits, _ = model.step(static_tokens, static_state)
            eager_logits, _ = model.step(tokens, state)
            static_tokens.copy_(tokens)
            graph.replay()
            torch.cuda.synchronize(device)
            difference = (static_logits.float() - eager_logits.float()).abs().max().item()

            def timed(run) -> float:
                for _ in range(3):
                    run()
                torch.cuda.synchronize(device)
                started = time.perf_counter()
                for _ in range(repeats):
                    run()
                torch.cuda.synchronize(device)
                return (time.perf_counter() - started) / repeats

            eager_s = timed(lambda: model.step(tokens, state))
            graph_s = timed(lambda: (static_tokens.copy_(tokens), graph.replay()))
            rows.append({"model": model_dir.name, "batch": batch, "eager_ms": eager_s * 1e3, "graph_ms": graph_s * 1e3,
                         "speedup": eager_s / graph_s, "max_abs_logit_difference": difference})
        except RuntimeError as error:  # a capture that fails is a result too, not the end of the run
            rows.append({"model": model_dir.name, "batch": batch, "unsupported": str(error).splitlines()[0]})
    return rows


def cuda_graph_table(rows: list[dict]) -> str:
    lines = ["| model | batch | eager ms/step | graph ms/step | eager ÷ graph | max abs logit Δ |", "|---|---:|---:|---:|---:|---:|"]
    for row in rows:
        if "unsupported" in row:
            lines.append(f"| {row['model']} | {row.get('batch', '')} | {row['unsupported']} | | | |")
        else:
            lines.append(f"| {row['model']} | {row['batch']} | {row['eager_ms']:.3f} | {row['graph_ms']:.3f} | "
                         f"{row['speedup']:.2f}× | {row['max_abs_logit_difference']:.1e} |")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = parser_for(__doc__)
    parser.add_argument("--device", default="cuda", help="the device measured: cuda, cuda:N, or cpu to check the script")
    parser.add_argument("--output-dir", type=Path, required=True, help="the folder every table is written to ($OUT)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: check the script, not the machine")
    return parser


def main(argv: list[str] | None = None) -> dict:
    parser = build_parser()
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("error: no CUDA device here (run with --device cpu --quick to check the script)")
    out = args.output_dir
    out.mkdir(parents=True, exist_ok=True)
    label = "gpu" if device.type == "cuda" else "cpu-check"
    models_dir = out / "models"
    models = build_models(models_dir, hidden=32 if args.quick else 650)
    report: dict = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"}
    batches = ["1", "8"] if args.quick else ["1", "8", "64", "256", "1024"]
    report["roofline"] = roofline.main(["--models", *models, "--models-dir", str(models_dir), "--device", args.device,
                                        "--batch-sizes", *batches, "--repeats", "3" if args.quick else "20",
                                        "--label", label, "--output-dir", str(out)])
    peer_models = [models[0]] if args.quick else [models[0], models[2]]
    report["batching_ceiling"] = batching_ceiling.main(
        ["--models", *peer_models, "--models-dir", str(models_dir), "--device", args.device, "--label", label, "--output-dir", str(out),
         *(["--concurrency", "2", "--requests-per-client", "3", "--batch-sizes", "1", "2", "--max-batch-size", "2",
            "--dynamic-batch-sizes", "2", "--repeats", "2", "--measured-rounds", "1", "--measured-requests-per-client", "2"] if args.quick
           else ["--concurrency", "8", "32", "128", "256", "--measured-rounds", "2",
                 "--batch-sizes", "1", "2", "4", "8", "16", "32", "64", "96", "128"])])
    report["peers"] = peers.main(["--models", *peer_models, "--models-dir", str(models_dir), "--device", args.device,
                                  "--concurrency", *(["2"] if args.quick else ["8", "32", "128", "256"]),
                                  "--score-concurrency", *(["2"] if args.quick else ["1", "8", "32", "128"]),
                                  "--requests-per-client", "2" if args.quick else "3", "--rounds", "1" if args.quick else "2",
                                  "--label", label, "--output-dir", str(out)])
    report["bf16"] = [bf16_against_fp32(models_dir / name, device, 20 if args.quick else 500) for name in models[:2]]
    lines = ["| model | tokens | max abs Δ log p | mean abs Δ log p | ppl fp32 | ppl bf16 | within 1e-3 |", "|---|---:|---:|---:|---:|---:|---|"]
    for row in report["bf16"]:
        if "unsupported" in row:
            lines.append(f"| {row['model']} | bfloat16 LSTM not supported here: {row['unsupported']} | | | | | |")
            continue
        lines.append(f"| {row['model']} | {row['tokens']} | {row['max_abs_logprob_difference']:.2e} | {row['mean_abs_logprob_difference']:.2e} | "
                     f"{row['perplexity_fp32']:.2f} | {row['perplexity_bf16']:.2f} | {'yes' if row['max_abs_logprob_difference'] <= 1e-3 else 'no'} |")
    (out / f"bf16-{label}.md").write_text(f"bf16 recurrent layers against fp32 on {report['device']}\n\n" + "\n".join(lines) + "\n")
    report["cuda_graphs"] = [row for name in models for row in cuda_graph_steps(
        models_dir / name, device, [1, 8] if args.quick else [1, 8, 64, 256], 5 if args.quick else 200)]
    (out / f"cuda-graphs-{label}.md").write_text(f"decode step, eager against a replayed CUDA graph, on {report['device']}\n\n"
                                                 + cuda_graph_table(report["cuda_graphs"]) + "\n")
    (out / f"gpu-{label}.json").write_text(json.dumps(report, indent=2, default=str))
    shutil.rmtree(models_dir)  # rebuilt in seconds; keeps the folder small for the transfer back
    print("\n".join(lines))
    return report


if __name__ == "__main__":
    main()
