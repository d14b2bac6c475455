"""AWS IAM grant_scope/revoke_scope against a real moto_server (time-bound elevation)."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import boto3
import pytest
from pydantic import SecretStr

from activities.providers.aws_iam import AwsIamProvider
from activities.providers.base import PermanentProviderError, ScopeGrantingProvider
from stanch.config import ProviderSettings, Settings
from stanch.models import IdentityKind, IdentityRef

READ_POLICY = "arn:aws:iam::aws:policy/ReadOnlyAccess"
ADMIN_POLICY = "arn:aws:iam::aws:policy/AdministratorAccess"


@pytest.fixture(scope="module")
def iam(moto_url: str) -> Any:
    return boto3.client("iam", endpoint_url=moto_url, region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing")


@pytest.fixture(scope="module")
async def provider(moto_url: str) -> AsyncIterator[AwsIamProvider]:
    creds = {"access_key_id": SecretStr("testing"), "secret_access_key": SecretStr("testing")}
    conf = ProviderSettings(type="aws_iam",
                            options={"endpoint_url": moto_url, "region": "us-east-1",
                                     "max_attempts": 1},
                            read_credentials=creds, action_credentials=creds)
    p = AwsIamProvider.from_settings("aws", conf, Settings())
    yield p
    await p.aclose()


def _uid() -> str:
    return uuid.uuid4().hex[:10]


def user_groups(iam: Any, name: str) -> set[str]:
    return {g["GroupName"] for g in iam.list_groups_for_user(UserName=name)["Groups"]}


def user_policies(iam: Any, name: str) -> set[str]:
    return {p["PolicyArn"]
            for p in iam.list_attached_user_policies(UserName=name)["AttachedPolicies"]}


def role_policies(iam: Any, name: str) -> set[str]:
    return {p["PolicyArn"]
            for p in iam.list_attached_role_policies(RoleName=name)["AttachedPolicies"]}


def test_is_a_scope_granting_provider(provider: AwsIamProvider) -> None:
    assert isinstance(provider, ScopeGrantingProvider)


@pytest.mark.parametrize("form", ["group:{}", "{}"])
async def test_group_scope_roundtrip(provider: AwsIamProvider, iam: Any, form: str) -> None:
    user, group = f"u-{_uid()}", f"prod-db-{_uid()}"
    iam.create_user(UserName=user)
    iam.create_group(GroupName=group)
    ref = IdentityRef(provider="aws", id=user, kind=IdentityKind.user)
    scope = form.format(group)

    assert await provider.grant_scope("el-1", ref, scope) is True
    assert user_groups(iam, user) == {group}
    assert await provider.grant_scope("el-2", ref, scope) is False
    assert await provider.revoke_scope("el-3", ref, scope) is True
    assert user_groups(iam, user) == set()
    assert await provider.revoke_scope("el-4", ref, scope) is False


async def test_policy_scope_roundtrip_user_by_arn(provider: AwsIamProvider, iam: Any) -> None:
    user = f"u-{_uid()}"
    arn = iam.create_user(UserName=user)["User"]["Arn"]
    iam.attach_user_policy(UserName=user, PolicyArn=READ_POLICY)
    ref = IdentityRef(provider="aws", id=arn, kind=IdentityKind.user)
    scope = f"policy:{ADMIN_POLICY}"

    assert await provider.grant_scope("el-1", ref, scope) is True
    assert user_policies(iam, user) == {READ_POLICY, ADMIN_POLICY}
    assert await provider.grant_scope("el-2", ref, scope) is False
    assert await provider.revoke_scope("el-3", ref, scope) is True
    assert user_policies(iam, user) == {READ_POLICY}  # only the granted policy went
    assert await provider.revoke_scope("el-4", ref, scope) is False


async def test_policy_scope_roundtrip_role(provider: AwsIamProvider, iam: Any) -> None:
    role = f"r-{_uid()}"
    iam.create_role(RoleName=role, AssumeRolePolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                "Principal": {"Service": "ec2.amazonaws.com"}}]}))
    ref = IdentityRef(provider="aws", id=role, kind=IdentityKind.service_account)
    scope = f"policy:{ADMIN_POLICY}"

    assert await provider.grant_scope("el-1", ref, scope) is True
    assert role_policies(iam, role) == {ADMIN_POLICY}
    assert await provider.grant_scope("el-2", ref, scope) is False
    assert await provider.revoke_scope("el-3", ref, scope) is True
    assert role_policies(iam, role) == set()
    assert await provider.revoke_scope("el-4", ref, scope) is False
    with pytest.raises(PermanentProviderError) as err:  # roles have no groups
        await provider.grant_scope("el-5", ref, "group:admins")
    assert err.value.code == "Unsupported"


async def test_preexisting_membership_and_policy(provider: AwsIamProvider, iam: Any) -> None:
    user, group = f"u-{_uid()}", f"admins-{_uid()}"
    iam.create_user(UserName=user)
    iam.create_group(GroupName=group)
    iam.add_user_to_group(UserName=user, GroupName=group)
    iam.attach_user_policy(UserName=user, PolicyArn=ADMIN_POLICY)
    ref = IdentityRef(provider="aws", id=user, kind=IdentityKind.user)

    assert await provider.grant_scope("el-1", ref, f"group:{group}") is False
    assert await provider.grant_scope("el-2", ref, group) is False
    assert await provider.grant_scope("el-3", ref, f"policy:{ADMIN_POLICY}") is False
    assert user_groups(iam, user) == {group}
    assert user_policies(iam, user) == {ADMIN_POLICY}


async def test_bad_scopes_are_permanent(provider: AwsIamProvider, iam: Any) -> None:
    user = f"u-{_uid()}"
    iam.create_user(UserName=user)
    ref = IdentityRef(provider="aws", id=user, kind=IdentityKind.user)
    with pytest.raises(PermanentProviderError) as err:
        await provider.grant_scope("el-1", ref, "policy:AdministratorAccess")
    assert err.value.code == "InvalidScope"
    with pytest.raises(PermanentProviderError) as err:
        await provider.grant_scope("el-2", ref, f"group:missing-{_uid()}")
    assert err.value.code == "NoSuchEntity"
    assert user_groups(iam, user) == set()


async def test_holds_scope_in_every_spelling(provider: AwsIamProvider, iam: Any) -> None:
    """The elevation layer tells pre-existing grants apart with this: `group:X`, `X` and
    `policy:ARN` must all be found in a real snapshot."""
    user, group = f"u-{_uid()}", f"admins-{_uid()}"
    iam.create_user(UserName=user)
    iam.create_group(GroupName=group)
    ref = IdentityRef(provider="aws", id=user, kind=IdentityKind.user)
    scopes = [f"group:{group}", group, f"policy:{ADMIN_POLICY}"]
    before = await provider.snapshot(ref)
    assert not any(provider.holds_scope(before, s) for s in scopes)
    await provider.grant_scope("el-1", ref, group)
    await provider.grant_scope("el-2", ref, f"policy:{ADMIN_POLICY}")
    after = await provider.snapshot(ref)
    assert all(provider.holds_scope(after, s) for s in scopes)
