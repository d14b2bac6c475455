"""Fault injection *after* a write: the provider changed, the answer is lost, the activity
retries. Used by the conformance case that asserts exactly one change at the server."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from activities.providers.aws_iam import AwsIamProvider
from activities.providers.base import IdentityProvider, TransientProviderError
from activities.providers.entra import EntraProvider
from activities.providers.ldap import LdapProvider
from activities.providers.mock import MockProvider
from activities.providers.okta import OktaProvider
from activities.providers.scim import ScimProvider
from activities.providers.vault import VaultProvider


@contextmanager
def fail_after_write(provider: IdentityProvider, nth: int = 1) -> Iterator[list[str]]:
    """The provider's ``nth`` write goes through, then raises as if its answer were lost
    (earlier writes answer normally). Yields the writes that failed so (one, once fired)."""
    fired: list[str] = []
    writes = [0]

    def lost(what: str) -> TransientProviderError:
        fired.append(what)
        return TransientProviderError(f"{what}: answer lost (injected)", provider=provider.name,
                                      code="Injected")

    def due() -> bool:
        writes[0] += 1
        return writes[0] == nth and not fired

    target: Any
    name: str
    if isinstance(provider, ScimProvider | OktaProvider | EntraProvider):
        target, name = provider._api, "request"
        orig = target.request

        async def request(method: str, path: str, *, write: bool = False, **kw: Any) -> Any:
            r = await orig(method, path, write=write, **kw)
            if write and due():
                raise lost(f"{method} {path}")
            return r
        patched: Any = request
    elif isinstance(provider, LdapProvider):
        target, name = provider, "_run"
        orig = provider._run

        async def run(what: str, write: bool, fn: Any) -> Any:
            r = await orig(what, write, fn)
            if write and due():
                raise lost(what)
            return r
        patched = run
    elif isinstance(provider, AwsIamProvider | VaultProvider):
        target, name = provider, "_call"
        orig = provider._call
        writer = provider._write

        def is_write(fn: Any) -> bool:
            owner = getattr(fn, "__self__", None)
            return owner is writer or getattr(owner, "_adapter", None) is getattr(
                writer, "adapter", object())

        async def call(what: str, fn: Any, *args: Any, **kw: Any) -> Any:
            r = await orig(what, fn, *args, **kw)
            if is_write(fn) and due():
                raise lost(what)
            return r
        patched = call
        if isinstance(provider, AwsIamProvider):
            orig_maybe = provider._maybe

            async def maybe(what: str, fn: Any, **kw: Any) -> Any:
                r = await orig_maybe(what, fn, **kw)
                if is_write(fn) and due():
                    raise lost(what)
                return r
            provider._maybe = maybe  # type: ignore[method-assign]
    elif isinstance(provider, MockProvider):
        target, name = provider, "_write"
        orig = provider._write

        async def write(*args: Any, **kw: Any) -> Any:
            r = await orig(*args, **kw)
            if due():
                raise lost(str(args[2]))
            return r
        patched = write
    else:  # pragma: no cover - a new adapter must be added here
        raise AssertionError(f"no after-write fault for {type(provider).__name__}")
    setattr(target, name, patched)
    try:
        yield fired
    finally:
        delattr(target, name)
        if isinstance(provider, AwsIamProvider):
            del provider._maybe
