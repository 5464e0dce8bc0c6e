"""The gateway's exception tree, in one place.

Every error the gateway raises on purpose is a :class:`GatewayError`. Each class carries the
HTTP status and the OpenAI error ``type`` / ``code`` it maps to, so the server turns any of them
into an OpenAI-style error body without a lookup table::

    GatewayError                      500 internal_error
    ├── ConfigError                   (start-up only) a config / budget / suite file is invalid
    ├── RequestError                  400 invalid_request_error
    │   ├── UnknownModelError         404 model_not_found
    │   ├── ContextLengthError        400 context_length_exceeded
    │   ├── InvalidImageError         400 invalid_image (an image part that does not parse,
    │   │   │                             a bad data: URL, an unsupported format)
    │   │   ├── ImageTooLargeError    400 image_too_large (bytes or pixels past the caps)
    │   │   ├── TooManyImagesError    400 too_many_images (past images.max_images)
    │   │   ├── RemoteImagesDisabledError 400 remote_images_disabled (an http(s) image URL
    │   │   │                             while images.remote.enabled is false)
    │   │   ├── ImageHostNotAllowedError  400 image_host_not_allowed (host not in the
    │   │   │                             allow-list, or it resolves to a private address)
    │   │   └── ImageFetchError       400 image_fetch_failed (timeout, HTTP error, not image/*)
    │   └── NoEligibleExpertError     400 capability_not_available (no expert offers what
    │                                     the request needs: vision, tools)
    ├── AuthenticationError           401 invalid_api_key
    ├── PermissionDeniedError         403 permission_denied (expert or policy not allowed)
    ├── BudgetExceededError           402 budget_exceeded (names the limit and its reset)
    ├── RateLimitError                429 rate_limit_exceeded
    └── UpstreamError                 502 upstream_error (a worker answered badly)
        ├── UpstreamUnavailableError  503 upstream_unavailable (no healthy replica, refused)
        └── UpstreamTimeoutError      504 upstream_timeout

Backends raise only ``UpstreamError`` subclasses (and ``RequestError`` when an upstream
rejected the request itself); a strategy catches them per attempt to try another expert of
the policy's ranking. An attempt refused by the budget raises ``BudgetExceededError``, which
a strategy may also step over.
"""

from __future__ import annotations

from typing import Any


class GatewayError(Exception):
    """Base of every deliberate gateway error."""

    status_code: int = 500
    error_type: str = "internal_error"
    code: str | None = "internal_error"

    def __init__(self, message: str, *, param: str | None = None, **extra: Any) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.extra = extra

    def to_body(self) -> dict[str, Any]:
        """The OpenAI error body: ``{"error": {"message", "type", "param", "code", ...}}``."""
        error: dict[str, Any] = {
            "message": self.message,
            "type": self.error_type,
            "param": self.param,
            "code": self.code,
        }
        error.update(self.extra)
        return {"error": error}


class ConfigError(GatewayError):
    """A configuration file is invalid: names the file, the field and the reason."""

    def __init__(self, path: str, field: str, reason: str) -> None:
        super().__init__(f"{path}: {field}: {reason}")
        self.path, self.field, self.reason = path, field, reason


class RequestError(GatewayError):
    status_code = 400
    error_type = "invalid_request_error"
    code: str | None = None


class UnknownModelError(RequestError):
    status_code = 404
    code = "model_not_found"


class ContextLengthError(RequestError):
    code = "context_length_exceeded"


class AuthenticationError(GatewayError):
    status_code = 401
    error_type = "authentication_error"
    code = "invalid_api_key"


class PermissionDeniedError(GatewayError):
    status_code = 403
    error_type = "permission_error"
    code = "permission_denied"


class BudgetExceededError(GatewayError):
    status_code = 402
    error_type = "insufficient_quota"
    code = "budget_exceeded"


class RateLimitError(GatewayError):
    status_code = 429
    error_type = "rate_limit_error"
    code = "rate_limit_exceeded"


class NoEligibleExpertError(RequestError):
    """The caller's request needs a capability (an image: ``vision``; ``tools``) that no
    expert it may use offers. A 400, not a 503: retrying cannot help (the OpenAI SDK
    retries 5xx)."""

    code = "capability_not_available"


class InvalidImageError(RequestError):
    """An image part the gateway cannot accept; ``param`` names the part's URL field
    (``messages[0].content[1].image_url.url``)."""

    code = "invalid_image"


class ImageTooLargeError(InvalidImageError):
    code = "image_too_large"


class TooManyImagesError(InvalidImageError):
    code = "too_many_images"


class RemoteImagesDisabledError(InvalidImageError):
    code = "remote_images_disabled"


class ImageHostNotAllowedError(InvalidImageError):
    code = "image_host_not_allowed"


class ImageFetchError(InvalidImageError):
    code = "image_fetch_failed"


class UpstreamError(GatewayError):
    status_code = 502
    error_type = "upstream_error"
    code = "upstream_error"


class UpstreamUnavailableError(UpstreamError):
    status_code = 503
    code = "upstream_unavailable"


class UpstreamTimeoutError(UpstreamError):
    status_code = 504
    code = "upstream_timeout"
