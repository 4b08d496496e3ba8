"""POST /v1/rescore: n-best lists reranked by language models combined log-linearly with the
acoustic scores, through /v1/score's batching, cached, with limits."""
import math
import shutil

import pytest

N_BEST = {"id": "u1", "hypotheses": [
    {"text": "mat the on sat cat the .", "acoustic_score": -10.0},
    {"text": "the cat sat on the mat .", "acoustic_score": -12.0},
    {"text": "the cat sat on the zebra .", "acoustic_score": -11.0},
]}


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory, tiny_model_path, tiny_ngram_path):
    directory = tmp_path_factory.mktemp("rescore-models")
    shutil.copytree(tiny_model_path, directory / tiny_model_path.name)
    shutil.copytree(tiny_ngram_path, directory / tiny_ngram_path.name)
    return directory


@pytest.fixture()
def client(make_client, models_dir):
    return make_client(models_dir=models_dir, max_rescore_utterances=4, max_rescore_hypotheses=5)


def test_language_model_scores_rerank_the_list(client):
    body = client.post("/v1/rescore", json={"utterances": [N_BEST]}).json()
    assert body["models"] == [{"model": "tiny-word-lstm", "weight": 1.0}] and body["cached"] is False
    (result,) = body["results"]
    assert result["id"] == "u1" and result["best"] == 1 and result["ranking"][0] == 1
    texts = [h["text"] for h in N_BEST["hypotheses"]]
    scored = client.post("/v1/score", json={"texts": texts}).json()["results"]
    for hypothesis, score, sent in zip(result["hypotheses"], scored, N_BEST["hypotheses"]):
        assert hypothesis["lm_logprobs"] == {"tiny-word-lstm": score["logprob"]}  # the same numbers as /v1/score
        assert hypothesis["num_words"] == len(sent["text"].split())
        assert hypothesis["score"] == pytest.approx(sent["acoustic_score"] + score["logprob"], abs=1e-5)
    assert client.post("/v1/rescore", json={"utterances": [N_BEST]}).json()["cached"] is True


def test_weights_penalty_and_several_models(client):
    body = {"models": [{"model": "tiny-word-lstm", "weight": 0.5}, {"model": "tiny-kn3", "weight": 0.25}],
            "acoustic_weight": 2.0, "word_insertion_penalty": 1.5, "utterances": [N_BEST]}
    (result,) = client.post("/v1/rescore", json=body).json()["results"]
    for hypothesis in result["hypotheses"]:
        lm = hypothesis["lm_logprobs"]
        expected = 2.0 * hypothesis["acoustic_score"] + 0.5 * lm["tiny-word-lstm"] + 0.25 * lm["tiny-kn3"] + 1.5 * hypothesis["num_words"]
        assert set(lm) == {"tiny-word-lstm", "tiny-kn3"} and hypothesis["score"] == pytest.approx(expected, abs=1e-5)
    assert result["ranking"] == sorted(range(3), key=lambda i: -result["hypotheses"][i]["score"])
    # A large acoustic weight hands the decision back to the recogniser.
    (acoustic,) = client.post("/v1/rescore", json={"acoustic_weight": 1000.0, "utterances": [N_BEST]}).json()["results"]
    assert acoustic["best"] == 0


def test_unknown_words_are_spelled_unless_asked_otherwise(client):
    spelled = client.post("/v1/rescore", json={"utterances": [N_BEST]}).json()["results"][0]["hypotheses"][2]
    unk = client.post("/v1/rescore", json={"unknown_words": "unk", "utterances": [N_BEST]}).json()["results"][0]["hypotheses"][2]
    assert spelled["lm_logprobs"]["tiny-word-lstm"] < unk["lm_logprobs"]["tiny-word-lstm"]


def test_language_model_only_and_context(client):
    plain = {"id": "u2", "hypotheses": [{"text": "sat on the mat ."}, {"text": "sat on the door ."}]}
    body = client.post("/v1/rescore", json={"utterances": [plain, {**plain, "id": "u3", "context": "the cat"}]}).json()
    without, with_context = body["results"]
    assert all(h["acoustic_score"] is None for h in without["hypotheses"])
    assert without["hypotheses"][0]["score"] == without["hypotheses"][0]["lm_logprobs"]["tiny-word-lstm"]
    # The context is read first, not scored: the same words get other probabilities after it.
    assert with_context["hypotheses"][0]["lm_logprobs"] != without["hypotheses"][0]["lm_logprobs"]
    assert all(math.isfinite(h["score"]) for h in with_context["hypotheses"])


