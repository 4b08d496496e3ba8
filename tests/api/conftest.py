"""App clients for the API tests.

Starting and stopping an app is most of what an API test costs, so the tests of one module that
ask `make_client` for the same settings share one app, and `client` is one app for the whole
session. Before a test takes a shared app, `forget_requests` drops what earlier tests' requests
left in it (cached results, rate-limit buckets, sessions): a test sees what a fresh app would
show it, except the metrics, which count from the app's start (tests read them as differences).
An app with a Redis URL is never shared, since its state lives in that Redis."""
from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from app.cache import InProcessLRU
from app.main import create_app
from app.rate_limit import RateLimiter
from app.sessions.store import SessionStore
from app.settings import Settings


def open_client(models_dir, **overrides) -> TestClient:
    """An app over `models_dir` with its workers started. The workers are threads unless a
    test asks for `worker_mode="process"`: what the API tests check is the same either way, and
    a worker process takes seconds to start (it imports torch). The tests of what only a process
    does (a killed worker) name it, and the e2e tests' servers run the default, processes.
    A thread worker's torch thread count is the test process's (MKL's is process-wide), so
    its one-thread rule for small steps is off unless a test sets `single_thread_rows`."""
    overrides.setdefault("serve_shipped_models", False)
    if overrides.setdefault("worker_mode", "thread") == "thread":
        overrides.setdefault("single_thread_rows", 0)
    settings = Settings(models_dir=models_dir, device="cpu", log_json=False, **overrides)
    client = TestClient(create_app(settings))
    client.__enter__()
    return client


def close(client: TestClient) -> None:
    client.__exit__(None, None, None)


def forget_requests(client: TestClient) -> TestClient:
    """Drop what earlier requests left in a running app: its cached results, rate-limit buckets
    and sessions (those it holds itself: what is in Redis stays there). The models, workers and
    metrics stay."""
    state = client.app.state
    if isinstance(state.cache.backend, InProcessLRU):
        state.cache.backend = InProcessLRU(state.cache.backend.max_entries)
    state.rate_limiter = RateLimiter(state.rate_limiter.rate, state.rate_limiter.burst, state.rate_limiter.redis)
    state.sessions = SessionStore(state.sessions.limits, state.sessions.redis)
    return client


@pytest.fixture(scope="module")
def module_clients():
    """The apps a module's tests share, by their settings; stopped after the module."""
    clients: dict[str, TestClient] = {}
    yield clients
    for client in clients.values():
        close(client)


@pytest.fixture()
def make_client(tiny_models_dir, module_clients):
    """A client of an app with these settings overrides (over the tiny model unless
    `models_dir` is one of them): the module's shared app with those settings, or, when the
    test already holds that one or the settings name Redis, an app of its own, stopped after
    the test."""
    own: list[TestClient] = []
    taken: set[str] = set()

    def build(**overrides) -> TestClient:
        overrides.setdefault("models_dir", tiny_models_dir)
        key = repr(sorted((name, repr(value)) for name, value in overrides.items()))
        shared = module_clients.get(key) if key not in taken else None
        if shared is not None:
            taken.add(key)
            return forget_requests(shared)
        client = open_client(**overrides)
        if client.app.state.settings.redis_url or key in taken:
            own.append(client)
        else:
            module_clients[key] = client
            taken.add(key)
        return client

    yield build
    for client in own:
        close(client)


@pytest.fixture(scope="session")
def tiny_model_client(tiny_models_dir) -> TestClient:
    client = open_client(tiny_models_dir)
    yield client
    close(client)


@pytest.fixture()
def client(tiny_model_client) -> TestClient:
    """The app over the tiny model with the default settings, shared by the whole session."""
    return forget_requests(tiny_model_client)
