from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from app.settings import Settings


@pytest.fixture()
def make_client(tiny_models_dir):
    """Build a client over the tiny model with settings overrides; closes it afterwards."""
    clients = []

    def build(**overrides) -> TestClient:
        settings = Settings(models_dir=overrides.pop("models_dir", tiny_models_dir), device="cpu", **overrides)
        client = TestClient(create_app(settings))
        client.__enter__()
        clients.append(client)
        return client

    yield build
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture()
def client(make_client) -> TestClient:
    return make_client()