@pytest.mark.parametrize("body, status, param", [
    ({"utterances": [N_BEST] * 5}, 422, "utterances"),
    ({"utterances": [{"id": "x", "hypotheses": [{"text": "a"}] * 6}]}, 422, "utterances.0.hypotheses"),
    ({"utterances": [{"id": "x", "hypotheses": [{"text": "a", "acoustic_score": -1}, {"text": "b"}]}]}, 422, "utterances.0.hypotheses"),
    ({"models": [{"model": "nope"}], "utterances": [N_BEST]}, 404, "models.0.model"),
    ({"models": [{"model": "tiny-kn3"}, {"model": "tiny-kn3"}], "utterances": [N_BEST]}, 422, "models"),
    ({"utterances": []}, 422, None),
    ({"utterances": [{"id": "x", "hypotheses": []}]}, 422, None),
    ({"utterances": [N_BEST], "acoustic_wieght": 1}, 422, None),
    ({"utterances": [{"id": "x", "hypotheses": [{"text": "a", "acoustic_score": "loud"}]}]}, 422, None),
])
def test_bad_requests(client, body, status, param):
    response = client.post("/v1/rescore", json=body)
    assert response.status_code == status, response.text
    if param:
        assert response.json()["error"]["param"] == param


def test_openapi_has_an_example(client):
    schema = client.get("/openapi.json").json()
    assert "/v1/rescore" in schema["paths"]
    assert schema["components"]["schemas"]["RescoreRequest"]["examples"][0]["utterances"]


def timed(text: str, seconds_per_word: float = 0.25) -> list[dict]:
    return [{"word": w, "start": i * seconds_per_word, "end": (i + 1) * seconds_per_word} for i, w in enumerate(text.split())]


TIMED = {"id": "u-timed", "hypotheses": [{**h, "words": timed(h["text"])} for h in N_BEST["hypotheses"]]}


def test_posteriors_and_word_confidences(client):
    (result,) = client.post("/v1/rescore", json={"posterior_scale": 0.5, "utterances": [N_BEST]}).json()["results"]
    hypotheses = result["hypotheses"]
    posteriors = [h["posterior"] for h in hypotheses]
    assert math.fsum(posteriors) == pytest.approx(1.0, abs=1e-12)
    # softmax of 0.5 × score over the list
    exponents = [0.5 * h["score"] for h in hypotheses]
    top = max(exponents)
    expected = [math.exp(e - top) / math.fsum(math.exp(x - top) for x in exponents) for e in exponents]
    assert posteriors == pytest.approx(expected, abs=1e-5)
    best = result["best"]
    assert [w["word"] for w in result["words"]] == hypotheses[best]["text"].split()
    # "the cat sat on the" is shared by the best hypothesis (1) and hypothesis 2; "mat" by 1 and
    # 0 (same word, other position: hypothesis 0 is the same words in another order).
    assert best == 1
    confidences = [w["confidence"] for w in result["words"]]
    assert all(posteriors[1] - 1e-6 <= c <= 1 + 1e-9 for c in confidences)
    assert confidences[1] == pytest.approx(posteriors[1] + posteriors[2], abs=1e-5)  # "cat"
    assert result["words"][0]["start"] is None and result["ctm"] is None
    assert client.post("/v1/rescore", json={"utterances": [N_BEST]}).json()["decision"] == "map"


def test_one_hypothesis_is_certain(client):
    (result,) = client.post("/v1/rescore", json={"utterances": [{"id": "one", "hypotheses": [{"text": "the cat sat ."}]}]}).json()["results"]
    assert result["hypotheses"][0]["posterior"] == 1.0
    assert [w["confidence"] for w in result["words"]] == [1.0, 1.0, 1.0, 1.0]


