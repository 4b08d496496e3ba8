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


def test_docs_are_served_from_the_package_and_labelled_in_metrics(client):
    page = client.get("/docs")
    assert page.status_code == 200 and "cdn" not in page.text.lower()
    assets = [part.split('"')[0] for part in page.text.split('src="')[1:]] + [part.split('"')[0] for part in page.text.split('href="')[1:]]
    assert assets and all(asset.startswith("/") for asset in assets)
    assert all(client.get(asset).status_code == 200 for asset in assets)
    client.get("/openapi.json")
    metrics = client.get("/metrics").text
    assert 'endpoint="/docs"' in metrics and 'endpoint="/openapi.json"' in metrics


def test_models_offer_an_example_prompt(make_client, tiny_models_dir):
    client = make_client(serve_shipped_models=True)
    cards = {card["id"]: card for card in client.get("/v1/models").json()["data"]}
    assert cards["wikitext2-lstm"]["example_prompt"] == "The game was released in"
    assert cards["shakespeare-char-lstm"]["example_prompt"] == "ROMEO:"
    assert cards["tiny-word-lstm"]["example_prompt"] is None
