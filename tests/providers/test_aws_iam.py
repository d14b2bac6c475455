"""AWS IAM adapter against a real moto_server (IAM conditions are not evaluated by moto)."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from pydantic import SecretStr

from activities.providers.aws_iam import DENY_ALL_ARN, REVOKE_POLICY, AwsIamProvider
from activities.providers.base import (
    IdentityProvider,
    PermanentProviderError,
    TransientProviderError,
)
from stanch.config import ProviderSettings, Settings
from stanch.models import Action, ActionStatus, IdentityKind, IdentityRef

from .conformance import Case, ConformanceTarget, ProviderConformance, assert_same_fields
from .servers import closed_port

READ_POLICY = "arn:aws:iam::aws:policy/ReadOnlyAccess"
S3_POLICY = "arn:aws:iam::aws:policy/AmazonS3FullAccess"


def _settings(url: str, drop: Path | None = None, **opts: Any) -> ProviderSettings:
    creds = {"access_key_id": SecretStr("testing"), "secret_access_key": SecretStr("testing")}
    return ProviderSettings(
        type="aws_iam",
        options={"endpoint_url": url, "region": "us-east-1", "max_attempts": 1,
                 "connect_timeout": 1, "secret_drop_dir": str(drop) if drop else None, **opts},
        read_credentials=creds, action_credentials=creds,
    )


@pytest.fixture(scope="module")
def iam(moto_url: str) -> Any:
    return boto3.client("iam", endpoint_url=moto_url, region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing")


@pytest.fixture(scope="module")
def drop_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("aws") / "drop"


@pytest.fixture(scope="module")
async def provider(moto_url: str, drop_dir: Path) -> AsyncIterator[AwsIamProvider]:
    p = AwsIamProvider.from_settings("aws", _settings(moto_url, drop_dir), Settings())
    yield p
    await p.aclose()


def make_user(iam: Any, *, keys: int = 1, login: bool = True) -> str:
    """A user with two groups, two managed policies, ``keys`` access keys, a login profile."""
    name = f"u-{uuid.uuid4().hex[:10]}"
    iam.create_user(UserName=name)
    for g in ("admins", "deployers"):
        group = f"{g}-{name}"
        iam.create_group(GroupName=group)
        iam.add_user_to_group(UserName=name, GroupName=group)
    for arn in (READ_POLICY, S3_POLICY):
        iam.attach_user_policy(UserName=name, PolicyArn=arn)
    for _ in range(keys):
        iam.create_access_key(UserName=name)
    if login:
        iam.create_login_profile(UserName=name, Password="Initial-Passw0rd!")
    return name


def user_ref(name: str) -> IdentityRef:
    return IdentityRef(provider="aws", id=name, kind=IdentityKind.user)


class TestAwsIamConformance(ProviderConformance):
    ACTIONS = (Action.reduce_scope, Action.force_reauth, Action.rotate, Action.revoke)
    IRREVERSIBLE = frozenset({Action.force_reauth})

    @pytest.fixture
    async def target(self, provider: AwsIamProvider, iam: Any, moto_url: str,
                     drop_dir: Path) -> AsyncIterator[ConformanceTarget]:
        async def prepare(action: Action) -> Case:
            name = make_user(iam)
            params: dict[str, Any] = {}
            if action is Action.rotate:
                key = iam.list_access_keys(UserName=name)["AccessKeyMetadata"][0]
                params["access_key_id"] = key["AccessKeyId"]
            return Case(user_ref(name), params)

        @asynccontextmanager
        async def faulty() -> AsyncIterator[IdentityProvider]:
            broken = AwsIamProvider.from_settings(
                "aws", _settings(f"http://127.0.0.1:{closed_port()}"), Settings())
            yield broken
            await broken.aclose()

        def secrets() -> Iterator[str]:
            yield "testing"
            if drop_dir.exists():
                yield from (f.read_text() for f in drop_dir.iterdir())

        yield ConformanceTarget(provider=provider, prepare=prepare, faulty=faulty,
                                secrets=secrets)


async def test_deny_all_attaches_and_undo_detaches(provider: AwsIamProvider, iam: Any) -> None:
    ref = user_ref(make_user(iam))
    before = await provider.snapshot(ref)
    result = await provider.reduce_scope("a1", ref, {"deny_all": True})
    assert result.status is ActionStatus.applied
    assert DENY_ALL_ARN in (await provider.snapshot(ref))["attached_policies"]
    again = await provider.reduce_scope("a1", ref, {"deny_all": True})
    assert again.status is ActionStatus.already
    # a default reduce_scope afterwards must not lift the deny policy
    scoped = await provider.reduce_scope("a2", ref, {})
    assert DENY_ALL_ARN in scoped.after["attached_policies"]
    await provider.undo("u2", scoped)
    await provider.undo("u1", result)
    assert_same_fields(before, await provider.snapshot(ref))


async def test_reduce_scope_params_choose_what_to_remove(provider: AwsIamProvider,
                                                         iam: Any) -> None:
    name = make_user(iam)
    ref = user_ref(name)
    result = await provider.reduce_scope("a", ref, {"policies": [S3_POLICY], "groups": []})
    assert result.after["attached_policies"] == [READ_POLICY]
    assert len(result.after["groups"]) == 2
    assert result.undo is not None and result.undo.params["policies"] == [S3_POLICY]


async def test_force_reauth_writes_token_issue_time_deny(provider: AwsIamProvider,
                                                         iam: Any) -> None:
    name = make_user(iam)
    result = await provider.force_reauth("fr-1", user_ref(name), {})
    doc = iam.get_user_policy(UserName=name, PolicyName=REVOKE_POLICY)["PolicyDocument"]
    doc = json.loads(doc) if isinstance(doc, str) else doc
    stmt = doc["Statement"][0]
    assert stmt["Effect"] == "Deny"
    assert stmt["Condition"]["DateLessThan"]["aws:TokenIssueTime"] == \
        result.after["token_issue_time_before"]
    # a later, distinct force_reauth moves the cut-off: it is a new revocation
    later = await provider.force_reauth("fr-2", user_ref(name), {})
    assert later.status is ActionStatus.applied


async def test_roles_reduce_scope_and_revoke(provider: AwsIamProvider, iam: Any) -> None:
    name = f"r-{uuid.uuid4().hex[:10]}"
    trust = json.dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"},
        "Action": "sts:AssumeRole"}]})
    iam.create_role(RoleName=name, AssumeRolePolicyDocument=trust)
    iam.attach_role_policy(RoleName=name, PolicyArn=READ_POLICY)
    arn = iam.get_role(RoleName=name)["Role"]["Arn"]
    ref = IdentityRef(provider="aws", id=arn, kind=IdentityKind.service_account)
    before = await provider.snapshot(ref)
    assert before["kind"] == "role"
    revoked = await provider.revoke("rv", ref, {})
    assert revoked.action is Action.revoke
    assert DENY_ALL_ARN in revoked.after["attached_policies"]
    await provider.undo("u", revoked)
    assert_same_fields(before, await provider.snapshot(ref))
    scoped = await provider.reduce_scope("rs", ref, {})
    assert scoped.after["attached_policies"] == []
    await provider.undo("u2", scoped)
    assert_same_fields(before, await provider.snapshot(ref))
    with pytest.raises(PermanentProviderError, match="no access keys"):
        await provider.rotate("rot", ref, {})


async def test_rotate_by_access_key_identity_keeps_secret_out(
    provider: AwsIamProvider, iam: Any, drop_dir: Path
) -> None:
    name = make_user(iam)
    key_id = iam.list_access_keys(UserName=name)["AccessKeyMetadata"][0]["AccessKeyId"]
    ref = IdentityRef(provider="aws", id=key_id, kind=IdentityKind.access_key)
    result = await provider.rotate("rot", ref, {})
    new_id = result.after["new_access_key_id"]
    assert result.after["access_keys"] == {key_id: "Inactive", new_id: "Active"}
    secret_file = next(f for f in drop_dir.iterdir() if new_id in f.name)
    assert secret_file.stat().st_mode & 0o077 == 0
    secret = secret_file.read_text()
    assert len(secret) == 40
    assert secret not in result.model_dump_json()
    again = await provider.rotate("rot-2", ref, {})
    assert again.status is ActionStatus.already


async def test_rotate_at_two_key_limit_deactivates_and_never_deletes(
        provider: AwsIamProvider, iam: Any) -> None:
    name = make_user(iam, keys=2)
    k1, k2 = (k["AccessKeyId"] for k in iam.list_access_keys(UserName=name)["AccessKeyMetadata"])
    iam.update_access_key(UserName=name, AccessKeyId=k2, Status="Inactive")
    result = await provider.rotate("rot", user_ref(name), {"access_key_id": k1})
    assert result.after["access_keys"] == {k1: "Inactive", k2: "Inactive"}
    assert f"Delete {k2} by hand" in result.message
    undone = await provider.undo("u", result)
    assert undone.after["access_keys"] == {k1: "Active", k2: "Inactive"}
    # both inactive and no room: stop for a human, change nothing
    iam.update_access_key(UserName=name, AccessKeyId=k1, Status="Inactive")
    with pytest.raises(PermanentProviderError) as err:
        await provider.rotate("rot-2", user_ref(name), {"credentials": [k1]})
    assert err.value.code == "LimitExceeded" and "never deletes" in str(err.value)
    assert len(iam.list_access_keys(UserName=name)["AccessKeyMetadata"]) == 2


async def test_rotate_replaces_a_key_a_credential_revoke_deactivated(
        provider: AwsIamProvider, iam: Any) -> None:
    name = make_user(iam, keys=1)
    [k1] = (k["AccessKeyId"] for k in iam.list_access_keys(UserName=name)["AccessKeyMetadata"])
    revoked = await provider.revoke("rv", user_ref(name), {"target": "credential",
                                                           "credentials": [k1]})
    assert revoked.after["access_keys"] == {k1: "Inactive"}
    assert DENY_ALL_ARN not in revoked.after["attached_policies"]
    rotated = await provider.rotate("rot", user_ref(name), {"credentials": [k1]})
    new = rotated.after["new_access_key_id"]
    assert rotated.after["access_keys"] == {k1: "Inactive", new: "Active"}
    again = await provider.rotate("rot-again", user_ref(name), {"credentials": [k1]})
    assert again.status is ActionStatus.already
    await provider.undo("u1", rotated)
    await provider.undo("u2", revoked)
    keys = iam.list_access_keys(UserName=name)["AccessKeyMetadata"]
    assert {k["AccessKeyId"]: k["Status"] for k in keys} == {k1: "Active"}


async def test_rotate_without_key_id_needs_exactly_one_active(provider: AwsIamProvider,
                                                              iam: Any) -> None:
    name = make_user(iam, keys=2)
    with pytest.raises(PermanentProviderError, match="access_key_id"):
        await provider.rotate("rot", user_ref(name), {})


async def test_revoke_blocks_with_deny_policy_and_keeps_the_login_profile(
        provider: AwsIamProvider, iam: Any) -> None:
    name = make_user(iam, keys=2)
    before = await provider.snapshot(user_ref(name))
    result = await provider.revoke("rv", user_ref(name), {})
    assert set(result.after["access_keys"].values()) == {"Inactive"}
    assert result.after["login_profile"] is True
    assert DENY_ALL_ARN in result.after["attached_policies"]
    undone = await provider.undo("u", result)
    assert_same_fields(before, undone.after)


async def test_revoke_of_named_key_leaves_the_others(provider: AwsIamProvider,
                                                     iam: Any) -> None:
    name = make_user(iam, keys=2)
    k1, k2 = (k["AccessKeyId"] for k in iam.list_access_keys(UserName=name)["AccessKeyMetadata"])
    result = await provider.revoke("rv", user_ref(name), {"target": "credential",
                                                          "credentials": [k2]})
    assert result.after["access_keys"] == {k1: "Active", k2: "Inactive"}
    assert DENY_ALL_ARN not in result.after["attached_policies"]
    with pytest.raises(PermanentProviderError, match="do not belong"):
        await provider.revoke("rv2", user_ref(name), {"credentials": ["AKIANOTHERS0000000000"]})


async def test_throttling_is_transient_with_retry_after(provider: AwsIamProvider) -> None:
    client = provider._read
    with Stubber(client) as stub:
        stub.add_client_error("get_user", service_error_code="Throttling",
                              service_message="Rate exceeded", http_status_code=400)
        with pytest.raises(TransientProviderError) as err:
            await provider.snapshot(user_ref("anyone"))
    assert err.value.code == "Throttling" and err.value.retry_after


async def test_unknown_user_is_permanent_with_code(provider: AwsIamProvider) -> None:
    with pytest.raises(PermanentProviderError) as err:
        await provider.snapshot(user_ref("nobody-here"))
    assert err.value.code == "NoSuchEntity"


async def test_secret_file_credentials(moto_url: str, tmp_path: Path, iam: Any) -> None:
    secret = tmp_path / "aws_secret"
    secret.write_text("testing\n")
    conf = _settings(moto_url)
    conf.action_credentials["secret_access_key"] = SecretStr(f"file:{secret}")
    p = AwsIamProvider.from_settings("aws", conf, Settings())
    name = make_user(iam)
    result = await p.revoke("rv", user_ref(name), {})
    assert result.status is ActionStatus.applied
    await p.aclose()


async def test_playbook_params_only_new_grants(provider: AwsIamProvider, iam: Any) -> None:
    name = make_user(iam)
    ref = user_ref(name)
    new_group = f"deployers-{name}"
    result = await provider.reduce_scope("pb", ref, {
        "only_new_grants": True, "new_grants": [new_group, "AmazonS3FullAccess"],
        "remove_groups": [], "detach_policies": [], "attach_deny_policy": False})
    assert result.undo is not None
    assert result.undo.params == {"op": "restore_scope", "policies": [S3_POLICY],
                                  "groups": [new_group]}
    deny = await provider.reduce_scope("pb2", ref, {"attach_deny_policy": True})
    assert DENY_ALL_ARN in deny.after["attached_policies"]
    # empty playbook lists mean "the default": everything else goes
    rest = await provider.reduce_scope("pb3", ref, {"remove_groups": [],
                                                    "detach_policies": []})
    assert rest.after["attached_policies"] == [DENY_ALL_ARN] and rest.after["groups"] == []


async def test_parameters_it_cannot_honour_are_refused(provider: AwsIamProvider,
                                                       iam: Any) -> None:
    name = make_user(iam, keys=1)
    before = await provider.snapshot(user_ref(name))
    with pytest.raises(PermanentProviderError, match="not its password"):
        await provider.rotate("rot", user_ref(name), {"credential": "password"})
    assert await provider.snapshot(user_ref(name)) == before
