"""Airflow's REST API for pools (`/api/v2/pools`, Airflow 3) with the API's own auth.

A bearer token is given (`IMPACTWATCH_AIRFLOW_API_TOKEN`) or made from a user name and password
at `/auth/token` (the simple auth manager; other auth managers issue tokens their own way).
requests with urllib3's `Retry`: connection failures and 502/503/504 are retried a few times
with backoff; reading and setting a pool's slots are idempotent, so PATCH is retried too.
Every failure becomes an `AirflowApiError` with one line for the user; a token never appears
in one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

POOLS = "/api/v2/pools"
PAGE = 100


class AirflowApiError(RuntimeError):
    """`reason`: unreachable, unauthorized, forbidden, not_found, invalid, http."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class PoolState:
    name: str
    slots: int  # -1: unlimited
    running: int
    queued: int
    include_deferred: bool = False

    @classmethod
    def of(cls, body: Any) -> PoolState:
        try:
            return cls(
                name=str(body["name"]),
                slots=int(body["slots"]),
                running=int(body.get("running_slots") or 0),
                queued=int(body.get("queued_slots") or 0),
                include_deferred=bool(body.get("include_deferred")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise AirflowApiError(
                "invalid", f"unexpected pool in Airflow's answer: {exc}"
            ) from None


class AirflowApi:
    def __init__(
        self,
        base_url: str,
        *,
        token: str | None = None,
        username: str | None = None,
        password: str | None = None,
        timeout: float = 10.0,
        retries: int = 3,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise AirflowApiError(
                "invalid",
                f"--airflow-api {base_url!r} is not an http(s) URL, e.g. http://host:8080",
            )
        self.base = base_url.rstrip("/")
        self.timeout = timeout
        self._token = token
        self._login = (username, password) if username and password else None
        retry = Retry(
            total=retries,
            connect=retries,
            read=retries,
            status=retries,
            backoff_factor=0.5,
            status_forcelist=(502, 503, 504),
            allowed_methods=frozenset({"GET", "PATCH", "POST"}),
            raise_on_status=False,
        )
        self.session = requests.Session()
        self.session.mount("http://", HTTPAdapter(max_retries=retry))
        self.session.mount("https://", HTTPAdapter(max_retries=retry))

    def close(self) -> None:
        self.session.close()

    # -- pools ------------------------------------------------------------------------------
    def pool(self, name: str) -> PoolState:
        return PoolState.of(self._call("GET", f"{POOLS}/{quote(name, safe='')}", pool=name))

    def pools(self) -> list[PoolState]:
        out: list[PoolState] = []
        while True:
            body = self._call("GET", POOLS, params={"limit": PAGE, "offset": len(out)})
            page = body.get("pools") if isinstance(body, dict) else None
            if not isinstance(page, list):
                raise AirflowApiError("invalid", "Airflow's pool list has no `pools`")
            out += [PoolState.of(p) for p in page]
            if not page or len(out) >= int(body.get("total_entries") or 0):
                return out

    def set_slots(self, current: PoolState, slots: int) -> PoolState:
        """PATCH the pool's slots, nothing else of it (`update_mask=slots`). Airflow validates
        the body as a whole pool, so its name and include_deferred go along unchanged."""
        name = current.name
        body = self._call(
            "PATCH",
            f"{POOLS}/{quote(name, safe='')}",
            params={"update_mask": "slots"},
            json={"pool": name, "slots": slots, "include_deferred": current.include_deferred},
            pool=name,
        )
        return PoolState.of(body)

    # -- transport --------------------------------------------------------------------------
    def _headers(self, fresh: bool = False) -> dict[str, str]:
        if self._login is not None and (self._token is None or fresh):
            self._token = self._fetch_token()
        return {"Authorization": f"Bearer {self._token}"} if self._token else {}

    def _fetch_token(self) -> str:
        assert self._login is not None
        username, password = self._login
        response = self._send(
            "POST", "/auth/token", json={"username": username, "password": password}, headers={}
        )
        if response.status_code in (401, 403):
            raise AirflowApiError(
                "unauthorized",
                f"Airflow API at {self.base} refused user {username!r} at /auth/token "
                f"({response.status_code}): check IMPACTWATCH_AIRFLOW_API_USERNAME/PASSWORD",
            )
        body = self._json(response, "/auth/token")
        token = body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            raise AirflowApiError("invalid", f"{self.base}/auth/token answered no access_token")
        return token

    def _call(self, method: str, path: str, *, pool: str | None = None, **kw: Any) -> Any:
        response = self._send(method, path, headers=self._headers(), **kw)
        if response.status_code == 401 and self._login is not None:  # the token expired
            response = self._send(method, path, headers=self._headers(fresh=True), **kw)
        if response.status_code == 401:
            raise AirflowApiError(
                "unauthorized",
                f"Airflow API at {self.base} answered 401 Unauthorized to {method} {path}: "
                "set IMPACTWATCH_AIRFLOW_API_TOKEN, or IMPACTWATCH_AIRFLOW_API_USERNAME and "
                "IMPACTWATCH_AIRFLOW_API_PASSWORD",
            )
        if response.status_code == 403:
            if "Invalid JWT" in response.text:  # Airflow answers 403 to a malformed token
                raise AirflowApiError(
                    "unauthorized",
                    f"Airflow API at {self.base} rejected the token as invalid (403) on "
                    f"{method} {path}: check IMPACTWATCH_AIRFLOW_API_TOKEN",
                )
            raise AirflowApiError(
                "forbidden",
                f"Airflow API at {self.base}: the user may not {method} {path} (403); "
                "it needs permission on pools",
            )
        if response.status_code == 404 and pool is not None:
            raise AirflowApiError(
                "not_found", f"pool {pool!r} does not exist in Airflow at {self.base}"
            )
        return self._json(response, f"{method} {path}")

    def _send(self, method: str, path: str, **kw: Any) -> requests.Response:
        try:
            return self.session.request(method, self.base + path, timeout=self.timeout, **kw)
        except requests.RequestException as exc:
            raise AirflowApiError(
                "unreachable", f"cannot reach Airflow API at {self.base}: {_cause(exc)}"
            ) from None

    def _json(self, response: requests.Response, what: str) -> Any:
        if not 200 <= response.status_code < 300:
            detail = response.text.strip().replace("\n", " ")[:200]
            raise AirflowApiError(
                "http",
                f"Airflow API at {self.base}: {what} answered {response.status_code} {detail}",
            )
        try:
            return response.json()
        except ValueError:
            raise AirflowApiError(
                "invalid", f"Airflow API at {self.base}: {what} did not answer JSON"
            ) from None


def _cause(exc: BaseException) -> str:
    """The innermost reason of a requests/urllib3 failure, in a few words."""
    while exc.__context__ is not None or exc.__cause__ is not None:
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    text = str(exc)
    if "Connection refused" in text:
        return "connection refused"
    if "timed out" in text.lower():
        return "timed out"
    if "Name or service not known" in text or "nodename nor servname" in text:
        return "unknown host"
    return type(exc).__name__
