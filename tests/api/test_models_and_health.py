def test_models_lists_metrics_and_default(client):
    body = client.get("/v1/models").json()
    assert body["object"] == "list"
    (card,) = body["data"]
    assert card["id"] == "tiny-word-lstm" and card["object"] == "model"
    assert card["type"] == "language_model" and card["level"] == "word" and card["default"] is True
    assert len(card["revision"]) == 64 and card["parameters"] > 0
    assert "valid_ppl" in card["metrics"]


def test_health_and_readiness(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["models"] == ["tiny-word-lstm"]


def test_not_ready_without_models(make_client, tmp_path):
    client = make_client(models_dir=tmp_path)
    response = client.get("/readyz")
    assert response.status_code == 503 and response.json()["error"]["type"] == "service_unavailable"
    generate = client.post("/v1/generate", json={"prompt": "hello"})
    assert generate.status_code == 404 and "no language model" in generate.json()["error"]["message"]


def test_broken_model_directory_is_reported_not_fatal(make_client, copy_of_models):
    broken = copy_of_models / "broken"
    broken.mkdir()
    (broken / "config.json").write_text('{"format_version": 1, "model_type": "rnn_lm"}')
    client = make_client(models_dir=copy_of_models)
    body = client.get("/readyz").json()
    assert body["models"] == ["tiny-word-lstm"] and "broken" in body["failed_models"]


def test_openapi_schema_is_served(client):
    assert "/v1/generate" in client.get("/openapi.json").json()["paths"]
