"""Schemathesis against the app's own OpenAPI schema on a real uvicorn: generated requests
(bounded, derandomized) never get a 5xx, and successful responses match the schema."""
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings

from tests.e2e.conftest import start_server


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory, all_models_dir):
    server = start_server(tmp_path_factory.mktemp("fuzz"), all_models_dir, RNNSERVE_MAX_NEW_TOKENS="16",
                          RNNSERVE_REQUEST_TIMEOUT_S="20", RNNSERVE_LOG_LEVEL="WARNING")
    yield server
    server.stop()


def operations(server):
    schema = schemathesis.openapi.from_url(server.base_url + "/openapi.json")
    return [result.ok() for result in schema.get_all_operations()]


def test_no_server_errors_and_schema_conformance(fuzz_server):
    checked = []
    for operation in operations(fuzz_server):
        @given(case=operation.as_strategy())
        @settings(max_examples=25, derandomize=True, deadline=None, phases=[Phase.explicit, Phase.generate],
                  suppress_health_check=list(HealthCheck), database=None)
        def run(case):
            response = case.call(timeout=30)
            assert response.status_code < 500, f"{case.method} {case.path}: {response.status_code} {response.text[:300]}"
            content_type = response.headers.get("content-type", "")
            content_type = content_type[0] if isinstance(content_type, list) else content_type
            if response.status_code < 300 and content_type.startswith("application/json"):
                case.validate_response(response, checks=[schemathesis.checks.response_schema_conformance])

        run()
        checked.append(f"{operation.method.upper()} {operation.path}")
    assert {"POST /v1/generate", "POST /v1/score", "POST /v1/completions", "POST /v1/caption", "GET /v1/models"} <= set(checked)
