"""Fuzzing at the edges of values, on a real uvicorn: requests that are valid in shape carry
values at the edges of their types (floats near 0, subnormals, +-huge, NaN and infinity as
strings and as bare JSON tokens; lone surrogates and other odd Unicode, empty and very long
strings; integers past 64 bits), schemathesis's negative (invalid) cases run over every
operation, and streams are opened and cancelled part-way. Nothing may answer 5xx, and no
worker may restart (checked on /metrics and /readyz afterwards).

The number of cases tried per operation is printed (`pytest -s`) and is fixed: generation is
derandomized."""
from __future__ import annotations

import json
import shutil
from collections import Counter

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable

from tests.e2e.conftest import start_server

EDGE_FLOATS = [0.0, -0.0, 5e-324, 2.2250738585072014e-308, 1e-300, 1e-45, 1.1754943508222875e-38, 1e-38, 1e-7,
               1e308, -1e308, 1.7976931348623157e308, -5e-324, 3.4028235e38, 1e39]
NON_FINITE_TOKENS = ["NaN", "Infinity", "-Infinity"]  # bare JSON tokens (not standard JSON; Python emits them)
EDGE_INTS = [0, -1, 1, 2**31, 2**53 + 1, 2**63 - 1, 2**63, 2**64, -(2**63) - 1, 10**30]
EDGE_STRINGS = ["", " ", "\ud800", "\udfff", "a\ud83dz", "\x00", "\u200b\u200d\ufeff", "\u202eevil", "e\u0301\u0301\u0301",
                "\U0001f916\U0001f680", "\uffff\U0010ffff", "\n\n\n", "<eos>", "<unk>", "\t\r", "\u0130\u0131\u00df",
                "x" * 30_000, "the " * 5_000]

# Valid bodies of each JSON operation, on the fuzz server's models (the default ones: no
# "model" field), which the mutations below push to the edges.
BASE_BODIES = {
    "/v1/generate": {"prompt": "the cat", "max_tokens": 8, "strategy": "multinomial", "temperature": 0.8, "top_p": 0.9,
                     "seed": 1, "min_tokens": 1, "stop": ["mat"], "n": 2},
    "/v1/completions": {"prompt": ["the cat", "a bird"], "max_tokens": 8, "temperature": 0.7, "top_p": 0.95, "n": 1,
                        "stop": "door", "seed": 3, "logprobs": 2, "echo": True},
    "/v1/score": {"texts": ["the cat sat on the mat .", "a bird ran to the river ."], "add_bos": True, "add_eos": True},
    "/v1/rescore": {"acoustic_weight": 0.5, "word_insertion_penalty": 0.1,
                    "utterances": [{"id": "u1", "context": "the dog slept near the door .",
                                    "hypotheses": [{"text": "the cat sat on the mat", "acoustic_score": -120.5},
                                                   {"text": "the cat sat on a mat", "acoustic_score": -121.0}]}]},
}
SCORE_TOKENS_BODY = {"tokens": [["the", "cat", "sat", "<eos>"], ["a", "bird"]], "add_eos": False}


def leaf_paths(value, path=()):
    """Every leaf (and every list, as a whole) of a JSON value, as a path of keys and indices."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from leaf_paths(item, (*path, key))
    elif isinstance(value, list):
        yield path
        for index, item in enumerate(value):
            yield from leaf_paths(item, (*path, index))
    else:
        yield path


def replaced(value, path, new):
    """`value` with the leaf at `path` set to `new` (unchanged where an earlier replacement
    removed the path)."""
    if not path:
        return new
    if not isinstance(value, (dict, list)) or (isinstance(value, list) and not (isinstance(path[0], int) and path[0] < len(value))) \
            or (isinstance(value, dict) and path[0] not in value):
        return value
    copy = dict(value) if isinstance(value, dict) else list(value)
    copy[path[0]] = replaced(value[path[0]], path[1:], new)
    return copy


def edge_value_for(leaf):
    """Edge values of the leaf's own type, and of the others (a shape mistake is an edge too)."""
    same = (st.sampled_from(EDGE_FLOATS) | st.floats(allow_nan=False, allow_infinity=False)
            | st.sampled_from(NON_FINITE_TOKENS).map(lambda token: ("raw", token))) if isinstance(leaf, float) \
        else st.sampled_from(EDGE_INTS) | st.integers() if isinstance(leaf, int) and not isinstance(leaf, bool) \
        else st.sampled_from(EDGE_STRINGS) | st.text(max_size=40) if isinstance(leaf, str) \
        else st.sampled_from([[], [""], ["\ud800"], [5e-324], ["x"] * 300]) if isinstance(leaf, list) \
        else st.sampled_from([True, False, None])
    other = st.sampled_from([*EDGE_FLOATS[:4], *EDGE_INTS[-3:], "\ud800", "", None, [], {}])
    return st.one_of(same, same, same, other)


