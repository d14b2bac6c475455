"""The provider conformance suite: one set of tests every ``IdentityProvider`` must pass.

For each supported action it applies the action, reads the provider back, checks the
result's captured before-state, undoes it and compares the snapshot field by field with the
one taken before, repeats it (same action id → ``already``, nothing changes, and undoing
the no-op changes nothing), checks that irreversible actions say so and refuse undo, that
no secret reaches a result or a log line, and that a fault surfaces as
``TransientProviderError``.

How to plug a provider in (this is all the mock provider needs)::

    # tests/providers/test_mock_provider.py (tests/providers is a package)
    from .conformance import Case, ConformanceTarget, ProviderConformance

    class TestMockConformance(ProviderConformance):
        ACTIONS = (Action.reduce_scope, Action.force_reauth, Action.rotate, Action.revoke)
        IRREVERSIBLE = frozenset({Action.force_reauth})

        @pytest.fixture
        async def target(self, mock_idp_url) -> AsyncIterator[ConformanceTarget]:
            provider = MockProvider(...)

            async def prepare(action: Action) -> Case:
                ident = ...  # a fresh identity with something for `action` to change
                return Case(IdentityRef(provider="mock", id=ident, kind=IdentityKind.user))

            @asynccontextmanager
            async def faulty() -> AsyncIterator[IdentityProvider]:
                ...  # a provider whose next call meets a fault (429, closed port, …)

            yield ConformanceTarget(provider=provider, prepare=prepare, faulty=faulty)
            await provider.aclose()

``prepare`` is called once per test with the action under test and must return a fresh
identity (and the params to use) in a state where the action has something to do. Undo
may leave out fields the provider cannot restore, but only when the applied result names
them in ``undo.params["unrestorable"]`` (e.g. an AWS console login profile).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any, ClassVar

import pytest
import structlog

from activities.providers.base import (
    FRESH_SNAPSHOT,
    IdentityProvider,
    PermanentProviderError,
    TransientProviderError,
    apply,
)
from stanch.models import Action, ActionResult, ActionStatus, IdentityRef

from .retry import fail_after_write


@dataclass
class Case:
    """An identity ready for one action, and the params to apply it with."""

    identity: IdentityRef
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class ConformanceTarget:
    provider: IdentityProvider
    prepare: Callable[[Action], Awaitable[Case]]
    faulty: Callable[[], AbstractAsyncContextManager[IdentityProvider]] | None = None
    fault_retry_after: float | None = None
    """When set, the injected fault must carry a ``retry_after`` of at least this."""
    normalize: Callable[[dict[str, Any]], dict[str, Any]] = lambda s: s
    """Drops volatile fields (timestamps, etags) before snapshots are compared."""
    secrets: Callable[[], Iterable[str]] = lambda: ()
    """Secret values (credentials, newly issued secrets) that must never appear."""
    issued: Callable[[dict[str, Any]], dict[str, Any]] = lambda s: _issued(s)
    """What a second write of the same action would issue again (credential ids: lists) or
    change again (a password fingerprint): a retry after a lost answer must not."""


_ISSUED_FIELDS = ("access_keys", "secrets", "credentials", "password_key_ids",
                  "secret_id_accessors", "password_fingerprint",
                  "signInSessionsValidFromDateTime", "session_revocation_sid")


def _issued(snapshot: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in _ISSUED_FIELDS:
        value = snapshot.get(key)
        if isinstance(value, dict):
            out[key] = sorted(value)
        elif isinstance(value, list):
            out[key] = sorted(str(v.get("id", v)) if isinstance(v, dict) else str(v)
                              for v in value)
        elif value is not None:
            out[key] = value
    return out


def _new_action_id() -> str:
    return f"conf-{uuid.uuid4().hex[:12]}"


def assert_same_fields(before: dict[str, Any], after: dict[str, Any],
                       skip: Iterable[str] = ()) -> None:
    """Field-by-field equality, naming the first field that differs."""
    skipped = set(skip)
    for key in sorted(set(before) | set(after)):
        if key in skipped:
            continue
        assert key in after, f"field {key!r} disappeared"
        assert key in before, f"field {key!r} appeared"
        assert before[key] == after[key], (
            f"field {key!r} not restored: before={before[key]!r} now={after[key]!r}")


def _no_secrets(target: ConformanceTarget, *texts: str) -> None:
    for secret in target.secrets():
        if secret:
            for text in texts:
                assert secret not in text, "a secret value reached a result or log line"


class ProviderConformance:
    """Subclass, set ``ACTIONS``/``IRREVERSIBLE`` and define a ``target`` fixture."""

    ACTIONS: ClassVar[tuple[Action, ...]] = ()
    IRREVERSIBLE: ClassVar[frozenset[Action]] = frozenset()

    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        if "action" not in metafunc.fixturenames:
            return
        name = metafunc.definition.name
        if "undo_restores" in name:
            actions = [a for a in self.ACTIONS if a not in self.IRREVERSIBLE]
        elif "irreversible" in name:
            actions = [a for a in self.ACTIONS if a in self.IRREVERSIBLE]
        else:
            actions = list(self.ACTIONS)
        if not actions:
            # no irreversible action: the test still checks refusal on a forged result
            metafunc.parametrize("action", [None], ids=["none-declared"])
            return
        metafunc.parametrize("action", actions, ids=[a.value for a in actions])

    @pytest.fixture
    async def target(self) -> AsyncIterator[ConformanceTarget]:
        raise NotImplementedError("define a `target` fixture in the subclass")
        yield  # pragma: no cover

    async def _apply(self, target: ConformanceTarget, action: Action, case: Case,
                     action_id: str) -> ActionResult:
        return await apply(target.provider, action, action_id, case.identity,
                           dict(case.params))

    async def _snap(self, target: ConformanceTarget, identity: IdentityRef) -> dict[str, Any]:
        return target.normalize(await target.provider.snapshot(identity))

    # ----------------------------------------------------------------- tests

    def test_declares_actions(self) -> None:
        assert self.ACTIONS, "a conformance class must list its supported actions"
        assert self.IRREVERSIBLE <= set(self.ACTIONS)

    async def test_snapshot_is_plain_data(self, target: ConformanceTarget) -> None:
        case = await target.prepare(self.ACTIONS[0])
        snap = await target.provider.snapshot(case.identity)
        assert isinstance(snap, dict) and snap
        json.dumps(snap)

    async def test_apply_changes_state_and_captures_before(
        self, target: ConformanceTarget, action: Action
    ) -> None:
        case = await target.prepare(action)
        before = await self._snap(target, case.identity)
        with structlog.testing.capture_logs() as logs:
            result = await self._apply(target, action, case, _new_action_id())
        assert result.status is ActionStatus.applied, result.message
        assert result.changed
        assert result.action is action
        assert_same_fields(before, target.normalize(result.before))
        now = await self._snap(target, case.identity)
        assert now != before, "the action reported a change the provider does not show"
        reported = target.normalize(result.after)
        for key, value in now.items():
            assert reported.get(key) == value, f"result.after[{key!r}] is not what was verified"
        assert result.irreversible is (action in self.IRREVERSIBLE)
        assert (result.undo is None) is result.irreversible
        _no_secrets(target, result.model_dump_json(), repr(logs))

    async def test_undo_restores_snapshot(self, target: ConformanceTarget,
                                          action: Action) -> None:
        case = await target.prepare(action)
        before = await self._snap(target, case.identity)
        applied = await self._apply(target, action, case, _new_action_id())
        assert applied.undo is not None
        undone = await target.provider.undo(_new_action_id(), applied)
        assert undone.status is ActionStatus.undone, undone.message
        assert undone.changed
        unrestorable = applied.undo.params.get("unrestorable", [])
        restored = await self._snap(target, case.identity)
        assert_same_fields(before, restored, skip=unrestorable)
        again = await target.provider.undo(_new_action_id(), applied)
        assert again.status is ActionStatus.already and not again.changed
        assert_same_fields(restored, await self._snap(target, case.identity))
        _no_secrets(target, applied.model_dump_json(), undone.model_dump_json())

    async def test_repeat_is_a_noop(self, target: ConformanceTarget, action: Action) -> None:
        case = await target.prepare(action)
        action_id = _new_action_id()
        first = await self._apply(target, action, case, action_id)
        assert first.status is ActionStatus.applied
        contained = await self._snap(target, case.identity)
        second = await self._apply(target, action, case, action_id)
        assert second.status is ActionStatus.already, second.message
        assert not second.changed
        assert second.undo is None
        assert_same_fields(contained, await self._snap(target, case.identity))
        if not second.irreversible:
            noop = await target.provider.undo(_new_action_id(), second)
            assert noop.status is ActionStatus.already and not noop.changed
            assert_same_fields(contained, await self._snap(target, case.identity))

    async def test_irreversible_action_refuses_undo(self, target: ConformanceTarget,
                                                    action: Action | None) -> None:
        if action is None:
            case = await target.prepare(self.ACTIONS[0])
            result = ActionResult(action_id="forged", action=self.ACTIONS[0],
                                  identity=case.identity, status=ActionStatus.applied,
                                  changed=True, irreversible=True, message="forged")
            with pytest.raises(PermanentProviderError):
                await target.provider.undo(_new_action_id(), result)
            return
        case = await target.prepare(action)
        result = await self._apply(target, action, case, _new_action_id())
        assert result.irreversible and result.undo is None
        assert result.message, "an irreversible result must say what cannot be undone"
        with pytest.raises(PermanentProviderError):
            await target.provider.undo(_new_action_id(), result)

    async def test_retry_after_a_lost_answer_changes_once(self, target: ConformanceTarget,
                                                          action: Action) -> None:
        """A write lands, its answer is lost, the activity retries with the intent's
        snapshot (as activities/containment.py does): exactly one change at the server.
        Tried after the first, second and third write of the action, where it has them."""
        for nth in (1, 2, 3):
            case = await target.prepare(action)
            before = await target.provider.snapshot(case.identity)
            action_id = _new_action_id()
            with fail_after_write(target.provider, nth) as fired:
                try:
                    await apply(target.provider, action, action_id, case.identity,
                                {**case.params, FRESH_SNAPSHOT: before})
                except TransientProviderError:
                    pass
            if not fired:
                assert nth > 1, "the action wrote nothing"
                return  # fewer than nth writes: every write point has been tried
            written = await self._snap(target, case.identity)
            retry = await apply(target.provider, action, action_id, case.identity,
                                {**case.params, "_snapshot": before})
            assert retry.status in (ActionStatus.applied, ActionStatus.already), retry.message
            final = await self._snap(target, case.identity)
            issued, earlier = target.issued(final), target.issued(written)
            for key, value in issued.items():
                if isinstance(value, list):
                    new = sorted(set(value) - set(earlier.get(key, [])))
                    assert not new, (f"the retry of {action.value} (answer lost after write "
                                     f"{nth}) issued {key} {new} again")
                else:
                    assert value == earlier.get(key), (
                        f"the retry of {action.value} (answer lost after write {nth}) "
                        f"changed {key} again")
            again = await apply(target.provider, action, action_id, case.identity,
                                dict(case.params))
            assert again.status is ActionStatus.already and not again.changed, again.message
            assert_same_fields(final, await self._snap(target, case.identity))

    async def test_fault_is_transient(self, target: ConformanceTarget) -> None:
        if target.faulty is None:
            pytest.fail("provide `faulty`: every provider can meet a fault")
        case = await target.prepare(self.ACTIONS[0])
        async with target.faulty() as broken:
            with pytest.raises(TransientProviderError) as caught:
                await apply(broken, self.ACTIONS[0], _new_action_id(), case.identity,
                            dict(case.params))
        err = caught.value
        assert err.retryable
        if target.fault_retry_after is not None:
            assert err.retry_after is not None and err.retry_after >= target.fault_retry_after
        _no_secrets(target, str(err))
