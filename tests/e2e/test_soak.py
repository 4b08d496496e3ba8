"""A 30-second soak (the 10-minute one is run by hand: see the README)."""
from bench.soak import main as soak


def test_thirty_second_soak(all_models_dir):
    report = soak(["--models-dir", str(all_models_dir), "--clients", "8", "--seconds", "30"])
    assert report["ok"], report
    assert set(report["by_kind"]) == {"generate", "stream", "cancel", "score", "caption"}
