import math


def test_score_texts_ranks_the_grammatical_sentence_first(client):
    response = client.post("/v1/score", json={"texts": ["mat the on sat cat the .", "the cat sat on the mat ."]})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["ranking"] == [1, 0]
    good = body["results"][1]
    assert good["tokens"] == ["the", "cat", "sat", "on", "the", "mat", ".", "<eos>"]
    assert good["num_tokens"] == 8 == len(good["token_logprobs"]) == len(good["oov"])
    assert math.isclose(good["logprob"], sum(good["token_logprobs"]), abs_tol=1e-4)
    assert math.isclose(good["perplexity"], math.exp(-good["logprob"] / good["num_tokens"]), rel_tol=1e-3)
    assert all(lp <= 0 for lp in good["token_logprobs"])


def test_score_pre_split_tokens_and_oov_flags(client):
    body = client.post("/v1/score", json={"tokens": [["the", "cat", "zebra", "<eos>"]], "add_eos": False}).json()
    result = body["results"][0]
    assert result["tokens"] == ["the", "cat", "zebra", "<eos>"]
    assert result["oov"] == [False, False, True, False]


def test_without_bos_the_first_token_is_context(client):
    body = client.post("/v1/score", json={"tokens": [["the", "cat", "sat"]], "add_bos": False, "add_eos": False}).json()
    assert body["results"][0]["tokens"] == ["cat", "sat"]


def test_scores_are_cached_and_identical(client):
    request = {"texts": ["a bird ran to the door ."]}
    first, second = client.post("/v1/score", json=request).json(), client.post("/v1/score", json=request).json()
    assert (first["cached"], second["cached"]) == (False, True)
    assert first["results"] == second["results"]