@st.composite
def edge_bodies(draw, base: dict) -> str:
    """A JSON text: `base` with one to three of its leaves at an edge value."""
    body = base
    paths = list(leaf_paths(base))
    for path in draw(st.lists(st.sampled_from(paths), min_size=1, max_size=3, unique=True)):
        leaf = base
        for key in path:
            leaf = leaf[key]
        body = replaced(body, path, draw(edge_value_for(leaf)))
    # Bare non-finite tokens go into the JSON text as tokens, not strings.
    text = json.dumps(body, ensure_ascii=True, allow_nan=True)
    for token in NON_FINITE_TOKENS:
        text = text.replace(json.dumps(["raw", token]), token)
    return text


@pytest.fixture(scope="module")
def edge_server(tmp_path_factory, all_models_dir, tiny_ngram_path):
    models = tmp_path_factory.mktemp("edge-models")
    shutil.copytree(all_models_dir, models, dirs_exist_ok=True)
    shutil.copytree(tiny_ngram_path, models / tiny_ngram_path.name)
    server = start_server(tmp_path_factory.mktemp("edge"), models, RNNSERVE_MAX_NEW_TOKENS="16",
                          RNNSERVE_REQUEST_TIMEOUT_S="20", RNNSERVE_LOG_LEVEL="WARNING")
    yield server
    server.stop()


def worker_restarts(server) -> float:
    metrics = httpx.get(server.base_url + "/metrics", timeout=10).text
    return sum(float(line.split()[-1]) for line in metrics.splitlines() if line.startswith("rnnserve_worker_restarts_total"))


def assert_workers_never_restarted(server) -> None:
    assert worker_restarts(server) == 0
    ready = httpx.get(server.base_url + "/readyz", timeout=10)
    assert ready.status_code == 200, ready.text


CASES = 60


def test_edge_values_in_every_json_field_never_get_a_5xx(edge_server):
    tried: Counter[str] = Counter()
    statuses: Counter[int] = Counter()
    with httpx.Client(base_url=edge_server.base_url, timeout=30) as client:
        for path, base in [*BASE_BODIES.items(), ("/v1/score", SCORE_TOKENS_BODY)]:
            assert client.post(path, json=base).status_code == 200, (path, client.post(path, json=base).text)

            @given(text=edge_bodies(base))
            @settings(max_examples=CASES, derandomize=True, deadline=None, database=None,
                      suppress_health_check=list(HealthCheck), phases=[Phase.generate])
            def run(text):
                response = client.post(path, content=text.encode(), headers={"content-type": "application/json"})
                tried[path] += 1
                statuses[response.status_code] += 1
                assert response.status_code < 500, f"{path} {text[:300]!r}: {response.status_code} {response.text[:300]}"
                assert response.headers["content-type"].startswith(("application/json", "text/event-stream"))
                if response.status_code == 200 and response.headers["content-type"].startswith("application/json"):
                    # Results are finite numbers: the strict parser refuses NaN and infinities.
                    json.loads(response.text, parse_constant=lambda token: pytest.fail(f"{path} answered {token}"))

            run()
    print(f"\nedge-value cases per operation: {dict(tried)}; statuses: {dict(statuses)}")
    assert_workers_never_restarted(edge_server)


