"""The errors Leadgate answers with, and nothing else.

    ApiError                      the contract's error body; status and code per subclass
    ├── InvalidRequest            400 invalid_request (with a `fields` map naming bad fields)
    ├── Unauthorized              401 unauthorized
    ├── Forbidden                 403 forbidden
    ├── NotFound                  404 not_found
    ├── MethodNotAllowed          405 method_not_allowed
    ├── Conflict                  409 conflict
    ├── PayloadTooLarge           413 payload_too_large
    ├── UnsupportedMediaType      415 unsupported_media_type
    ├── IdempotencyKeyReused      422 idempotency_key_reused
    ├── InvalidRules              422 invalid_rules (scoring rules; `fields` names each bad one)
    ├── RateLimited               429 rate_limited (carries Retry-After)
    ├── QuotaExceeded             429 quota_exceeded (a new lead past the monthly quota)
    ├── InternalError             500 internal_error
    └── Unavailable               503 unavailable

Handlers raise these; `gateway.middleware` turns each into the JSON body
`{"error": {"code", "message", "fields"?, "request_id"}}`. Anything else that escapes a handler
becomes an InternalError whose message says nothing about the cause.
"""

from __future__ import annotations

from collections.abc import Mapping


class ApiError(Exception):
    status: int = 500
    code: str = "internal_error"

    def __init__(
        self,
        message: str,
        *,
        fields: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.fields = dict(fields) if fields else None
        self.headers = dict(headers) if headers else {}


class InvalidRequest(ApiError):
    status, code = 400, "invalid_request"


class Unauthorized(ApiError):
    status, code = 401, "unauthorized"


class Forbidden(ApiError):
    status, code = 403, "forbidden"


class NotFound(ApiError):
    status, code = 404, "not_found"


class MethodNotAllowed(ApiError):
    status, code = 405, "method_not_allowed"


class Conflict(ApiError):
    status, code = 409, "conflict"


class PayloadTooLarge(ApiError):
    status, code = 413, "payload_too_large"


class UnsupportedMediaType(ApiError):
    status, code = 415, "unsupported_media_type"


class IdempotencyKeyReused(ApiError):
    status, code = 422, "idempotency_key_reused"


class InvalidRules(ApiError):
    status, code = 422, "invalid_rules"


class RateLimited(ApiError):
    status, code = 429, "rate_limited"


class QuotaExceeded(ApiError):
    status, code = 429, "quota_exceeded"


class InternalError(ApiError):
    status, code = 500, "internal_error"


class Unavailable(ApiError):
    status, code = 503, "unavailable"
