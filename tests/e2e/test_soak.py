"""The benchmarks that run against a real server, kept working on small settings: a 30-second
soak (the 10-minute one is run by hand: see the README) and the autoscaling-signal sweep."""
from bench.soak import main as soak


def test_thirty_second_soak(all_models_dir):
    report = soak(["--models-dir", str(all_models_dir), "--clients", "8", "--seconds", "30"])
    assert report["ok"], report
    assert set(report["by_kind"]) == {"generate", "stream", "cancel", "score", "caption"}


def test_autoscaling_benchmark_reads_the_signal_while_loaded(tmp_path, tiny_models_dir):
    from bench.autoscaling import main as autoscaling

    report = autoscaling(["--models-dir", str(tiny_models_dir), "--model", "tiny-word-lstm", "--prompt", "the cat",
                          "--concurrency", "1", "6", "--seconds", "2", "--max-tokens", "500", "--output-dir", str(tmp_path)])
    loaded = {row["concurrency"]: row["signal_mean"] for row in report["rows"]}
    # The gauge follows the load: about one request per client in flight (long requests, so
    # that the clients' own gaps between requests count little).
    assert 0.5 <= loaded[1] <= 1.2 and 3.5 <= loaded[6] <= 6.2, loaded
    assert report["knee"]["concurrency"] in (1, 6)
    assert (tmp_path / "autoscaling-cpu.png").stat().st_size > 0
