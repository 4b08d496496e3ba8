"""The OpenAPI schema, read as the contract it is: every request model's example works as sent
(Swagger's "Try it out" sends it), and no value of any string or number field the schema
describes, in JSON bodies or the caption form, makes the server answer 5xx. A lone surrogate
(text UTF-8 cannot encode) in any string is a 422 naming the field; huge and tiny floats are
answered, or refused with a 4xx, and an answer never holds a non-finite number."""
from __future__ import annotations

import copy
import io
import json

import pytest
from PIL import Image

from tests.api.conftest import open_client
from tests.conftest import SHIPPED_MODELS

SURROGATE = "\ud800"
FLOATS = (1e308, -1e308, 5e-324)
INTEGERS = (2**64, -1, 0)
KEY = object()  # a path step into the keys of a free-form object (additionalProperties)


@pytest.fixture(scope="module")
def shipped_client():
    client = open_client(SHIPPED_MODELS)
    yield client
    client.__exit__(None, None, None)


@pytest.fixture(scope="module")
def openapi(shipped_client) -> dict:
    return shipped_client.app.openapi()


def resolve(openapi: dict, schema: dict) -> dict:
    while "$ref" in schema:
        schema = openapi["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def request_bodies(openapi: dict) -> list[tuple[str, str, dict]]:
    """(path, media type, schema) of every operation that takes a body."""
    found = []
    for path, methods in openapi["paths"].items():
        for operation in methods.values():
            for media_type, content in operation.get("requestBody", {}).get("content", {}).items():
                found.append((path, media_type, resolve(openapi, content["schema"])))
    return found


def leaves(openapi: dict, schema: dict, path: tuple = ()) -> list[tuple[tuple, str]]:
    """(path, type) of every string, number and integer field, through objects, arrays, unions
    and the keys and values of free-form objects; a file upload is not a field of either kind."""
    schema = resolve(openapi, schema)
    if "anyOf" in schema or "oneOf" in schema:
        return [leaf for alternative in schema.get("anyOf", schema.get("oneOf")) for leaf in leaves(openapi, alternative, path)]
    kind = schema.get("type")
    if kind == "object":
        found = [leaf for name, field in schema.get("properties", {}).items() for leaf in leaves(openapi, field, path + (name,))]
        if isinstance(schema.get("additionalProperties"), dict):
            found += [(path + (KEY,), "string")] + leaves(openapi, schema["additionalProperties"], path + ("a-key",))
        return found
    if kind == "array":
        return leaves(openapi, schema["items"], path + (0,))
    if kind in ("string", "number", "integer") and "contentMediaType" not in schema:
        return [(path, kind)]
    return []


def sample(openapi: dict, schema: dict):
    """A value for a field the example leaves out: its own example or default, else a plain one."""
    schema = resolve(openapi, schema)
    if schema.get("examples"):
        return copy.deepcopy(schema["examples"][0])
    if schema.get("default") is not None:
        return copy.deepcopy(schema["default"])
    alternatives = [a for a in schema.get("anyOf", []) if resolve(openapi, a).get("type") != "null"]
    if alternatives:
        return sample(openapi, alternatives[0])
    if "enum" in schema:
        return schema["enum"][0]
    plain = {"string": "the cat", "number": 1.0, "integer": 1, "boolean": False, "object": {}}
    if schema.get("type") == "array":
        return [sample(openapi, schema["items"])]
    return plain.get(schema.get("type"))


def container(openapi: dict, schema: dict, step) -> dict:
    """The alternative of a union that a path step goes into: an array for an index, else an object."""
    schema = resolve(openapi, schema)
    for alternative in schema.get("anyOf", [schema]):
        alternative = resolve(openapi, alternative)
        if alternative.get("type") == ("array" if isinstance(step, int) else "object"):
            return alternative
    raise AssertionError(f"no container for {step!r} in {schema}")


def put(openapi: dict, schema: dict, current, path: tuple, value):
    """A copy of `current` with `value` at `path`; what is missing on the way is sampled."""
    if not path:
        return value
    step, rest = path[0], path[1:]
    schema = container(openapi, schema, step)
    if schema["type"] == "array":
        items = list(current) if isinstance(current, list) and current else [sample(openapi, schema["items"])]
        items[0] = put(openapi, schema["items"], items[0], rest, value)
        return items
    if step is KEY:
        return {value: sample(openapi, schema["additionalProperties"])}
    fields = dict(current) if isinstance(current, dict) else sample(openapi, schema) or {}
    field_schema = schema.get("properties", {}).get(step) or schema["additionalProperties"]
    fields[step] = put(openapi, field_schema, fields.get(step), rest, value)
    return fields


def dotted(path: tuple) -> str:
    return ".".join(str(step) for step in path if step is not KEY)


def photo() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), (90, 150, 220)).save(buffer, "PNG")
    return buffer.getvalue()


def post_form(client, path: str, fields: dict):
    """A multipart form built by hand, declared in the `unicode_escape` charset: Starlette
    decodes the fields with the charset a request declares, which is how a lone surrogate
    reaches a form field ("\\ud800" in that charset)."""
    boundary = "contract-boundary"
    parts = []
    for name, value in fields.items():
        text = value if isinstance(value, str) else json.dumps(value)
        escaped = text.encode("ascii", "backslashreplace")
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode() + escaped + b"\r\n")
    parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="photo.png"\r\n'
                 f"Content-Type: image/png\r\n\r\n".encode() + photo() + b"\r\n")
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    content_type = f"multipart/form-data; boundary={boundary}; charset=unicode_escape"
    return client.post(path, content=body, headers={"content-type": content_type})


