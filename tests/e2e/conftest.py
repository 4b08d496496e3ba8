"""A real uvicorn serving the app in a subprocess, on a free loopback port."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import REPOSITORY_ROOT, free_port


class Server:
    def __init__(self, command: list[str], env: dict[str, str], port: int) -> None:
        self.port = port
        self.base_url = f"http://127.0.0.1:{port}"
        self.log_path = Path(env["RNNSERVE_TEST_LOG"])
        self.log = open(self.log_path, "w")
        self.process = subprocess.Popen(command, cwd=REPOSITORY_ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}: {Path(self.log.name).read_text()[-3000:]}")
            try:
                if httpx.get(self.base_url + "/readyz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError("server did not become ready: " + Path(self.log.name).read_text()[-3000:])

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.log.close()


def start_server(tmp_path: Path, models_dir: Path, command: list[str] | None = None, **env_overrides: str) -> Server:
    port = free_port()
    env = dict(os.environ, RNNSERVE_MODELS_DIR=str(models_dir), RNNSERVE_SERVE_SHIPPED_MODELS="false", RNNSERVE_DEVICE="cpu", RNNSERVE_TEST_LOG=str(tmp_path / f"server-{port}.log"))
    env.update(env_overrides)
    command = command or [sys.executable, "-m", "uvicorn", "--factory", "app.main:create_app", "--host", "127.0.0.1", "--port", "{port}"]
    server = Server([part.replace("{port}", str(port)) for part in command], env, port)
    server.wait_ready()
    return server


@pytest.fixture()
def server(tmp_path, tiny_models_dir):
    server = start_server(tmp_path, tiny_models_dir)
    yield server
    server.stop()
