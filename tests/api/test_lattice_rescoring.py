"""POST /v1/rescore/lattice: HTK SLF lattices rescored on the workers, the same numbers as
/v1/score gives each path, cached; malformed lattices and sizes over the limits are 422s that
name the lattice (and the line)."""
from __future__ import annotations

import math
import shutil

import pytest

# "the cat sat" or "the mat sat" (or "a dog ran"), with an epsilon link before the end.
SLF = """VERSION=1.0
UTTERANCE=u1
N=6\tL=7
I=0\tt=0.00
I=1\tt=0.20
I=2\tt=0.50
I=3\tt=0.80
I=4\tt=0.80
I=5\tt=0.90
J=0\tS=0\tE=1\tW=the\ta=-10.0\tl=-1.0
J=1\tS=1\tE=2\tW=cat\ta=-12.0\tl=-2.0
J=2\tS=1\tE=2\tW=mat\ta=-11.0\tl=-2.5
J=3\tS=2\tE=3\tW=sat\ta=-9.0\tl=-1.5
J=4\tS=0\tE=4\tW=a\ta=-30.0\tl=-4.0
J=5\tS=3\tE=5\tW=!NULL\ta=0.0\tl=0.0
J=6\tS=4\tE=5\tW=dog\ta=-5.0\tl=-3.0
"""
PATHS = {("the", "cat", "sat"): (-31.0, -4.5), ("the", "mat", "sat"): (-30.0, -5.0), ("a", "dog"): (-35.0, -7.0)}


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory, tiny_model_path, tiny_ngram_path):
    directory = tmp_path_factory.mktemp("lattice-models")
    shutil.copytree(tiny_model_path, directory / tiny_model_path.name)
    shutil.copytree(tiny_ngram_path, directory / tiny_ngram_path.name)
    return directory


@pytest.fixture()
def client(make_client, models_dir):
    return make_client(models_dir=models_dir, max_lattices=2, max_lattice_nodes=20, max_lattice_links=20)


def test_best_path_nbest_and_confidences_match_scoring_each_path(client):
    body = {"lattices": [{"id": "u1", "slf": SLF}], "acoustic_weight": 0.5, "lm_weight": 2.0, "lattice_lm_weight": 0.3,
            "word_insertion_penalty": 0.25, "max_ngram_order": 10, "beam": None, "nbest": 5}
    response = client.post("/v1/rescore/lattice", json=body)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["model"] == "tiny-word-lstm" and answer["cached"] is False
    (result,) = answer["results"]
    tokens = [list(words) for words in PATHS]
    scored = client.post("/v1/score", json={"tokens": tokens}).json()["results"]
    expected = {}
    for words, score in zip(PATHS, scored):
        acoustic, language = PATHS[words]
        expected[words] = 0.5 * acoustic + 2.0 * score["logprob"] + 0.3 * language + 0.25 * len(words)
    assert [tuple(path["words"]) for path in result["nbest"]] == sorted(expected, key=expected.get, reverse=True)
    for path in result["nbest"]:
        assert path["score"] == pytest.approx(expected[tuple(path["words"])], abs=1e-4)
        assert path["text"] == " ".join(path["words"]) and path["num_words"] == len(path["words"])
        assert (path["acoustic_score"], path["lattice_lm_score"]) == pytest.approx(PATHS[tuple(path["words"])])
    best = result["nbest"][0]
    assert result["text"] == best["text"] and result["score"] == best["score"]
    # Posteriors over the three paths: a word's confidence is the share of the paths with it there.
    top = max(expected.values())
    share = {words: math.exp(s - top) for words, s in expected.items()}
    total = math.fsum(share.values())
    for position, word in enumerate(result["words"]):
        holders = [w for w in PATHS if len(w) > position and w[position] == word["word"]]
        assert word["confidence"] == pytest.approx(math.fsum(share[w] for w in holders) / total, abs=1e-4)
    assert result["words"][0] == {"word": best["words"][0], "start": 0.0, "end": 0.2, "confidence": result["words"][0]["confidence"]}
    assert result["expanded_states"] >= 6 and result["pruned_states"] == 0 and result["lm_queries"] > 0
    again = client.post("/v1/rescore/lattice", json=body).json()
    assert again["cached"] is True and again["results"] == answer["results"]


