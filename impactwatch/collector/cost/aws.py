"""AWS errors in one line and one reason: what failed, never with credentials in it. Pure.

Reasons (the `reason` label of `impactwatch_cost_reconcile_errors_total`): throttled,
access_denied (also: no or expired credentials), unavailable (network, service, data not ready),
invalid (a request AWS refused as malformed), other.
"""

from __future__ import annotations

import re

_THROTTLED = {
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestLimitExceeded",
    "LimitExceededException",
    "TooManyRequestsException",
    "RequestThrottled",
    "RequestThrottledException",
    "SlowDown",
}
_DENIED = {
    "AccessDenied",
    "AccessDeniedException",
    "UnauthorizedOperation",
    "UnrecognizedClientException",
    "InvalidClientTokenId",
    "ExpiredToken",
    "ExpiredTokenException",
    "SignatureDoesNotMatch",
    "AuthFailure",
    "OptInRequired",
}
_UNAVAILABLE = {
    "DataUnavailableException",
    "BillExpirationException",
    "ServiceUnavailable",
    "ServiceUnavailableException",
    "InternalError",
    "InternalFailure",
    "InternalServerError",
}
_INVALID = {
    "ValidationException",
    "InvalidNextTokenException",
    "RequestChangedException",
    "InvalidParameterValue",
    "InvalidParameterCombination",
}
# Access key ids (AKIA..., ASIA...) and anything shaped like a secret key or a session token.
_SECRETS = re.compile(r"\b(?:AKIA|ASIA|AROA|AIDA)[A-Z0-9]{12,}\b|[A-Za-z0-9/+=]{40,}")


_XML_CODE = re.compile(r"<Code>([^<]{1,100})</Code>")
_XML_MESSAGE = re.compile(r"<Message>([^<]{0,500})</Message>")


def _error(exc: BaseException) -> dict:
    response = getattr(exc, "response", None)
    error = response.get("Error") if isinstance(response, dict) else None
    return error if isinstance(error, dict) else {}


def error_code(exc: BaseException) -> str | None:
    """The AWS error code of a botocore `ClientError` (also from an XML body a JSON API was
    answered with, as some proxies and emulators do), else None."""
    error = _error(exc)
    code = str(error.get("Code") or "")
    if not code or code.isdigit():
        found = _XML_CODE.search(str(error.get("Message") or ""))
        code = found[1] if found else code
    return code or None


def _status(exc: BaseException) -> int | None:
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return None
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return status if isinstance(status, int) else None


def aws_error_reason(exc: BaseException) -> str:
    code = error_code(exc)
    if code is not None:
        if code in _THROTTLED:
            return "throttled"
        if code in _DENIED:
            return "access_denied"
        if code in _UNAVAILABLE:
            return "unavailable"
        if code in _INVALID:
            return "invalid"
    status = _status(exc)
    if status is not None:
        if status in (401, 403):
            return "access_denied"
        if status == 429:
            return "throttled"
        if status >= 500:
            return "unavailable"
    if code is not None:
        return "other"
    name = type(exc).__name__
    if name in ("NoCredentialsError", "PartialCredentialsError", "NoAuthTokenError"):
        return "access_denied"
    if name in (
        "EndpointConnectionError",
        "ConnectTimeoutError",
        "ReadTimeoutError",
        "ConnectionClosedError",
    ):
        return "unavailable"
    return "other"


def scrub(text: str) -> str:
    """`text` with anything that looks like an AWS key or token replaced."""
    return _SECRETS.sub("[redacted]", text)


def describe_aws_error(exc: BaseException) -> str:
    """One line: the error code (or type) and the first line of its message, scrubbed."""
    code = error_code(exc)
    message = str(_error(exc).get("Message") or "")
    if "<Message>" in message:
        found = _XML_MESSAGE.search(message)
        message = found[1] if found else ""
    if not message:
        message = str(exc)
    first = message.strip().splitlines()[0][:200] if message.strip() else ""
    head = code or type(exc).__name__
    return scrub(f"{head}: {first}" if first else head)
