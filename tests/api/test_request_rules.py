"""Rules every endpoint shares: text that UTF-8 cannot encode and non-finite numbers are
refused where the request is read, a parameter that cannot apply is a 422 naming it, a body in
the wrong media type is a 415 saying which one is expected, and limits on how many items a
request holds answer alike."""
import json

import pytest

from tests.api.test_bad_input import assert_error

SURROGATE = "\ud800"  # a lone surrogate: JSON can spell it ("\ud800"), UTF-8 cannot encode it
HYPOTHESES = [{"text": "the cat sat on the mat .", "acoustic_score": -10.0}, {"text": "the dog sat .", "acoustic_score": -12.0}]


def post_json(client, path: str, body: dict):
    """The body as JSON with escapes, the way any client sends a lone surrogate."""
    return client.post(path, content=json.dumps(body), headers={"content-type": "application/json"})


@pytest.mark.parametrize("path, body, param", [
    ("/v1/score", {"texts": ["the cat", "sat" + SURROGATE]}, "texts.1"),
    ("/v1/score", {"tokens": [["the", SURROGATE]]}, "tokens.0.1"),
    ("/v1/rescore", {"utterances": [{"id": "u1", "hypotheses": [{"text": SURROGATE}]}]}, "utterances.0.hypotheses.0.text"),
    ("/v1/rescore", {"utterances": [{"id": SURROGATE, "hypotheses": [{"text": "the cat"}]}]}, "utterances.0.id"),
    ("/v1/rescore", {"utterances": [{"id": "u1", "context": SURROGATE, "hypotheses": [{"text": "the cat"}]}]}, "utterances.0.context"),
    ("/v1/completions", {"prompt": "the " + SURROGATE}, "prompt"),
    ("/v1/completions", {"prompt": ["the cat", SURROGATE]}, "prompt.1"),
    ("/v1/completions", {"prompt": "the cat", "stop": SURROGATE}, "stop"),
    ("/v1/completions", {"prompt": "the cat", "user": SURROGATE}, "user"),
    ("/v1/generate", {"prompt": "the cat", "stop": [SURROGATE]}, "stop.0"),
    ("/v1/generate", {"prompt": SURROGATE}, "prompt"),
    ("/v1/generate", {"prompt": "the cat", "model": SURROGATE}, "model"),
])
def test_text_utf8_cannot_encode_is_refused_naming_the_field(client, path, body, param):
    response = post_json(client, path, body)
    assert_error(response, 422, param)
    assert "lone surrogate" in response.json()["error"]["message"]


def test_a_field_named_with_a_lone_surrogate_is_refused(client):
    response = post_json(client, "/v1/generate", {"prompt": "the cat", SURROGATE: 1})
    assert_error(response, 422)
    assert "lone surrogate" in response.json()["error"]["message"]


@pytest.mark.parametrize("path, raw, param", [
    ("/v1/rescore", '{"acoustic_weight": 1e400, "utterances": [{"id": "u", "hypotheses": [{"text": "a"}]}]}', "acoustic_weight"),
    ("/v1/rescore", '{"utterances": [{"id": "u", "hypotheses": [{"text": "a", "acoustic_score": -1e400}]}]}',
     "utterances.0.hypotheses.0.acoustic_score"),
    ("/v1/rescore", '{"models": [{"model": "tiny-word-lstm", "weight": 1e400}], "utterances": [{"id": "u", "hypotheses": [{"text": "a"}]}]}',
     "models.0.weight"),
    ("/v1/completions", '{"prompt": "the cat", "temperature": 1e400}', "temperature"),
    ("/v1/completions", '{"prompt": "the cat", "logit_bias": {"50": 1e400}}', "logit_bias.50"),
])
def test_numbers_beyond_a_float_are_refused_everywhere(client, path, raw, param):
    # 1e400 is valid JSON that Python reads as infinity.
    assert_error(client.post(path, content=raw, headers={"content-type": "application/json"}), 422, param)


