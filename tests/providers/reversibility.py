"""Contain through every rung from a realistic starting state, roll back, and compare the
whole directory field by field: what differs must be exactly what the adapter declared lost
(``stanch.capabilities``) — nothing more, and every declared loss for real.

A test gives a *directory dump* (``{path: value}`` over everything the provider holds, every
identity, not just the one contained), and per loss id the paths that loss may touch
(``loss_paths``: loss → predicate on a path). Each provider test module builds the starting
state (several credentials in mixed states, memberships shared with other identities,
inline and managed policies, attributes) on its real local server or fake.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from activities.providers.base import IdentityProvider, apply
from stanch.capabilities import declaration
from stanch.models import Action, ActionResult, IdentityRef

Dump = dict[str, Any]
PathTest = Callable[[str], bool]


def flatten(tree: Any, prefix: str = "") -> Dump:
    """``{"a": {"b": 1}}`` → ``{"a/b": 1}``; lists stay values (compared whole)."""
    if not isinstance(tree, Mapping):
        return {prefix: tree}
    out: Dump = {}
    for key in sorted(tree):
        out.update(flatten(tree[key], f"{prefix}/{key}" if prefix else str(key)))
    return out


def changed_paths(before: Dump, after: Dump) -> list[str]:
    return sorted(k for k in set(before) | set(after) if before.get(k, "∅") != after.get(k, "∅"))


async def contain_and_roll_back(
    provider: IdentityProvider, identity: IdentityRef,
    steps: Iterable[tuple[Action, dict[str, Any]]], tag: str,
) -> list[ActionResult]:
    """Apply each rung in order, then undo every result that has an undo, newest first."""
    results = []
    for i, (action, params) in enumerate(steps):
        results.append(await apply(provider, action, f"{tag}-{i}-{action.value}", identity,
                                   dict(params)))
    for i, result in reversed(list(enumerate(results))):
        if result.undo is not None:
            await provider.undo(f"{tag}-{i}-undo", result)
    return results


def declared_losses(adapter: str, steps: Iterable[tuple[Action, dict[str, Any]]]
                    ) -> set[str]:
    return {loss for action, params in steps
            for loss in declaration(adapter, action).losses(params)}


async def assert_rollback_exact(
    adapter: str, provider: IdentityProvider, identity: IdentityRef,
    steps: list[tuple[Action, dict[str, Any]]], dump: Callable[[], Awaitable[Dump]],
    loss_paths: Mapping[str, PathTest], tag: str,
) -> tuple[Dump, Dump, list[ActionResult]]:
    """The acceptance check: after contain + rollback, the directory equals the one before
    except for paths a declared loss covers, and each declared loss shows in a real change."""
    for action, _ in steps:
        assert declaration(adapter, action).supported, f"{adapter} has no {action.value}"
    before = await dump()
    results = await contain_and_roll_back(provider, identity, steps, tag)
    after = await dump()
    losses = declared_losses(adapter, steps)
    changed = changed_paths(before, after)
    undeclared = [p for p in changed if not any(loss_paths[x](p) for x in losses)]
    assert not undeclared, (
        f"{adapter}: changed after rollback but not declared lost: "
        + "; ".join(f"{p}: {before.get(p, '∅')!r} -> {after.get(p, '∅')!r}"
                    for p in undeclared))
    phantom = [x for x in losses if not any(loss_paths[x](p) for p in changed)]
    assert not phantom, f"{adapter}: declared lost but nothing changed: {phantom}"
    return before, after, results
