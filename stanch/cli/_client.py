"""The CLI's HTTP client for the Stanch API: where it is, who we are, what went wrong.

The base URL comes from ``--api``, else ``STANCH_API_URL``, else ``settings.api.url``; the
token from :mod:`stanch.clientauth`. A refusal is printed as ``error: <status> <reason>``
and the command exits 1, so scripts can tell a refused decision from a crash.
"""

from __future__ import annotations

import json
import os
from typing import Annotated, Any, NoReturn

import httpx
import typer
from rich.console import Console

from stanch.clientauth import auth_headers
from stanch.config import ConfigError, Settings, load_settings

ApiOption = Annotated[
    str | None,
    typer.Option("--api", envvar="STANCH_API_URL", show_envvar=True,
                 help="Base URL of the Stanch API (default: settings api.host:api.port)."),
]
JsonOption = Annotated[
    bool, typer.Option("--json", help="Print the API's JSON response as is."),
]


class ApiError(Exception):
    """The API answered with an error status; ``reason`` is what it said."""

    def __init__(self, status: int, reason: str, body: str) -> None:
        super().__init__(f"{status} {reason}")
        self.status = status
        self.reason = reason
        self.body = body


class ApiUnreachable(Exception):
    """Nothing answered at the API's address."""


def default_api_url() -> str:
    """``settings.api.url``; a wildcard bind address is reached on loopback."""
    from stanch.config import ConfigError, load_settings

    try:
        settings = load_settings()
    except ConfigError as err:
        fail(f"{err}\n(or pass --api / set STANCH_API_URL)", code=2)
    host = settings.api.host
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    return f"http://{host}:{settings.api.port}"


def error_reason(resp: httpx.Response) -> str:
    """The human reason in an error response: ``reason``, ``detail``, or the raw text."""
    try:
        body = resp.json()
    except ValueError:
        return resp.text.strip()[:500] or resp.reason_phrase
    if isinstance(body, dict):
        for key in ("reason", "detail"):
            value = body.get(key)
            if isinstance(value, str) and value:
                return value
            if isinstance(value, list) and value:
                return "; ".join(_validation_error(e) for e in value)
    return json.dumps(body)[:500]


def _validation_error(err: Any) -> str:
    if not isinstance(err, dict):
        return str(err)
    loc = ".".join(str(p) for p in err.get("loc", []) if p != "body")
    return f"{loc}: {err.get('msg', '')}" if loc else str(err.get("msg", err))


class ApiClient:
    """A thin synchronous client: JSON in, JSON out, errors as :class:`ApiError`."""

    def __init__(self, base_url: str | None = None, *, token_headers: dict[str, str] | None = None,
                 timeout: float = 30.0) -> None:
        self.base_url = (base_url or default_api_url()).rstrip("/")
        headers = auth_headers() if token_headers is None else token_headers
        self._http = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout)

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self._http.close()

    def get(self, path: str, params: dict[str, Any] | None = None) -> httpx.Response:
        return self._send("GET", path, params=params)

    def post(self, path: str, body: dict[str, Any]) -> httpx.Response:
        return self._send("POST", path, json=body)

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            resp = self._http.request(method, path, **kwargs)
        except httpx.ConnectError as err:
            raise ApiUnreachable(str(err)) from None
        except httpx.TimeoutException:
            raise ApiUnreachable("timed out") from None
        if resp.status_code >= 400:
            raise ApiError(resp.status_code, error_reason(resp), resp.text)
        return resp


# A table read from a pipe or a file (``stanch status > out.txt``, ``| grep``) is not cut to
# rich's default 80 columns: it gets this many, or $COLUMNS when set.
PIPE_WIDTH = 240


def table_console() -> Console:
    """A console for tables, made per call so it writes to the stdout of the moment (the
    test runner swaps it); as wide as the terminal, or PIPE_WIDTH when stdout is none."""
    console = Console(highlight=False, soft_wrap=False)
    if not console.is_terminal and not os.environ.get("COLUMNS"):
        console = Console(highlight=False, soft_wrap=False, width=PIPE_WIDTH)
    return console


def settings_or_exit() -> Settings:
    """The settings; a bad one is printed (naming the setting) and the command exits 2."""
    try:
        return load_settings()
    except ConfigError as err:
        typer.echo(str(err), err=True)
        raise typer.Exit(2) from None


def fail(message: str, *, code: int = 1) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def call(api: str | None, method: str, path: str, body: dict[str, Any] | None = None, *,
         as_json: bool = False, params: dict[str, Any] | None = None) -> Any:
    """Call the API and return its JSON; on any failure print why and exit 1.

    With ``as_json`` an error body is still printed to stdout as is, for scripts.
    """
    client = ApiClient(api)
    try:
        with client:
            if method == "GET":
                resp = client.get(path, params=params)
            else:
                resp = client.post(path, body or {})
    except ApiUnreachable as err:
        fail(f"cannot reach the Stanch API at {client.base_url} ({err}).\n"
             "Start it with `stanch up` (or `stanch api`), or point --api / STANCH_API_URL "
             "at a running API.")
    except ApiError as err:
        if as_json and err.body:
            typer.echo(err.body)
        hint = ""
        if err.status == 401:
            from stanch.clientauth import token_path

            hint = (f"\n(the CLI sends STANCH_TOKEN, else the token in {token_path()}; "
                    "an admin mints one with `stanch token create`)")
        fail(f"{err.status} {err.reason}{hint}")
    if as_json:
        typer.echo(resp.text)
    try:
        return resp.json()
    except ValueError:
        fail(f"{resp.status_code} the API answered with something that is not JSON")