def test_times_pass_through_and_ctm(client):
    body = {"format": "ctm", "posterior_scale": 0.5, "utterances": [TIMED]}
    (result,) = client.post("/v1/rescore", json=body).json()["results"]
    chosen = TIMED["hypotheses"][result["best"]]["words"]
    assert [(w["word"], w["start"], w["end"]) for w in result["words"]] == [(w["word"], w["start"], w["end"]) for w in chosen]
    lines = result["ctm"].splitlines()
    assert result["ctm"].endswith("\n") and len(lines) == len(chosen)
    first = lines[0].split()
    assert first == ["u-timed", "1", "0.000", "0.250", chosen[0]["word"], f"{result['words'][0]['confidence']:.4f}"]
    assert lines[3].split()[2:4] == ["0.750", "0.250"]
    # Times without ctm: passed through, no CTM text.
    (plain,) = client.post("/v1/rescore", json={"utterances": [TIMED]}).json()["results"]
    assert plain["words"][0]["start"] == 0.0 and plain["ctm"] is None


def test_mbr_decision_keeps_the_map_ranking(client):
    # Three near-copies of one sentence outweigh the single best-scored hypothesis: MAP takes
    # the top score, MBR the hypothesis closest to the others.
    utterance = {"id": "m", "hypotheses": [
        {"text": "a b c d", "acoustic_score": 0.0},
        {"text": "w x y z", "acoustic_score": -0.5},
        {"text": "w x y q", "acoustic_score": -0.6},
        {"text": "w x r z", "acoustic_score": -0.7},
    ]}
    body = {"models": [{"model": "tiny-word-lstm", "weight": 0.0}], "utterances": [utterance]}
    (map_result,) = client.post("/v1/rescore", json=body).json()["results"]
    (mbr_result,) = client.post("/v1/rescore", json={**body, "decision": "mbr"}).json()["results"]
    assert map_result["best"] == 0 and map_result["ranking"] == [0, 1, 2, 3]
    assert all(h["expected_errors"] is None for h in map_result["hypotheses"])
    assert mbr_result["best"] == 1 and mbr_result["ranking"] == [0, 1, 2, 3]
    posteriors = [h["posterior"] for h in mbr_result["hypotheses"]]
    distances = [[0, 4, 4, 4], [4, 0, 1, 1], [4, 1, 0, 2], [4, 1, 2, 0]]
    for i, hypothesis in enumerate(mbr_result["hypotheses"]):
        assert hypothesis["expected_errors"] == pytest.approx(sum(p * d for p, d in zip(posteriors, distances[i])), abs=1e-5)
    assert [w["word"] for w in mbr_result["words"]] == ["w", "x", "y", "z"]


def test_named_scores_and_negative_weights(client):
    utterance = {"id": "n", "hypotheses": [{**h, "scores": {"ctc": -3.0 * i, "duration": 1.5}} for i, h in enumerate(N_BEST["hypotheses"])]}
    body = {"models": [{"model": "tiny-word-lstm", "weight": 1.0}, {"model": "tiny-kn3", "weight": -0.5}],
            "score_weights": {"ctc": 2.0, "duration": -1.0}, "utterances": [utterance]}
    response = client.post("/v1/rescore", json=body)
    assert response.status_code == 200, response.text
    (result,) = response.json()["results"]
    for i, hypothesis in enumerate(result["hypotheses"]):
        lm = hypothesis["lm_logprobs"]
        expected = hypothesis["acoustic_score"] + 2.0 * (-3.0 * i) - 1.5 + lm["tiny-word-lstm"] - 0.5 * lm["tiny-kn3"]
        assert hypothesis["score"] == pytest.approx(expected, abs=1e-5)
        assert hypothesis["scores"] == {"ctc": -3.0 * i, "duration": 1.5}
    assert result["ranking"] == sorted(range(3), key=lambda i: -result["hypotheses"][i]["score"])
    # The fields are part of the cache key: other weights, other answer.
    other = client.post("/v1/rescore", json={**body, "score_weights": {"ctc": 0.0, "duration": -1.0}}).json()
    assert other["cached"] is False and other["results"][0]["hypotheses"][1]["score"] != result["hypotheses"][1]["score"]
    again = client.post("/v1/rescore", json=body).json()
    assert again["cached"] is True and again["results"] == response.json()["results"]
    assert client.post("/v1/rescore", json={**body, "decision": "mbr"}).json()["cached"] is False


def with_hypothesis(index: int, **changes) -> dict:
    hypotheses = [dict(h) for h in TIMED["hypotheses"]]
    hypotheses[index] = {**hypotheses[index], **changes}
    return {"id": "x", "hypotheses": hypotheses}


SCORED = {"id": "s", "hypotheses": [{"text": "the cat", "scores": {"ctc": -1.0}}, {"text": "the dog", "scores": {"ctc": -2.0}}]}


