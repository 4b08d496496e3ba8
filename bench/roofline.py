"""Where a decode step's time goes, against what this machine can do, measured in one run.

    .venv/bin/python -m bench.roofline [--models wikitext2-lstm shakespeare-char-lstm flickr8k-captioner]
        [--batch-sizes 1 8 64 256] [--precisions fp32 int8]

The machine: the matmul peaks (a 2048² product in float32, and in int8 through the kernel int8
serving uses, `models.quantization`) and the memory bandwidth (a 256 MB copy), with the threads a
worker uses. Every model is measured at every precision (int8 on the CPU only) in the same run.
Per decode step of each language model at each batch size:
FLOPs and bytes of the cell step (weights read once, plus the state) and of the output layer
(the full distribution, and the adaptive head read cluster by cluster as the sampler does), the
measured time of the cell step and of head + sampling, the cell's fraction of the matmul peak,
and the continuous batcher's whole step (the engine's Python: trackers, events, row bookkeeping)
to show the scheduling overhead. A captioner's decode step is its decoder's step (attention,
cell, output layer) and the argmax over its words, for images encoded once. A second table
puts each model's decode tokens/s at fp32 and int8 side by side. Prints the tables, writes
bench/results/roofline-<label>.{md,json}.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch

from app.engine.batcher import ContinuousBatcher
from app.engine.lm_tasks import TokenLimits
from app.engine.messages import GenerateJob
from models.generation import prefill
from models.next_token import NextTokenScores
from models.quantization import ACTIVATION_SCALE, ACTIVATION_ZERO_POINT, FP32, INT8, PRECISIONS, Int8Linear
from models.registry import load_model
from models.sampling import BatchSampler, SamplingParams
from training.cli import parser_for

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
PROMPTS = {"wikitext2-lstm": "The game was released in", "shakespeare-char-lstm": "ROMEO:\n"}
GATE_ROWS = {"lstm": 4, "peephole": 4, "gru": 3, "rnn": 1, "jordan": 1}  # gate rows per hidden unit
CAPTION_REGIONS = 49  # 7x7 feature positions, what a 224-pixel image gives the EfficientNet encoder


def synchronize() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def timed(function, repeats: int, rounds: int = 3) -> float:
    """Seconds per call: the best of `rounds` rounds (machines are shared and noisy); on a GPU
    the queued work is waited for."""
    function()
    synchronize()
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        for _ in range(repeats):
            function()
        synchronize()
        best = min(best, (time.perf_counter() - started) / repeats)
    return best


def machine_peak(device: torch.device, repeats: int = 20) -> dict:
    a, b = torch.randn(2048, 2048, device=device), torch.randn(2048, 2048, device=device)
    matmul = timed(lambda: torch.mm(a, b), repeats)
    source = torch.empty(64 * 1024 * 1024, device=device)  # 256 MB
    destination = torch.empty_like(source)
    copy = timed(lambda: destination.copy_(source), 5)
    peak = {"matmul_gflops": 2 * 2048**3 / matmul / 1e9, "bandwidth_gb_s": 2 * source.numel() * 4 / copy / 1e9}
    if device.type == "cpu":
        # The integer product alone (rows already scaled into [-1, 1]), as Int8Linear calls it.
        packed = Int8Linear(b)._packed
        scaled = a / a.abs().amax(dim=1, keepdim=True)
        product = torch.ops.quantized.linear_with_input_q_dq_qweight_dq_output_fp32
        int8 = timed(lambda: product(scaled, ACTIVATION_SCALE, ACTIVATION_ZERO_POINT, packed), repeats)
        peak["int8_matmul_gops"] = 2 * 2048**3 / int8 / 1e9
    return peak


def peak_of(peak: dict, precision: str) -> float:
    """The matmul peak a step at `precision` is held against, in G(FL)OP/s."""
    return peak["int8_matmul_gops"] if precision == INT8 else peak["matmul_gflops"]


def cell_cost(config, batch: int, input_dim: int | None = None) -> tuple[float, float]:
    """(FLOPs, bytes) of one cell step for `batch` rows: the gate products of every layer, the
    fp32 weights read once, the state read and written (a language model's or a decoder's config)."""
    gates = GATE_ROWS[config.cell] * config.hidden_dim
    layers = getattr(config, "num_layers", 1)
    flops = weights = 0
    width = input_dim or config.embedding_dim
    for _ in range(layers):
        flops += 2 * batch * gates * (width + config.hidden_dim)
        weights += gates * (width + config.hidden_dim + 2)
        width = config.hidden_dim
    states = (2 if "lstm" in config.cell or config.cell == "peephole" else 1) * layers * batch * config.hidden_dim * 2
    return flops, 4 * (weights + states)


def head_cost(model, batch: int, cluster_rows: float) -> tuple[float, float, float, float]:
    """(FLOPs, bytes) of the full output layer and of the head read cluster by cluster, where
    `cluster_rows` is the mean number of rows per step that enter a cluster."""
    vocab = model.config.vocab_size
    width = model.decoder.in_features if model.adaptive is None else model.adaptive.in_features
    if model.adaptive is None:
        flops = 2 * batch * width * vocab
        return flops, 4 * (width * vocab + batch * vocab), flops, 4 * (width * vocab + batch * vocab)
    adaptive = model.adaptive
    head_out = adaptive.head.out_features
    head_flops, head_bytes = 2 * batch * width * head_out, 4 * (width * head_out + batch * head_out)
    tail_flops = tail_bytes = 0
    per_cluster_flops = []
    for tail in adaptive.tail:
        hidden, out = tail[0].out_features, tail[1].out_features
        tail_flops += 2 * batch * (width * hidden + hidden * out)
        tail_bytes += 4 * (width * hidden + hidden * out + batch * out)
        per_cluster_flops.append(2 * (width * hidden + hidden * out))
    mean_cluster = sum(per_cluster_flops) / len(per_cluster_flops)
    return (head_flops + tail_flops, head_bytes + tail_bytes,
            head_flops + cluster_rows * mean_cluster, head_bytes + 4 * cluster_rows * width)


def measure(loaded, batch: int, repeats: int) -> dict:
    model, vocab = loaded.model, loaded.vocab
    device = model.embedding.weight.device
    prompt = loaded.encode_text(PROMPTS.get(loaded.model_id, "The"), add_start=True).ids
    params = [SamplingParams(max_tokens=10_000, min_tokens=10_000) for _ in range(batch)]
    sampler = BatchSampler(params, len(vocab), vocab.unk_id, vocab.eos_id, device)
    scores, state = prefill(model, [prompt] * batch)
    generated = torch.zeros(batch, dtype=torch.long, device=device)
    tokens = sampler.choose(scores, generated)
    cell = timed(lambda: model.step_hidden(tokens, state), repeats)
    hidden, _ = model.step_hidden(tokens, state)
    entered = []

    def head_and_sampling() -> None:
        scores = NextTokenScores(model, hidden)
        chosen = sampler.choose(scores, generated)
        if model.adaptive is not None:
            entered.append(int((chosen >= model.adaptive.shortlist_size).sum()))

    sampled = timed(head_and_sampling, repeats)
    full = timed(lambda: sampler.choose(NextTokenScores(model, hidden).logits, generated), repeats)
    batcher = ContinuousBatcher(loaded, batch, TokenLimits(4096, 4096))
    batcher.submit(GenerateJob("roofline", loaded.model_id, PROMPTS.get(loaded.model_id, "The"), params), lambda event: None)
    batcher.step(lambda event: None)  # prefill
    engine_step = timed(lambda: batcher.step(lambda event: None), repeats)
    cluster_rows = sum(entered) / len(entered) if entered else 0.0
    cell_flops, cell_bytes = cell_cost(model.config, batch)
    full_flops, full_bytes, head_flops, head_bytes = head_cost(model, batch, cluster_rows)
    return {"batch": batch, "cell_flops": cell_flops, "cell_bytes": cell_bytes, "cell_s": cell,
            "head_full_flops": full_flops, "head_full_bytes": full_bytes, "head_full_and_sampling_s": full,
            "head_read_flops": head_flops, "head_read_bytes": head_bytes, "head_and_sampling_s": sampled,
            "rows_in_clusters": cluster_rows, "engine_step_s": engine_step}


def measure_captioner(loaded, batch: int, repeats: int) -> dict:
    """A caption decoder's step (attention, cell, output layer) and the argmax, for `batch`
    images already encoded (random features of the encoder's shape); the cell and the output
    layer with the argmax also on their own (the rest of the step is attention)."""
    decoder = loaded.model.decoder
    config = decoder.config
    device = decoder.embedding.weight.device
    state = decoder.init_state(torch.rand(batch, CAPTION_REGIONS, config.feature_dim, device=device))
    tokens = torch.full((batch,), loaded.vocab.bos_id, dtype=torch.long, device=device)
    input_dim = config.embedding_dim + (config.feature_dim if config.attention_dim else config.embedding_dim * (config.conditioning != "init"))
    inputs = torch.rand(batch, input_dim, device=device)
    cell = timed(lambda: decoder.cell.step(inputs, state.recurrent), repeats)
    output = timed(lambda: decoder.output(state.h).argmax(dim=-1), repeats)
    step = timed(lambda: decoder.step(tokens, state)[0].argmax(dim=-1), repeats)
    cell_flops, cell_bytes = cell_cost(config, batch, input_dim)
    output_flops = 2 * batch * config.hidden_dim * config.vocab_size
    return {"batch": batch, "cell_flops": cell_flops, "cell_bytes": cell_bytes, "cell_s": cell,
            "head_full_flops": output_flops, "head_full_bytes": 4 * (config.hidden_dim + batch) * config.vocab_size,
            "head_read_flops": output_flops, "head_read_bytes": 4 * (config.hidden_dim + batch) * config.vocab_size,
            "head_full_and_sampling_s": output, "head_and_sampling_s": output, "rows_in_clusters": 0.0,
            "engine_step_s": step}


def comparison_table(rows: list[dict]) -> str:
    """Per model and batch size: the decode step and tokens/s at each precision, int8's speed-up,
    and the cell's fraction of its precision's matmul peak."""
    lines = ["| model | batch | fp32 step ms | int8 step ms | fp32 tokens/s | int8 tokens/s | int8 speed-up | "
             "cell % of fp32 peak (fp32) | cell % of int8 peak (int8) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    by_key = {(r["model"], r["batch"], r["precision"]): r for r in rows}
    for (model, batch, precision), fp32 in by_key.items():
        int8 = by_key.get((model, batch, INT8))
        if precision != FP32 or int8 is None:
            continue
        lines.append(
            f"| {model} | {batch} | {fp32['engine_step_s'] * 1e3:.2f} | {int8['engine_step_s'] * 1e3:.2f} | "
            f"{batch / fp32['engine_step_s']:.0f} | {batch / int8['engine_step_s']:.0f} | "
            f"{fp32['engine_step_s'] / int8['engine_step_s']:.2f}× | {100 * fp32['cell_fraction_of_peak']:.0f}% | "
            f"{100 * int8['cell_fraction_of_peak']:.0f}% |")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = parser_for(__doc__)
    parser.add_argument("--models", nargs="+", default=["wikitext2-lstm", "shakespeare-char-lstm"], help="model ids to measure")
    parser.add_argument("--models-dir", type=Path, default=ROOT / "weights", help="where the model ids are found")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 64, 256], help="rows per decode step measured")
    parser.add_argument("--precisions", nargs="+", choices=PRECISIONS, default=list(PRECISIONS),
                        help="what the models compute in, each measured in the same run (int8 on the CPU only)")
    parser.add_argument("--repeats", type=int, default=20, help="timed steps per measurement (the median is reported)")
    parser.add_argument("--threads", type=int, default=os.cpu_count(),
                        help="torch threads, as a CPU worker uses (default: every core)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N")
    parser.add_argument("--label", default="cpu", help="suffix of the result files")
    parser.add_argument("--output-dir", type=Path, default=RESULTS, help="where the result files go")
    return parser


def main(argv: list[str] | None = None) -> list[dict]:
    parser = build_parser()
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    peak = machine_peak(device)
    precisions = [p for p in args.precisions if p == FP32 or device.type == "cpu"]  # int8 is a CPU path
    rows = []
    with torch.inference_mode():
        for model_id in args.models:
            for precision in precisions:
                loaded = load_model(args.models_dir / model_id, device, precision)
                for batch in args.batch_sizes:
                    measured = measure_captioner(loaded, batch, args.repeats) if loaded.model_type == "captioner" else measure(loaded, batch, args.repeats)
                    row = {"model": model_id, "precision": precision} | measured
                    row["cell_fraction_of_peak"] = row["cell_flops"] / row["cell_s"] / 1e9 / peak_of(peak, precision)
                    rows.append(row)
                    print({k: (round(v, 6) if isinstance(v, float) else v) for k, v in row.items()}, flush=True)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{args.threads} threads, {platform.processor() or platform.machine()}"
    int8_peak = f", int8 {peak['int8_matmul_gops']:.0f} GOP/s (2048², models.quantization)" if "int8_matmul_gops" in peak else ""
    header = (f"decode step, {where}: matmul peak "
              f"{peak['matmul_gflops']:.0f} GFLOP/s (2048² float32){int8_peak}, copy bandwidth {peak['bandwidth_gb_s']:.1f} GB/s")
    lines = ["| model | precision | batch | cell GFLOP | cell MB | cell ms | cell % of peak | head+sampling GFLOP (full → read) | "
             "head+sampling ms (full → read) | engine step ms | overhead ms | tokens/s (engine step) |",
             "|---|---|---:|---:|---:|---:|---:|---|---|---:|---:|---:|"]
    for r in rows:
        overhead = r["engine_step_s"] - r["cell_s"] - r["head_and_sampling_s"]
        lines.append(
            f"| {r['model']} | {r['precision']} | {r['batch']} | {r['cell_flops'] / 1e9:.3f} | {r['cell_bytes'] / 1e6:.1f} | {r['cell_s'] * 1e3:.2f} | "
            f"{100 * r['cell_fraction_of_peak']:.0f}% | {r['head_full_flops'] / 1e9:.3f} → {r['head_read_flops'] / 1e9:.3f} | "
            f"{r['head_full_and_sampling_s'] * 1e3:.2f} → {r['head_and_sampling_s'] * 1e3:.2f} | {r['engine_step_s'] * 1e3:.2f} | "
            f"{overhead * 1e3:.2f} | {r['batch'] / r['engine_step_s']:.0f} |")
    text = header + "\n\n" + "\n".join(lines)
    if len(precisions) > 1:
        text += "\n\nDecode tokens/s by precision (the engine step for language models, the decoder step and argmax for a captioner):\n\n" + comparison_table(rows)
    print("\n" + text)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    (args.output_dir / f"roofline-{args.label}.md").write_text(text + "\n")
    (args.output_dir / f"roofline-{args.label}.json").write_text(json.dumps({"peak": peak, "rows": rows}, indent=2))
    return rows


if __name__ == "__main__":
    main()