def test_a_rescoring_score_that_overflows_names_its_weight_and_score(client):
    body = {"acoustic_weight": 1e308, "utterances": [{"id": "u1", "hypotheses": [{"text": "the cat", "acoustic_score": 1e308}]}]}
    response = client.post("/v1/rescore", json=body)
    assert_error(response, 422, "acoustic_weight")
    assert "acoustic_weight × acoustic_score = 1e+308 × 1e+308" in response.json()["error"]["message"]
    assert "utterances.0.hypotheses.0" in response.json()["error"]["message"]
    penalty = {"word_insertion_penalty": 1e308, "utterances": [{"id": "u1", "hypotheses": [{"text": "the cat sat"}]}]}
    assert_error(client.post("/v1/rescore", json=penalty), 422, "word_insertion_penalty")
    # Large but finite: ranked as usual.
    finite = {"acoustic_weight": 1e300, "utterances": [{"id": "u1", "hypotheses": HYPOTHESES}]}
    result = client.post("/v1/rescore", json=finite).json()["results"][0]
    assert result["best"] == 0 and all(isinstance(h["score"], float) for h in result["hypotheses"])


@pytest.mark.parametrize("path, body, param", [
    ("/v1/generate", {"prompt": "the cat", "strategy": "argmax", "n": 3}, "n"),
    ("/v1/generate", {"prompt": "the cat", "strategy": "argmax", "temperature": 0.7}, "temperature"),
    ("/v1/generate", {"prompt": "the cat", "strategy": "argmax", "top_p": 0.9}, "top_p"),
    ("/v1/generate", {"prompt": "the cat", "strategy": "argmax", "top_k": 5}, "top_k"),
    ("/v1/generate", {"prompt": "the cat", "temperature": 0, "n": 2}, "n"),
    ("/v1/generate", {"prompt": "the cat", "strategy": "top_k", "temperature": 0, "top_k": 5}, "top_k"),
    ("/v1/completions", {"prompt": "the cat", "temperature": 0, "n": 2}, "n"),
    ("/v1/completions", {"prompt": "the cat", "temperature": 0, "top_p": 0.5}, "top_p"),
    ("/v1/completions", {"prompt": "the cat", "stream_options": {"include_usage": True}}, "stream_options"),
    ("/v1/completions", {"prompt": "the cat", "stream": True, "echo": True}, "echo"),
    ("/v1/rescore", {"lm_weight": 2.0, "utterances": [{"id": "u1", "hypotheses": HYPOTHESES}]}, "lm_weight"),
    ("/v1/rescore", {"acoustic_weight": 0.5, "utterances": [{"id": "u1", "hypotheses": [{"text": "the cat"}]}]}, "acoustic_weight"),
    ("/v1/rescore", {"interpolation": "linear", "utterances": [{"id": "u1", "hypotheses": HYPOTHESES}]}, "models"),
    ("/v1/score", {"texts": ["the cat"], "interpolation": "linear"}, "interpolation"),
])
def test_a_parameter_that_cannot_apply_is_refused_naming_it(client, path, body, param):
    response = client.post(path, json=body)
    assert_error(response, 422, param)
    assert param.split(".")[0] in response.json()["error"]["message"]


@pytest.mark.parametrize("path, body", [
    # Neutral values change nothing, so they are no conflict (clients often send them always).
    ("/v1/generate", {"prompt": "the cat", "strategy": "argmax", "temperature": 1.0, "top_p": 1.0, "n": 1}),
    ("/v1/generate", {"prompt": "the cat", "strategy": "argmax", "temperature": 0}),
    # A seed asks for a reproducible answer, which argmax gives.
    ("/v1/generate", {"prompt": "the cat", "strategy": "argmax", "seed": 3}),
    # OpenAI's semantics: temperature 0 is argmax, with its clients' usual top_p 1 and a seed.
    ("/v1/completions", {"model": "tiny-word-lstm", "prompt": "the cat", "temperature": 0, "top_p": 1, "seed": 1, "n": 1}),
    ("/v1/rescore", {"lm_weight": 1.0, "acoustic_weight": 1.0, "utterances": [{"id": "u1", "hypotheses": [{"text": "the cat"}]}]}),
])
def test_what_applies_or_changes_nothing_is_accepted(client, path, body):
    response = client.post(path, json={"max_tokens": 3, **body} if path != "/v1/rescore" else body)
    assert response.status_code == 200, response.text