@pytest.mark.parametrize("body, param, says", [
    ({"utterances": [SCORED]}, "score_weights", "'ctc'"),
    ({"score_weights": {"ctc": 1.0, "lm2": 1.0}, "utterances": [SCORED]}, "utterances.0.hypotheses.0.scores", "'lm2'"),
    ({"score_weights": {"ctc": 1.0}, "utterances": [{"id": "s", "hypotheses": [SCORED["hypotheses"][0], {"text": "the dog"}]}]},
     "utterances.0.hypotheses.1.scores", "'ctc'"),
    ({"score_weights": {"ctc": 1.0}, "utterances": [{"id": "s", "hypotheses": [
        SCORED["hypotheses"][0], {"text": "the dog", "scores": {"ctc": -2.0, "am2": 0.0}}]}]}, "score_weights", "'am2'"),
    ({"score_weights": {"ctc": 1e308}, "utterances": [{"id": "s", "hypotheses": [{"text": "a", "scores": {"ctc": -1e308}}]}]},
     "score_weights.ctc", "overflows"),
    ({"utterances": [with_hypothesis(1, words=timed("the cat sat on the mat"))]}, "utterances.0.hypotheses.1.words", "words"),
    ({"utterances": [with_hypothesis(0, words=timed("mat the on sat cat a ."))]}, "utterances.0.hypotheses.0.words", "word 5"),
    ({"utterances": [with_hypothesis(0, words=[{"word": "mat", "start": 2.0, "end": 1.0}] + timed("the on sat cat the ."))]},
     "utterances.0.hypotheses.0.words.0.end", "ends"),
    ({"utterances": [with_hypothesis(0, words=[{"word": "mat", "start": -1.0, "end": 1.0}] + timed("the on sat cat the ."))]},
     "utterances.0.hypotheses.0.words.0.start", None),
    ({"utterances": [with_hypothesis(2, words=None)]}, "utterances.0.hypotheses", "times"),
    ({"format": "ctm", "utterances": [N_BEST]}, "utterances.0.hypotheses.0.words", "times"),
    ({"format": "ctm", "utterances": [{**TIMED, "id": "has space"}]}, "utterances.0.id", "white space"),
    ({"posterior_scale": 0, "utterances": [N_BEST]}, "posterior_scale", None),
    ({"posterior_scale": -1.0, "utterances": [N_BEST]}, "posterior_scale", None),
    ({"decision": "bayes", "utterances": [N_BEST]}, "decision", None),
    ({"format": "srt", "utterances": [N_BEST]}, "format", None),
    ({"score_weights": {"": 1.0}, "utterances": [N_BEST]}, "score_weights", None),
])
def test_bad_new_fields_name_the_field(client, body, param, says):
    response = client.post("/v1/rescore", json=body)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["param"] is not None and error["param"].startswith(param), error
    if says:
        assert says in error["message"], error


def test_posterior_scale_beyond_a_float_is_refused(client):
    raw = '{"posterior_scale": 1e400, "utterances": [{"id": "u", "hypotheses": [{"text": "a"}]}]}'
    response = client.post("/v1/rescore", content=raw, headers={"content-type": "application/json"})
    assert response.status_code == 422 and response.json()["error"]["param"] == "posterior_scale"


def test_huge_scores_and_scales_give_finite_posteriors(client):
    utterance = {"id": "h", "hypotheses": [{"text": "the cat", "acoustic_score": 1e300}, {"text": "the dog", "acoustic_score": -1e300},
                                           {"text": "a cat", "acoustic_score": 1e300}]}
    for scale in (5e-324, 1.0, 1e308):
        body = {"posterior_scale": scale, "decision": "mbr", "utterances": [utterance]}
        response = client.post("/v1/rescore", json=body)
        assert response.status_code == 200, response.text
        (result,) = response.json()["results"]
        posteriors = [h["posterior"] for h in result["hypotheses"]]
        assert all(math.isfinite(p) and 0 <= p <= 1 for p in posteriors) and math.fsum(posteriors) == pytest.approx(1.0)
        assert all(0 <= w["confidence"] <= 1 for w in result["words"])


