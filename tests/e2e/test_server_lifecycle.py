"""What a real uvicorn does at its edges: a refused large body is read by every ordinary client,
a model is swapped while a sequence runs on it, and shutdown leaves nothing behind."""
import json
import shutil
import threading
import urllib.error
import urllib.request

import httpx
import torch

from models.checkpoint import load_language_model, save_language_model
from tests.e2e.conftest import start_server


def test_every_client_reads_the_413_body(server):
    body = json.dumps({"prompt": "x" * 2_000_000}).encode()
    outcomes = []
    for _ in range(10):
        request = urllib.request.Request(server.base_url + "/v1/generate", data=body, headers={"content-type": "application/json"})
        try:
            urllib.request.urlopen(request, timeout=30)
            outcomes.append("200")
        except urllib.error.HTTPError as error:
            outcomes.append(json.loads(error.read())["error"]["type"] if error.code == 413 else str(error.code))
        except OSError as error:  # "Connection reset by peer" before the fix
            outcomes.append(repr(error))
    assert outcomes == ["request_too_large"] * 10


def test_a_reload_lets_running_sequences_finish_on_their_revision(tmp_path, tiny_models_dir):
    models = tmp_path / "models"
    shutil.copytree(tiny_models_dir, models)
    server = start_server(tmp_path, models, RNNSERVE_MAX_NEW_TOKENS="5000")
    try:
        events: list[dict] = []
        started = threading.Event()

        def stream() -> None:
            body = {"prompt": "the cat", "max_tokens": 3000, "min_tokens": 3000, "seed": 1, "stream": True}
            with httpx.stream("POST", server.base_url + "/v1/generate", json=body, timeout=120) as response:
                for line in response.iter_lines():
                    if line.startswith("data: ") and line != "data: [DONE]":
                        events.append(json.loads(line[6:]))
                        started.set()

        runner = threading.Thread(target=stream)
        runner.start()
        assert started.wait(30)
        loaded = load_language_model(models / "tiny-word-lstm")
        with torch.no_grad():
            for parameter in loaded.model.parameters():
                parameter.mul_(0.5)
        save_language_model(models / "tiny-word-lstm", loaded.model, loaded.vocab, loaded.tokenizer.config, {"model_id": "tiny-word-lstm"})
        reload = httpx.post(server.base_url + "/v1/models/reload", timeout=60).json()
        assert reload["updated"] == ["tiny-word-lstm"]
        runner.join(120)
        final = events[-1]
        assert "error" not in final and final["choices"][0]["finish_reason"] == "length"
        assert final["usage"]["completion_tokens"] == 3000
        # The sequence that started before the reload ran on the old weights throughout: the same
        # seeded request on the old weights (a fresh server over the old copy) gives the same text.
        text = "".join(e["choices"][0].get("text", "") for e in events[:-1])
        old = tmp_path / "old"
        shutil.copytree(tiny_models_dir, old)
        reference = start_server(tmp_path, old, RNNSERVE_MAX_NEW_TOKENS="5000")
        try:
            again = httpx.post(reference.base_url + "/v1/generate", timeout=120,
                               json={"prompt": "the cat", "max_tokens": 3000, "min_tokens": 3000, "seed": 1}).json()
        finally:
            reference.stop()
        assert again["choices"][0]["text"] == text
    finally:
        server.stop()


def test_shutdown_leaves_no_leaked_semaphores(tmp_path, tiny_models_dir):
    server = start_server(tmp_path, tiny_models_dir)
    assert httpx.post(server.base_url + "/v1/generate", json={"prompt": "the", "max_tokens": 3}).status_code == 200
    server.stop()
    log = (tmp_path / f"server-{server.port}.log").read_text()
    assert "Application shutdown complete" in log and "leaked semaphore" not in log
