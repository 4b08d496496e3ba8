"""The performance benchmarks, kept working on the tiny model: the peer comparison (real
uvicorn against real LitServe servers, token counts checked on every answer) and the roofline."""
from bench.peers import main as peers
from bench.roofline import main as roofline


def test_peers_compares_every_engine_on_the_same_requests(tmp_path, tiny_models_dir):
    rows = peers(["--models", "tiny-word-lstm", "--models-dir", str(tiny_models_dir), "--prompt", "the cat",
                  "--concurrency", "2", "--lengths", "mixed", "--requests-per-client", "2", "--score-concurrency", "2",
                  "--output-dir", str(tmp_path)])
    generation = [row for row in rows if row["task"] == "generate"]
    assert [row["engine"] for row in generation] == ["rnnserve", "rnnserve-stream", "litserve-dynamic", "litserve-continuous"]
    assert len({row["tokens"] for row in generation}) == 1  # the same requests, every token delivered
    assert all(row["tokens_per_s"] > 0 for row in generation)
    scoring = [row for row in rows if row["task"] == "score"]  # every sentence scored by both, counted
    assert [row["engine"] for row in scoring] == ["rnnserve-score", "litserve-score"]
    assert len({row["sentences"] for row in scoring}) == 1 and all(row["sentences_per_s"] > 0 for row in scoring)
    report = (tmp_path / "peers-cpu.md").read_text()
    assert "÷ best LitServe" in report and "sentences/s" in report


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
