"""AWS IAM from a realistic starting state (moto): contain through every rung, roll back,
and the account differs only in what the adapter declared lost."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import boto3
import pytest
from pydantic import SecretStr

from activities.providers.aws_iam import DENY_ALL_ARN, REVOKE_POLICY, AwsIamProvider
from activities.providers.base import FRESH_SNAPSHOT, TransientProviderError
from stanch.config import ProviderSettings, Settings
from stanch.models import Action, IdentityKind, IdentityRef

from .retry import fail_after_write
from .reversibility import Dump, assert_rollback_exact, flatten

READ = "arn:aws:iam::aws:policy/ReadOnlyAccess"
S3 = "arn:aws:iam::aws:policy/AmazonS3FullAccess"
INLINE = json.dumps({"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": "sqs:SendMessage", "Resource": "*"}]})


@pytest.fixture(scope="module")
def iam(moto_url: str) -> Any:
    return boto3.client("iam", endpoint_url=moto_url, region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing")


@pytest.fixture(scope="module")
async def provider(moto_url: str) -> AsyncIterator[AwsIamProvider]:
    creds = {"access_key_id": SecretStr("testing"), "secret_access_key": SecretStr("testing")}
    conf = ProviderSettings(type="aws_iam", options={"endpoint_url": moto_url,
                                                     "max_attempts": 1},
                            read_credentials=creds, action_credentials=creds)
    p = AwsIamProvider.from_settings("aws", conf, Settings())
    yield p
    await p.aclose()


def _user(iam: Any, name: str, groups: list[str], keys: int) -> list[str]:
    iam.create_user(UserName=name, Tags=[{"Key": "team", "Value": "platform"},
                                          {"Key": "owner", "Value": name}])
    for g in groups:
        iam.add_user_to_group(UserName=name, GroupName=g)
    for arn in (READ, S3):
        iam.attach_user_policy(UserName=name, PolicyArn=arn)
    iam.put_user_policy(UserName=name, PolicyName="queue-writer", PolicyDocument=INLINE)
    iam.create_login_profile(UserName=name, Password="Initial-Passw0rd!")
    return [iam.create_access_key(UserName=name)["AccessKey"]["AccessKeyId"]
            for _ in range(keys)]


def realistic(iam: Any) -> tuple[IdentityRef, list[str], list[str], str]:
    """Alice: an active and an already inactive key, console password, two groups shared with
    Bob, managed and inline policies, tags. Bob alike, with one key."""
    tag = uuid.uuid4().hex[:8]
    groups = [f"admins-{tag}", f"deploy-{tag}"]
    for g in groups:
        iam.create_group(GroupName=g)
    alice, bob = f"alice-{tag}", f"bob-{tag}"
    keys = _user(iam, alice, groups, keys=2)
    iam.update_access_key(UserName=alice, AccessKeyId=keys[1], Status="Inactive")
    _user(iam, bob, groups, keys=1)
    return IdentityRef(provider="aws", id=alice, kind=IdentityKind.user), [alice, bob], groups, \
        keys[0]


def dumper(iam: Any, users: list[str], groups: list[str]):  # type: ignore[no-untyped-def]
    def user(name: str) -> dict[str, Any]:
        inline = {p: iam.get_user_policy(UserName=name, PolicyName=p)["PolicyDocument"]
                  for p in iam.list_user_policies(UserName=name)["PolicyNames"]}
        try:
            iam.get_login_profile(UserName=name)
            login = True
        except iam.exceptions.NoSuchEntityException:
            login = False
        return {
            "keys": {k["AccessKeyId"]: k["Status"]
                     for k in iam.list_access_keys(UserName=name)["AccessKeyMetadata"]},
            "login_profile": login,
            "groups": sorted(g["GroupName"]
                             for g in iam.list_groups_for_user(UserName=name)["Groups"]),
            "attached": sorted(p["PolicyArn"] for p in
                               iam.list_attached_user_policies(UserName=name)["AttachedPolicies"]),
            "inline": inline,
            "tags": {t["Key"]: t["Value"] for t in iam.list_user_tags(UserName=name)["Tags"]},
        }

    async def dump() -> Dump:
        tree: dict[str, Any] = {f"users/{u}": user(u) for u in users}
        for g in groups:
            tree[f"groups/{g}"] = sorted(u["UserName"] for u in iam.get_group(GroupName=g)["Users"])
        return flatten(tree)
    return dump


async def test_every_rung_then_rollback_differs_only_in_declared_losses(
        provider: AwsIamProvider, iam: Any) -> None:
    ref, users, groups, active_key = realistic(iam)
    alice = users[0]
    _, after, results = await assert_rollback_exact(
        "aws_iam", provider, ref, [
            (Action.reduce_scope, {}), (Action.force_reauth, {}),
            (Action.rotate, {"credentials": [active_key]}), (Action.revoke, {})],
        dumper(iam, users, groups), {
            # the session revocation policy stays on purpose: removing it revives sessions
            "sessions": lambda p: p.startswith(f"users/{alice}/inline/{REVOKE_POLICY}/"),
        }, tag=f"aws-{alice}")
    rotate, revoke = results[2], results[3]
    assert "two-key limit" in rotate.message  # deactivated, nothing deleted
    assert DENY_ALL_ARN in revoke.after["attached_policies"]
    assert revoke.after["login_profile"] is True
    assert after[f"users/{alice}/login_profile"] is True


async def test_revoke_then_rollback_restores_everything(provider: AwsIamProvider,
                                                        iam: Any) -> None:
    ref, users, groups, active_key = realistic(iam)
    _, _, [revoke] = await assert_rollback_exact(
        "aws_iam", provider, ref, [(Action.revoke, {})], dumper(iam, users, groups), {},
        tag=f"aws-rv-{ref.id}")
    assert revoke.after["access_keys"][active_key] == "Inactive"
    assert revoke.undo is not None and revoke.undo.params["keys"] == [active_key]


async def test_rotate_at_the_two_key_limit_retried_after_a_lost_answer(
        provider: AwsIamProvider, iam: Any) -> None:
    """At the limit the rotate only deactivates the key; when that answer is lost, the retry
    (with the intent's snapshot) reports the deactivation with its undo, issues no key and
    deletes none."""
    ref, _, _, active_key = realistic(iam)
    before = await provider.snapshot(ref)
    keys = dict(before["access_keys"])
    params = {"credentials": [active_key]}
    action_id = f"act-{uuid.uuid4().hex[:24]}"
    with fail_after_write(provider, 1) as fired:
        with pytest.raises(TransientProviderError):
            await provider.rotate(action_id, ref, {**params, FRESH_SNAPSHOT: before})
    assert fired
    retry = await provider.rotate(action_id, ref, {**params, "_snapshot": before})
    assert retry.changed and "two-key limit" in retry.message
    assert retry.undo is not None and retry.undo.params["old_status"] == "Active"
    now = {k["AccessKeyId"]: k["Status"]
           for k in iam.list_access_keys(UserName=ref.id)["AccessKeyMetadata"]}
    assert set(now) == set(keys) and now[active_key] == "Inactive"
    await provider.undo(f"act-{uuid.uuid4().hex[:24]}", retry)
    now = {k["AccessKeyId"]: k["Status"]
           for k in iam.list_access_keys(UserName=ref.id)["AccessKeyMetadata"]}
    assert now == keys
