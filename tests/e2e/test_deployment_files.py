"""No Docker engine runs here: check the compose file and images by reading them, and run
the image's entry command locally."""
import json
import re
import sys

import httpx
import yaml

from tests.conftest import REPOSITORY_ROOT
from tests.e2e.conftest import start_server


def dockerfile_cmd(path) -> list[str]:
    match = re.search(r"^CMD\s+(\[.*\])\s*$", path.read_text(), re.MULTILINE)
    assert match, "Dockerfile has an exec-form CMD"
    return json.loads(match.group(1))


def test_compose_file_parses_with_service_redis_gpu_and_healthcheck():
    compose = yaml.safe_load((REPOSITORY_ROOT / "docker-compose.yml").read_text())
    service, redis = compose["services"]["rnnserve"], compose["services"]["redis"]
    assert service["build"]["dockerfile"] == "docker/Dockerfile"
    assert service["environment"]["RNNSERVE_REDIS_URL"].startswith("redis://redis:")
    assert service["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]
    assert "/readyz" in " ".join(service["healthcheck"]["test"])
    assert any(volume.endswith(":/models:ro") for volume in service["volumes"])
    assert redis["image"].startswith("redis:")


def test_dockerfiles_copy_what_exists():
    for name in ("Dockerfile", "Dockerfile.train"):
        for line in (REPOSITORY_ROOT / "docker" / name).read_text().splitlines():
            if line.startswith("COPY "):
                for source in line.split()[1:-1]:
                    assert (REPOSITORY_ROOT / source).exists(), f"{name}: {source}"


def test_image_entry_command_starts_the_app(tmp_path, tiny_models_dir):
    command = dockerfile_cmd(REPOSITORY_ROOT / "docker" / "Dockerfile")
    assert command[:3] == ["uvicorn", "--factory", "app.main:create_app"]
    local = [sys.executable, "-m"] + command
    local[local.index("--port") + 1] = "{port}"
    local[local.index("--host") + 1] = "127.0.0.1"
    server = start_server(tmp_path, tiny_models_dir, local)
    try:
        assert httpx.get(server.base_url + "/v1/models").json()["data"][0]["id"] == "tiny-word-lstm"
    finally:
        server.stop()