def test_defaults_an_ngram_model_and_several_lattices(client):
    body = {"model": "tiny-kn3", "lattices": [{"id": "a", "slf": SLF}, {"id": "b", "slf": SLF.replace("W=dog", "W=cat")}]}
    answer = client.post("/v1/rescore/lattice", json=body).json()
    assert answer["model"] == "tiny-kn3" and [r["id"] for r in answer["results"]] == ["a", "b"]
    assert all(r["nbest"] and 0 <= w["confidence"] <= 1 for r in answer["results"] for w in r["words"])
    default = client.post("/v1/rescore/lattice", json={"lattices": [{"id": "a", "slf": SLF}]}).json()
    assert default["model"] == "tiny-word-lstm"


@pytest.mark.parametrize(("slf", "line", "words"), [
    ("VERSION=1.0\nN=2 L=1\nJ=0 S=0 E=7 W=cat\n", 3, "E=7 is out of range"),
    ("VERSION=1.0\nN=2 L=1\n\nJ=0 S=0 E=1 W=cat a=loud\n", 4, "not a number"),
    ("N=3 L=3\nJ=0 S=0 E=1\nJ=1 S=1 E=2\nJ=2 S=2 E=1\n", 3, "cycle"),
    ("N=30 L=1\nJ=0 S=0 E=1\n", 1, "the limit is 20"),
    ("N=2 L=25\n", 1, "the limit is 20"),
])
def test_a_malformed_or_oversized_lattice_is_a_422_naming_it_and_its_line(client, slf, line, words):
    body = {"lattices": [{"id": "good", "slf": SLF}, {"id": "bad", "slf": slf}]}
    response = client.post("/v1/rescore/lattice", json=body)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["param"] == "lattices.1.slf"
    assert f"line {line}:" in error["message"] and words in error["message"]


@pytest.mark.parametrize(("body", "status", "param"), [
    ({"lattices": [{"id": "u", "slf": SLF}] * 3}, 422, "lattices"),
    ({"lattices": []}, 422, "lattices"),
    ({"lattices": [{"id": "u", "slf": ""}]}, 422, "lattices.0.slf"),
    ({"lattices": [{"id": "u", "slf": SLF}], "acoustic_weight": 1e308}, 422, "acoustic_weight"),
    ({"lattices": [{"id": "u", "slf": SLF}], "lm_weight": -1e306}, 422, "lm_weight"),
    ({"lattices": [{"id": "u", "slf": SLF}], "posterior_scale": 1e306}, 422, "posterior_scale"),
    ({"lattices": [{"id": "u", "slf": SLF}], "max_ngram_order": 0}, 422, "max_ngram_order"),
    ({"lattices": [{"id": "u", "slf": SLF}], "nbest": 1000}, 422, "nbest"),
    ({"lattices": [{"id": "u", "slf": SLF}], "beam": -1}, 422, "beam"),
    ({"lattices": [{"id": "u", "slf": SLF}], "model": "nope"}, 404, "model"),
    ({"lattices": [{"id": "u", "slf": SLF, "extra": 1}]}, 422, "lattices.0.extra"),
])
def test_bad_requests(client, body, status, param):
    response = client.post("/v1/rescore/lattice", json=body)
    assert response.status_code == status, response.text
    assert response.json()["error"]["param"] == param


def test_an_expansion_over_the_state_limit_is_a_422_naming_the_lattice(make_client, models_dir):
    client = make_client(models_dir=models_dir, max_lattice_states=4)
    response = client.post("/v1/rescore/lattice", json={"lattices": [{"id": "u", "slf": SLF}], "beam": None})
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["param"] == "lattices.0" and "more than 4 states" in error["message"]