@pytest.fixture(scope="module")
def normalized_models_dir(tmp_path_factory, tiny_corpus, models_dir):
    """The rescoring models beside `tiny-recogniser-lm`: the tiny corpus in a recogniser's form
    (lower case, no punctuation), trained by `training.train_lm --text-normalization recogniser`."""
    from training.train_lm import main as train

    directory = tmp_path_factory.mktemp("normalized-models")
    for model in models_dir.iterdir():
        shutil.copytree(model, directory / model.name)
    train(["--data", str(tiny_corpus), "--level", "word", "--text-normalization", "recogniser", "--embedding-dim", "32",
           "--hidden-dim", "48", "--num-layers", "1", "--dropout", "0", "--batch-size", "16", "--bptt", "20", "--lr", "1e-2",
           "--epochs", "2", "--run-dir", str(tmp_path_factory.mktemp("normalized-run")),
           "--export-dir", str(directory / "tiny-recogniser-lm"), "--no-progress", "--seed", "7"])
    return directory


@pytest.fixture()
def normalized_client(make_client, normalized_models_dir):
    return make_client(models_dir=normalized_models_dir, default_rescoring_model="tiny-recogniser-lm",
                       default_language_model="tiny-word-lstm")


WRITTEN = {"id": "w", "context": "The cat sat.",
           "hypotheses": [{"text": "Mr. Smith paid $5."}, {"text": "mister smith paid five dollars"}]}


def test_a_normalised_model_reads_hypotheses_in_its_training_form(normalized_client, normalized_models_dir):
    import json

    config = json.loads((normalized_models_dir / "tiny-recogniser-lm" / "config.json").read_text())
    assert config["tokenizer"]["text_normalization"] == "recogniser"
    vocabulary = json.loads((normalized_models_dir / "tiny-recogniser-lm" / "vocab.json").read_text())
    assert "." not in str(vocabulary) and "the" in str(vocabulary)
    body = {"models": [{"model": "tiny-recogniser-lm"}, {"model": "tiny-word-lstm"}], "utterances": [WRITTEN]}
    written, spoken = normalized_client.post("/v1/rescore", json=body).json()["results"][0]["hypotheses"]
    assert written["text"] == "Mr. Smith paid $5."  # answered as sent
    assert written["lm_logprobs"]["tiny-recogniser-lm"] == spoken["lm_logprobs"]["tiny-recogniser-lm"]
    # A model trained on the text as written scores the two writings apart.
    assert written["lm_logprobs"]["tiny-word-lstm"] != spoken["lm_logprobs"]["tiny-word-lstm"]
    as_sent = normalized_client.post("/v1/rescore", json={**body, "normalize": False}).json()["results"][0]["hypotheses"]
    assert as_sent[0]["lm_logprobs"]["tiny-recogniser-lm"] != as_sent[1]["lm_logprobs"]["tiny-recogniser-lm"]
    assert as_sent[0]["lm_logprobs"]["tiny-word-lstm"] == written["lm_logprobs"]["tiny-word-lstm"]


def test_the_rescoring_default_is_the_normalised_model(normalized_client, client):
    response = normalized_client.post("/v1/rescore", json={"utterances": [N_BEST]})
    assert response.json()["models"] == [{"model": "tiny-recogniser-lm", "weight": 1.0}]
    # Generation and /v1/score keep the default language model.
    assert normalized_client.post("/v1/score", json={"texts": ["the cat"]}).json()["model"] == "tiny-word-lstm"
    # Where the rescoring default is not loaded, the default language model rescores.
    assert client.post("/v1/rescore", json={"utterances": [N_BEST]}).json()["models"][0]["model"] == "tiny-word-lstm"


def test_text_that_normalises_to_nothing_and_mixtures_of_two_forms(normalized_client):
    nothing = {"id": "p", "hypotheses": [{"text": "..."}, {"text": "the cat"}]}
    response = normalized_client.post("/v1/rescore", json={"utterances": [nothing]})
    assert response.status_code == 200, response.text
    mixed = {"models": [{"model": "tiny-recogniser-lm", "weight": 0.5}, {"model": "tiny-word-lstm", "weight": 0.5}],
             "interpolation": "linear", "utterances": [N_BEST]}
    response = normalized_client.post("/v1/rescore", json=mixed)
    assert response.status_code == 422 and response.json()["error"]["param"] == "interpolation", response.text
    assert "different forms" in response.json()["error"]["message"]
    assert normalized_client.post("/v1/rescore", json={**mixed, "normalize": False}).status_code == 200
