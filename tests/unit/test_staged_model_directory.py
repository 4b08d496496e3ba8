"""models.artifacts.staged_model_directory: a model directory appears whole or not at all, and
the models-directory scans (the service's catalogue among them) skip the hidden directories it
writes in."""
import json
import stat

import pytest

from app.model_store import model_directories
from models.artifacts import CheckpointError, model_directories_in, staged_model_directory


def write_model(directory, marker: str) -> None:
    (directory / "model.safetensors").write_bytes(b"weights " + marker.encode())
    (directory / "config.json").write_text(json.dumps({"marker": marker}))


def marker(directory) -> str:
    return json.loads((directory / "config.json").read_text())["marker"]


def test_a_finished_export_appears_whole_and_readable(tmp_path):
    target = tmp_path / "models" / "m"
    with staged_model_directory(target) as staging:
        assert staging.parent == target.parent and staging.name.startswith(".m.tmp-")
        write_model(staging, "first")
        assert not target.exists()  # nothing is seen before the block ends
    assert marker(target) == "first"
    assert sorted(p.name for p in target.parent.iterdir()) == ["m"]
    assert stat.S_IMODE(target.stat().st_mode) == 0o755


@pytest.mark.parametrize("failure", [RuntimeError("disk full"), KeyboardInterrupt()], ids=["error", "interrupt"])
def test_an_export_that_fails_midway_leaves_nothing_and_a_second_try_succeeds(tmp_path, failure):
    target = tmp_path / "m"
    with pytest.raises(type(failure)):
        with staged_model_directory(target) as staging:
            (staging / "model.safetensors").write_bytes(b"half")
            raise failure
    assert list(tmp_path.iterdir()) == []  # neither the target nor the hidden directory
    with staged_model_directory(target) as staging:
        write_model(staging, "second")
    assert marker(target) == "second" and sorted(p.name for p in tmp_path.iterdir()) == ["m"]


def test_a_model_is_replaced_only_when_asked_and_a_failed_replacement_keeps_it(tmp_path):
    target = tmp_path / "m"
    with staged_model_directory(target) as staging:
        write_model(staging, "old")
    with pytest.raises(CheckpointError, match="already holds a model"):
        with staged_model_directory(target) as staging:
            write_model(staging, "new")
    with pytest.raises(RuntimeError):
        with staged_model_directory(target, replace=True) as staging:
            write_model(staging, "new")
            raise RuntimeError("interrupted")
    assert marker(target) == "old"
    with staged_model_directory(target, replace=True) as staging:
        write_model(staging, "new")
    assert marker(target) == "new" and sorted(p.name for p in tmp_path.iterdir()) == ["m"]


def test_a_directory_of_other_files_is_never_replaced(tmp_path):
    target = tmp_path / "notes"
    target.mkdir()
    (target / "todo.txt").write_text("keep me")
    with pytest.raises(CheckpointError, match="no model"):
        with staged_model_directory(target, replace=True) as staging:
            write_model(staging, "new")
    assert (target / "todo.txt").read_text() == "keep me"
    empty = tmp_path / "empty"
    empty.mkdir()
    with staged_model_directory(empty) as staging:  # an empty directory holds nothing to lose
        write_model(staging, "new")
    assert marker(empty) == "new"


def test_the_scans_skip_hidden_directories(tmp_path):
    for name in ("m", ".m.tmp-abc123", ".m.old-abc123", ".hidden"):
        (tmp_path / name).mkdir()
        write_model(tmp_path / name, name)
    (tmp_path / "not-a-model").mkdir()
    assert [p.name for p in model_directories_in(tmp_path)] == ["m"]
    assert list(model_directories([tmp_path])) == ["m"]  # what the service loads and reloads
