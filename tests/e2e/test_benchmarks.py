"""The performance benchmarks, kept working on the tiny model: the peer comparison (real
uvicorn against real LitServe servers, token counts checked on every answer) and the roofline."""
import pytest

from bench.peers import main as peers
from bench.roofline import main as roofline


def test_peers_compares_every_engine_on_the_same_requests(tmp_path, tiny_models_dir):
    rows = peers(["--models", "tiny-word-lstm", "--models-dir", str(tiny_models_dir), "--prompt", "the cat",
                  "--concurrency", "2", "--lengths", "mixed", "--requests-per-client", "2", "--score-concurrency", "2", "--rounds", "2",
                  "--output-dir", str(tmp_path)])
    generation = [row for row in rows if row["task"] == "generate"]
    assert [row["engine"] for row in generation] == ["rnnserve", "rnnserve-stream", "litserve-dynamic", "litserve-dynamic-128", "litserve-continuous"]
    assert len({row["tokens"] for row in generation}) == 1  # the same requests, every token delivered
    assert all(row["tokens_per_s"] > 0 for row in generation)
    scoring = [row for row in rows if row["task"] == "score"]  # every sentence scored by both, counted
    assert [row["engine"] for row in scoring] == ["rnnserve-score", "litserve-score"]
    assert len({row["sentences"] for row in scoring}) == 1 and all(row["sentences_per_s"] > 0 for row in scoring)
    report = (tmp_path / "peers-cpu.md").read_text()
    assert "÷ best LitServe" in report and "sentences/s" in report
    assert all(len(row["tokens_per_s_rounds"]) == 2 for row in generation)
    assert all(len(row["ratio_rounds"]) == 2 for row in generation if row["engine"].startswith("rnnserve"))
    # Where the cores went, read from /proc per round: numbers, not NaN (with ticks of 10 ms a
    # round this small may read 0; test_serving_benchmark_load_drives_a_real_server checks growth).
    assert all(row["server_cores"] >= 0 and row["client_cores"] >= 0 and row["server_cpu_us_per_token"] >= 0 for row in generation)
    assert "cores: server / client" in report


def test_roofline_accounts_for_a_step(tmp_path, tiny_models_dir):
    rows = roofline(["--models", "tiny-word-lstm", "--models-dir", str(tiny_models_dir), "--batch-sizes", "1", "8",
                     "--repeats", "3", "--output-dir", str(tmp_path)])
    for row in rows:
        assert row["cell_flops"] > 0 and row["cell_s"] > 0 and row["engine_step_s"] > 0
        assert 0 < row["cell_fraction_of_peak"] < 1.5
    assert (tmp_path / "roofline-cpu.md").exists()


def test_the_gpu_script_runs_its_steps_on_the_cpu(tmp_path):
    from bench.gpu import main as gpu_run

    report = gpu_run(["--device", "cpu", "--quick", "--output-dir", str(tmp_path)])
    assert {row["model"] for row in report["roofline"]} == {"wikitext2-lstm", "shakespeare-char-lstm", "wikitext2-2x32-random"}
    assert {row["engine"] for row in report["peers"]} >= {"rnnserve", "litserve-dynamic"}
    for row in report["bf16"]:  # measured where the device has bfloat16 LSTMs, else said so
        assert "unsupported" in row or (row["tokens"] > 100 and row["max_abs_logprob_difference"] >= 0)
    assert (tmp_path / "bf16-cpu-check.md").exists() and (tmp_path / "roofline-cpu-check.md").exists()
    # CUDA graphs are measured on a GPU only; on the CPU each model's row says so.
    assert report["cuda_graphs"] and all(row["unsupported"] == "CUDA graphs need a CUDA device" for row in report["cuda_graphs"])
    assert "CUDA graphs need a CUDA device" in (tmp_path / "cuda-graphs-cpu-check.md").read_text()


def test_batching_ceiling_replays_the_same_requests_through_both_schedules(tmp_path, tiny_models_dir):
    from bench.batching_ceiling import continuous_seconds, dynamic_seconds, main as ceiling

    flat = lambda rows: 1.0  # a step costs the same whatever its rows (a GPU's regime)
    # Two clients, lengths 1 and 3: continuous runs 3 steps; the dynamic batch also 3 (its longest).
    assert continuous_seconds([1, 3], 2, 128, flat) == dynamic_seconds([1, 3], 2, 32, flat) == 3
    # Lengths 1, 3, 1, 1 from two clients: continuous refills each freed row at once (3 steps);
    # the dynamic batcher runs 1+3 until the 3 is done, then 1+1 (4 steps).
    assert continuous_seconds([1, 3, 1, 1], 2, 128, flat) == 3 and dynamic_seconds([1, 3, 1, 1], 2, 32, flat) == 4
    per_row = lambda rows: float(rows)  # a step costs its rows (a CPU's regime): no schedule wins
    assert continuous_seconds([1, 3, 1, 1], 2, 128, per_row) == dynamic_seconds([1, 3, 1, 1], 2, 32, per_row) == 6
    rows = ceiling(["--models", "tiny-word-lstm", "--models-dir", str(tiny_models_dir), "--concurrency", "2",
                    "--requests-per-client", "3", "--batch-sizes", "1", "2", "--max-batch-size", "2", "--dynamic-batch-sizes", "2",
                    "--repeats", "2", "--measured-rounds", "2", "--measured-requests-per-client", "2", "--output-dir", str(tmp_path)])
    assert {(r["lengths"], r["clients"]) for r in rows} == {("equal", 2), ("mixed", 2)}
    assert all(r["ratio"] > 0.5 and r["continuous_tokens_per_s"] > 0 for r in rows)
    # Both schedules also ran for real (each checks it generated every token asked for).
    assert all(len(r["measured_ratio_rounds"]) == 2 and r["measured_continuous_tokens_per_s"] > 0
               and r["measured_dynamic_tokens_per_s"][2] > 0 for r in rows)
    assert (tmp_path / "batching-ceiling-cpu.md").exists()
    with pytest.raises(SystemExit):  # a schedule of 128 rows needs a measured step of 128 rows
        ceiling(["--models", "tiny-word-lstm", "--models-dir", str(tiny_models_dir), "--batch-sizes", "1", "2"])