def test_argmax_gives_one_choice_where_it_once_gave_copies(client):
    response = client.post("/v1/generate", json={"prompt": "the cat", "strategy": "argmax", "n": 3, "max_tokens": 4})
    assert_error(response, 422, "n")
    assert "argmax gives one output" in response.json()["error"]["message"]


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"])
def test_json_in_another_media_type_is_415_saying_which_is_expected(client, content_type):
    response = client.post("/v1/generate", content=b'{"prompt": "the cat"}', headers={"content-type": content_type})
    assert_error(response, 415)
    message = response.json()["error"]["message"]
    assert "application/json" in message and content_type.split(";")[0] in message
    assert response.json()["error"]["type"] == "unsupported_media_type"


def test_json_without_a_content_type_is_415_saying_so(client):
    response = client.post("/v1/score", content=b'{"texts": ["the cat"]}')
    assert_error(response, 415)
    assert "application/json" in response.json()["error"]["message"] and "no Content-Type" in response.json()["error"]["message"]


@pytest.mark.parametrize("path", ["/v1/generate", "/v1/score", "/v1/rescore", "/v1/completions"])
def test_an_empty_body_is_400(client, path):
    for headers in ({"content-type": "application/json"}, {}):
        response = client.post(path, content=b"", headers=headers)
        assert_error(response, 400)
        assert "empty" in response.json()["error"]["message"]


def test_the_caption_form_in_another_media_type_is_415(client):
    response = client.post("/v1/caption", json={"strategy": "beam"})
    assert_error(response, 415)
    assert "multipart/form-data" in response.json()["error"]["message"]


def test_415_is_in_the_openapi_schema(client):
    operation = client.get("/openapi.json").json()["paths"]["/v1/generate"]["post"]
    assert "415" in operation["responses"]


def test_too_many_texts_and_too_many_hypotheses_answer_alike(make_client):
    client = make_client(max_score_texts=2, max_rescore_utterances=1, max_rescore_hypotheses=2, max_rescore_hypotheses_total=2)
    cases = [("/v1/score", {"texts": ["a", "b", "c"]}, "texts"),
             ("/v1/score", {"tokens": [["a"], ["b"], ["c"]]}, "tokens"),
             ("/v1/rescore", {"utterances": [{"id": "u", "hypotheses": [{"text": t} for t in "abc"]}]}, "utterances.0.hypotheses"),
             ("/v1/rescore", {"utterances": [{"id": u, "hypotheses": [{"text": "a"}]} for u in "uv"]}, "utterances")]
    for path, body, param in cases:
        response = client.post(path, json=body)
        assert_error(response, 422, param)
        assert "at most" in response.json()["error"]["message"]


def test_every_request_model_refuses_non_finite_numbers_and_unknown_fields():
    import app.openai_schemas  # noqa: F401 - defines its request models
    import app.rescore_schemas  # noqa: F401
    from app.schemas import RequestModel

    def subclasses(model):
        return [model] + [found for sub in model.__subclasses__() for found in subclasses(sub)]

    models = {model.__name__: model for model in subclasses(RequestModel)[1:]}
    assert {"GenerateRequest", "CompletionRequest", "StreamOptions", "ScoreRequest", "WeightedModel", "RescoreRequest",
            "Utterance", "Hypothesis", "CaptionRequest"} <= set(models)
    for name, model in models.items():
        assert model.model_config["allow_inf_nan"] is False, name
        # OpenAI's stream options may grow fields its clients send; everything else is ours.
        assert model.model_config["extra"] == ("ignore" if name == "StreamOptions" else "forbid"), name