CAPTION_FIELDS = {
    "temperature": ["1e-300", "5e-324", "0", "1e309", "nan", "inf", "-0", "1e-38"],
    "seed": ["99999999999999999999", "-1", "0", "9223372036854775807", "1e3"],
    "top_k": ["0", "1", "4294967296", "-5"],
    "beam_size": ["1", "0", "100000"],
    "max_tokens": ["0", "1", "100000"],
    "n": ["1", "2", "0", "1000"],
    "strategy": ["beam", "argmax", "top_k", "multinomial", "", "\u202ebeam"],
    "model": ["", "shapes-captioner", "\u0000", "\U0001f916"],
}


def red_square_png() -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), (220, 30, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_edge_values_in_the_caption_form_never_get_a_5xx(edge_server):
    image = red_square_png()
    tried = 0
    with httpx.Client(base_url=edge_server.base_url, timeout=30) as client:
        @given(fields=st.dictionaries(st.sampled_from(sorted(CAPTION_FIELDS)), st.none(), min_size=1, max_size=3)
               .flatmap(lambda chosen: st.fixed_dictionaries({name: st.sampled_from(CAPTION_FIELDS[name]) for name in chosen})),
               invalid_utf8=st.booleans())
        @settings(max_examples=CASES, derandomize=True, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck), phases=[Phase.generate])
        def run(fields, invalid_utf8):
            nonlocal tried
            data = {name: value.encode("utf-8") for name, value in fields.items()}
            if invalid_utf8:  # bytes that are no UTF-8 text at all, in a text field
                data["strategy"] = b"\xff\xfe\xed"
            response = client.post("/v1/caption", files={"image": ("image.png", image, "image/png"),
                                                         **{name: (None, value) for name, value in data.items()}})
            tried += 1
            assert response.status_code < 500, f"{fields} {invalid_utf8}: {response.status_code} {response.text[:300]}"

        run()
    print(f"\ncaption form edge cases: {tried}")
    assert_workers_never_restarted(edge_server)


def test_schemathesis_negative_cases_never_get_a_5xx(edge_server):
    schema = schemathesis.openapi.from_url(edge_server.base_url + "/openapi.json")
    tried: Counter[str] = Counter()
    for result in schema.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy(generation_mode=schemathesis.GenerationMode.NEGATIVE))
        @settings(max_examples=25, derandomize=True, deadline=None, phases=[Phase.generate],
                  suppress_health_check=list(HealthCheck), database=None)
        def run(case):
            response = case.call(timeout=30)
            tried[f"{operation.method.upper()} {operation.path}"] += 1
            assert response.status_code < 500, f"{case.method} {case.path}: {response.status_code} {response.text[:300]}"

        try:
            run()
        except Unsatisfiable:  # no body and no parameter with an invalid form (a bare string path parameter)
            assert not operation.body, operation.path
    print(f"\nnegative cases per operation: {dict(tried)}")
    assert {"POST /v1/generate", "POST /v1/score", "POST /v1/completions", "POST /v1/rescore"} <= set(tried)
    assert_workers_never_restarted(edge_server)


def test_streams_opened_and_cancelled_part_way_leave_the_server_serving(edge_server):
    """The stateful sequence: generate, stream, cancel after a few events, again and again,
    with edge sampling values; every later request still answers."""
    with httpx.Client(base_url=edge_server.base_url, timeout=30) as client:
        @given(read=st.integers(0, 6), temperature=st.sampled_from([1e-300, 0.0, 1.0, 100.0, 5e-324]),
               top_p=st.sampled_from([1.0, 1e-60, 0.5]), n=st.integers(1, 3), endpoint=st.sampled_from(["/v1/generate", "/v1/completions"]))
        @settings(max_examples=30, derandomize=True, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck), phases=[Phase.generate])
        def run(read, temperature, top_p, n, endpoint):
            body = {"prompt": "the cat", "max_tokens": 16, "temperature": temperature, "top_p": top_p, "n": n,
                    "stream": True, "seed": 5}
            if temperature == 0.0:  # argmax takes no sampling knobs and gives one choice
                body.update(top_p=1.0, n=1)
            with client.stream("POST", endpoint, json=body) as response:
                assert response.status_code < 500
                for index, _ in enumerate(response.iter_lines()):
                    if index >= read:
                        break
            after = client.post("/v1/generate", json={"prompt": "the dog", "max_tokens": 4, "strategy": "argmax"})
            assert after.status_code == 200, after.text

        run()
    assert_workers_never_restarted(edge_server)
