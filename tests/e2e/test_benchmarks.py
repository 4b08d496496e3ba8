"""The performance benchmarks, kept working on the tiny model: the peer comparison (real
uvicorn against real LitServe servers, token counts checked on every answer) and the roofline."""
from bench.peers import main as peers
from bench.roofline import main as roofline


def test_peers_compares_every_engine_on_the_same_requests(tmp_path, tiny_models_dir):
    rows = peers(["--models", "tiny-word-lstm", "--models-dir", str(tiny_models_dir), "--prompt", "the cat",
                  "--concurrency", "2", "--lengths", "mixed", "--requests-per-client", "2", "--output-dir", str(tmp_path)])
    engines = [row["engine"] for row in rows]
    assert engines == ["rnnserve", "rnnserve-stream", "litserve-dynamic", "litserve-continuous"]
    assert len({row["tokens"] for row in rows}) == 1  # the same requests, every token delivered
    assert all(row["tokens_per_s"] > 0 for row in rows)
    assert "÷ best LitServe" in (tmp_path / "peers-cpu.md").read_text()


def test_roofline_accounts_for_a_step(tmp_path, tiny_models_dir):
    rows = roofline(["--models", "tiny-word-lstm", "--models-dir", str(tiny_models_dir), "--batch-sizes", "1", "8",
                     "--repeats", "3", "--output-dir", str(tmp_path)])
    for row in rows:
        assert row["cell_flops"] > 0 and row["cell_s"] > 0 and row["engine_step_s"] > 0
        assert 0 < row["cell_fraction_of_peak"] < 1.5
    assert (tmp_path / "roofline-cpu.md").exists()