def send(client, path: str, media_type: str, body: dict):
    if media_type == "multipart/form-data":
        return post_form(client, path, {name: value for name, value in body.items() if value is not None})
    return client.post(path, content=json.dumps(body, ensure_ascii=True), headers={"content-type": media_type})


SESSION_PLACEHOLDER = "sess_..."


def with_session(client, path: str, body: dict) -> tuple[str, dict]:
    """A session operation's example names a session ("{id}" in its path, "sess_..." in its
    body): a session started from the model the create example names stands for it."""
    text = json.dumps(body)
    if "{id}" not in path and SESSION_PLACEHOLDER not in text:
        return path, body
    session = client.post("/v1/sessions", json={"model": "wikitext2-lstm"}).json()["id"]
    return path.replace("{id}", session), json.loads(text.replace(SESSION_PLACEHOLDER, session))


def response_schema(openapi: dict, path: str) -> dict:
    return resolve(openapi, openapi["paths"][path]["post"]["responses"]["200"]["content"]["application/json"]["schema"])


def non_finite(openapi: dict, schema: dict, value, where: str = "") -> list[str]:
    """Where a number the response schema promises is missing (a non-finite float is written
    as null)."""
    schema = resolve(openapi, schema)
    alternatives = schema.get("anyOf")
    if alternatives:
        if value is None and any(resolve(openapi, a).get("type") == "null" for a in alternatives):
            return []
        typed = [resolve(openapi, a) for a in alternatives if resolve(openapi, a).get("type") != "null"]
        return non_finite(openapi, typed[0], value, where) if len(typed) == 1 else []
    kind = schema.get("type")
    if kind == "number":
        return [] if isinstance(value, (int, float)) and value is not None else [where]
    if kind == "object" and isinstance(value, dict):
        properties = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        return [bad for name, item in value.items() if name in properties or isinstance(extra, dict)
                for bad in non_finite(openapi, properties.get(name, extra), item, f"{where}.{name}")]
    if kind == "array" and isinstance(value, list):
        return [bad for index, item in enumerate(value) for bad in non_finite(openapi, schema["items"], item, f"{where}.{index}")]
    return []


def test_every_request_model_has_an_example_that_works_as_sent(shipped_client, openapi):
    bodies = request_bodies(openapi)
    assert {path for path, _, _ in bodies} >= {"/v1/generate", "/v1/completions", "/v1/score", "/v1/rescore", "/v1/caption"}
    for path, media_type, schema in bodies:
        assert schema.get("examples"), f"{path}: {schema.get('title')} has no example"
        sent_to, example = with_session(shipped_client, path, schema["examples"][0])
        response = send(shipped_client, sent_to, media_type, example)
        assert response.status_code == 200, (path, response.text)
        assert not non_finite(openapi, response_schema(openapi, path), response.json()), path
    # Every request model carries one, the nested ones too (Swagger shows them per model).
    for name, schema in openapi["components"]["schemas"].items():
        if name.endswith("Request") or name in ("WeightedModel", "Hypothesis", "Utterance", "StreamOptions"):
            assert schema.get("examples"), name


def test_the_examples_name_shipped_models_and_valid_seeds(openapi):
    shipped = {path.name for path in SHIPPED_MODELS.iterdir() if (path / "config.json").is_file()}
    for _, _, schema in request_bodies(openapi):
        example = schema["examples"][0]
        if not {"model", "models"} & set(schema.get("properties", {})):
            continue  # a session operation: its session names the model
        named = [example["model"]] if "model" in example else [m["model"] for m in example.get("models", [])]
        assert named and set(named) <= shipped, example
        assert 0 <= example.get("seed", 0) < 2**63


def test_no_string_or_number_makes_the_server_fail(shipped_client, openapi):
    answered = 0
    for path, media_type, schema in request_bodies(openapi):
        example = schema["examples"][0]
        fields = dict.fromkeys(leaves(openapi, schema))  # unique, in schema order
        assert fields, path
        for field_path, kind in fields:
            values = {"string": (SURROGATE, "a" + SURROGATE + "b"), "number": FLOATS, "integer": INTEGERS}[kind]
            for value in values:
                body = put(openapi, schema, example, field_path, value)
                response = send(shipped_client, path, media_type, body)
                where = f"{path} {dotted(field_path)}={value!r}"
                assert response.status_code < 500, (where, response.text)
                if response.status_code >= 400:
                    assert set(response.json()) == {"error"}, where
                if kind == "string":
                    assert response.status_code == 422, (where, response.text)
                    param = response.json()["error"]["param"] or ""
                    # A key of a free-form object is named too: the field, then the key (escaped).
                    assert param.startswith(dotted(field_path)) if KEY in field_path else param == dotted(field_path), (where, param)
                elif response.status_code == 200:
                    assert not non_finite(openapi, response_schema(openapi, path), response.json()), where
                answered += 1
    assert answered > 100
