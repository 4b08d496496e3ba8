"""Error bodies of the HTTP contract, {"error": {"type", "message", "param"}}, and the handlers
that make every failure answer with one.

A request that fails validation answers 415 when its body is not in the media type the route
reads, 400 when it is empty or not JSON, and otherwise 422 whose `param` is the request's own
field: pydantic's names for union members are left out, and a request model's validator names
its parameter (`InvalidParameter`)."""
from __future__ import annotations

import logging
import re
import typing

from fastapi import FastAPI, Request, params
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.engine.base import DuplicateRequestId, EngineError, EngineOverloaded, EngineTimeout, EngineUnavailable
from models.sampling import InvalidParameter

logger = logging.getLogger(__name__)

_STATUS_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "request_too_large",
    415: "unsupported_media_type",
    422: "invalid_request_error",
    429: "rate_limit_error",
    503: "service_unavailable",
    504: "timeout_error",
}


class ApiError(Exception):
    def __init__(self, status: int, message: str, param: str | None = None, error_type: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.param = status, message, param
        self.error_type = error_type or _STATUS_TYPES.get(status, "api_error")
        self.headers = headers


def printable(text: str) -> str:
    """Text a JSON response can carry: a lone surrogate a request sent (which UTF-8 cannot
    encode) is written as its escape, so the error that names it is never an error itself."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def error_response(status: int, message: str, param: str | None = None, error_type: str | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    body = {"error": {"type": error_type or _STATUS_TYPES.get(status, "api_error"), "message": printable(message),
                      "param": None if param is None else printable(param)}}
    return JSONResponse(body, status_code=status, headers=headers)


# How pydantic names a member of a union in an error's location ("str", "list[str]",
# "function-after[require_utf8(), str]", "[key]"): no field of the API is named like that.
_UNION_MEMBER = re.compile(r"^(str|int|float|bool|bytes|list|dict|none|[a-z]+(-[a-z]+)+|.*\[.*\].*)$")
_TYPE_MISMATCHES = {"none_required", "is_instance_of", "model_attributes_type"}


def _location(error: dict) -> tuple:
    """Where the error is, in the request's own terms: without the part of the request
    ("body") and without union members; a request model's validator names its parameter."""
    location = tuple(part for part in error.get("loc", ()) if part not in ("body", "query", "path", "header")
                     and not (isinstance(part, str) and _UNION_MEMBER.match(part)))
    cause = (error.get("ctx") or {}).get("error")
    if isinstance(cause, InvalidParameter):
        location += tuple(cause.param.split("."))
    return location


def _param_of(location: tuple) -> str | None:
    return ".".join(str(part) for part in location) or None


def _is_type_mismatch(error: dict) -> bool:
    return error.get("type", "").endswith("_type") or error.get("type") in _TYPE_MISMATCHES


def _relevant(errors: list[dict]) -> list[dict]:
    """A value checked against a union fails once per member: what the value was not (a
    string, a list) is dropped when another error says what is wrong with what it is."""
    located = [(_location(error), error) for error in errors]

    def explained(location: tuple, error: dict) -> bool:
        return _is_type_mismatch(error) and any(
            other is not error and not _is_type_mismatch(other) and other_location[: len(location)] == location
            for other_location, other in located)

    return [error for location, error in located if not explained(location, error)] or errors


def _body_model(request: Request) -> type[BaseModel] | None:
    body_field = getattr(request.scope.get("route"), "body_field", None)
    return _model_in(body_field.field_info.annotation) if body_field is not None else None


def _model_in(annotation) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for argument in typing.get_args(annotation):
        found = _model_in(argument)
        if found is not None:
            return found
    return None


def _item_of(annotation):
    if typing.get_origin(annotation) is list:
        return typing.get_args(annotation)[0]
    for argument in typing.get_args(annotation):
        found = _item_of(argument)
        if found is not None:
            return found
    return None


def _fields_at(model: type[BaseModel] | None, path: tuple) -> list[str]:
    """The field names of the request model at `path` (through lists and optional models)."""
    annotation = model
    for part in path:
        if isinstance(part, int):
            annotation = _item_of(annotation)
        else:
            inner = _model_in(annotation)
            annotation = inner.model_fields[part].annotation if inner is not None and part in inner.model_fields else None
    inner = _model_in(annotation)
    return sorted(inner.model_fields) if inner is not None else []


def _message(request: Request, error: dict) -> str:
    cause = (error.get("ctx") or {}).get("error")
    if isinstance(cause, InvalidParameter):
        return str(cause)
    if error.get("type") == "string_unicode":  # pydantic's own check of a constrained string or a literal
        return "text must be valid Unicode: it holds a lone surrogate, which UTF-8 cannot encode"
    if error.get("type") == "extra_forbidden":
        fields = _fields_at(_body_model(request), _location(error)[:-1])
        return "unknown field" + (f"; the fields are {', '.join(fields)}" if fields else "")
    return str(error.get("msg"))


async def _unreadable_body(request: Request, error: RequestValidationError) -> JSONResponse | None:
    """415 when the body is not in the media type the route reads, 400 when there is none."""
    body_field = getattr(request.scope.get("route"), "body_field", None)
    if body_field is None:
        return None
    content_type = request.headers.get("content-type", "")
    sent = f"this request's Content-Type is {content_type!r}" if content_type else "this request has no Content-Type"
    if isinstance(body_field.field_info, params.Form):
        # A URL-encoded form is read too (and then lacks its file, which the error names).
        if content_type.split(";")[0].strip().lower() not in ("multipart/form-data", "application/x-www-form-urlencoded"):
            return error_response(415, f"the body must be a multipart form (Content-Type: multipart/form-data); {sent}")
        return None
    # FastAPI reads a body as JSON only when its Content-Type says JSON; otherwise the model
    # receives the raw bytes.
    if isinstance(error.body, (bytes, bytearray)):
        return error_response(415, f"the body must be JSON sent with Content-Type: application/json; {sent}")
    try:
        empty = not await request.body()
    except RuntimeError:  # the body was streamed elsewhere and is not kept
        empty = False
    if empty:
        return error_response(400, "the request body is empty: send a JSON object")
    return None


async def _validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
    unreadable = await _unreadable_body(request, error)
    if unreadable is not None:
        return unreadable
    errors = _relevant(error.errors())
    first = errors[0] if errors else {}
    if first.get("type") == "json_invalid":
        return error_response(400, f"request body is not valid JSON: {first.get('ctx', {}).get('error', '')}".strip(": "))
    message = "; ".join(f"{_param_of(_location(e)) or 'body'}: {_message(request, e)}" for e in errors[:5])
    return error_response(422, message, _param_of(_location(first)))


async def _api_error(request: Request, error: ApiError) -> JSONResponse:
    return error_response(error.status, error.message, error.param, error.error_type, error.headers)


async def _invalid_parameter(request: Request, error: InvalidParameter) -> JSONResponse:
    return error_response(422, str(error), error.param)


async def _http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
    message = error.detail if isinstance(error.detail, str) else "request failed"
    return error_response(error.status_code, message, headers=getattr(error, "headers", None))


async def _engine_error(request: Request, error: EngineError) -> JSONResponse:
    if isinstance(error, EngineOverloaded):
        return error_response(429, str(error), headers={"Retry-After": str(error.retry_after)})
    if isinstance(error, EngineTimeout):
        return error_response(504, str(error))
    if isinstance(error, EngineUnavailable):
        return error_response(503, str(error), headers={"Retry-After": "1"})
    if isinstance(error, DuplicateRequestId):
        return error_response(409, str(error))
    return error_response(503, str(error))


async def _unexpected(request: Request, error: Exception) -> JSONResponse:
    logger.exception("unhandled error on %s %s", request.method, request.url.path)
    return error_response(500, "internal error", error_type="api_error")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(InvalidParameter, _invalid_parameter)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(EngineError, _engine_error)
    app.add_exception_handler(Exception, _unexpected)