def test_serving_benchmark_load_drives_a_real_server(tmp_path, tiny_models_dir):
    """bench.serve's load window: every client on its own connection, answers counted."""
    import asyncio

    from bench.peers import start_rnnserve
    from bench.serve import load

    server = start_rnnserve(tiny_models_dir / "tiny-word-lstm", 8, tmp_path)
    try:
        server.wait_ready()
        started_cpu = server.cpu_seconds()
        result = asyncio.run(load(server.url, "tiny-word-lstm", 3, 1.0, 4, "the cat"))
        worked_cpu = server.cpu_seconds()
    finally:
        server.stop()
    assert result["errors"] == 0 and result["requests"] >= 3 and result["tokens_per_s"] > 0
    # The server's CPU time covers its whole process group: the HTTP process and its worker,
    # each of which imported torch (well over a second between them), and grows with the load.
    assert started_cpu > 1.0 and worked_cpu > started_cpu


def test_prompt_cache_benchmark_reads_less_of_each_conversation_with_the_cache(tmp_path, tiny_models_dir):
    """bench.prompt_cache against two real servers: with the cache, a turn after the first reads
    less than its whole prompt; without it, every token of it (and the start token)."""
    from bench.prompt_cache import main as prompt_cache
    from tests.conftest import tiny_sentences

    sentences = tiny_sentences(60, seed=3)
    data = tmp_path / "turns.txt"
    data.write_text("\n".join(" ".join(sentences[i : i + 5]) for i in range(0, 60, 5)) + "\n")
    results = prompt_cache(["--model", "tiny-word-lstm", "--models-dir", str(tiny_models_dir), "--data", str(data), "--conversations", "2",
                            "--turns", "3", "--answer-tokens", "4", "--repeat-clients", "2", "--repeat-requests", "2",
                            "--repeat-prompt-lines", "1", "--output-dir", str(tmp_path)])
    on, off = results["conversation"]["cache on"], results["conversation"]["cache off"]
    assert [t["prompt_tokens"] for t in on] == [t["prompt_tokens"] for t in off]
    assert all(t["prompt_tokens_read"] == t["prompt_tokens"] + 1 for t in off)
    assert on[0]["prompt_tokens_read"] == off[0]["prompt_tokens_read"]
    assert all(t["prompt_tokens_read"] < t["prompt_tokens"] for t in on[1:])
    assert all(row["requests_per_s"] > 0 for row in results["repeat"].values())
    assert (tmp_path / "prompt-cache-cpu.md").exists() and (tmp_path / "prompt-cache-cpu.png").exists()


def test_settings_ab_runs_each_variant_on_the_same_requests(tmp_path, tiny_models_dir):
    from bench.settings_ab import main as settings_ab

    rows = settings_ab(["--models", "tiny-word-lstm", "--models-dir", str(tiny_models_dir), "--prompt", "the cat",
                        "--concurrency", "2", "--requests-per-client", "2", "--rounds", "2",
                        "--variant", "shipped", "--variant", "two threads", "RNNSERVE_SINGLE_THREAD_ROWS=0", "--output-dir", str(tmp_path)])
    assert [row["variant"] for row in rows] == ["shipped", "two threads"]
    assert len({row["tokens"] for row in rows}) == 1 and all(row["tokens_per_s"] > 0 for row in rows)
    assert rows[0]["ratio_rounds"] == [1.0, 1.0] and len(rows[1]["ratio_rounds"]) == 2
    assert "÷ shipped" in (tmp_path / "settings-ab-cpu.md").read_text()
    with pytest.raises(SystemExit):  # a setting is an RNNSERVE_ variable with a value
        settings_ab(["--variant", "a", "--variant", "b", "SINGLE_THREAD_ROWS=0"])


def test_lattice_rescoring_benchmark_agrees_with_every_path_when_nothing_merges(tmp_path, tiny_model_path):
    from bench.lattice_rescoring import main as lattice_rescoring
    from tests.conftest import TESTS_DIR

    rows = lattice_rescoring([str(tiny_model_path), "--nbest", str(TESTS_DIR / "data" / "nbest-ptb-dev-slice.jsonl"),
                              "--orders", "2", "1000", "--beams", "inf", "--joins", "1", "--max-paths", "50", "--repeats", "1",
                              "--lm-weight", "1", "--word-insertion-penalty", "0", "--output-dir", str(tmp_path)])
    wer = {row["method"]: row["wer"] for row in rows}
    assert wer["lattice rescoring, order 1000, beam inf, one call per lattice"] == wer["every path scored, one call per lattice"]
    assert wer["lattice oracle (its best path)"] <= min(wer.values())
    assert (tmp_path / "lattice-rescoring.md").exists() and (tmp_path / "lattice-rescoring.png").exists()
