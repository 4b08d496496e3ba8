from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from app.settings import Settings


def open_client(models_dir, **overrides) -> TestClient:
    overrides.setdefault("serve_shipped_models", False)
    settings = Settings(models_dir=models_dir, device="cpu", log_json=False, **overrides)
    client = TestClient(create_app(settings))
    client.__enter__()
    return client


@pytest.fixture()
def make_client(tiny_models_dir):
    """Build a client with settings overrides (its own app and workers); closed afterwards."""
    clients = []

    def build(**overrides) -> TestClient:
        client = open_client(overrides.pop("models_dir", tiny_models_dir), **overrides)
        clients.append(client)
        return client

    yield build
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture(scope="session")
def client(tiny_models_dir) -> TestClient:
    """One app over the tiny model shared by the tests that need no special settings (tests
    that look at caching use requests of their own)."""
    client = open_client(tiny_models_dir)
    yield client
    client.__exit__(None, None, None)
