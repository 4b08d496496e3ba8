"""Error bodies of the HTTP contract, {"error": {"type", "message", "param"}}, and the handlers
that make every failure answer with one."""
from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
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


def error_response(status: int, message: str, param: str | None = None, error_type: str | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    body = {"error": {"type": error_type or _STATUS_TYPES.get(status, "api_error"), "message": message, "param": param}}
    return JSONResponse(body, status_code=status, headers=headers)


def _param_of(location: tuple) -> str | None:
    parts = [str(part) for part in location if part not in ("body", "query", "path", "header")]
    return ".".join(parts) or None


async def _validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
    errors = error.errors()
    first = errors[0] if errors else {}
    if first.get("type") == "json_invalid":
        return error_response(400, f"request body is not valid JSON: {first.get('ctx', {}).get('error', '')}".strip(": "))
    message = "; ".join(f"{_param_of(tuple(e.get('loc', ()))) or 'body'}: {e.get('msg')}" for e in errors[:5])
    return error_response(422, message, _param_of(tuple(first.get("loc", ()))))


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
