"""The demo's AWS identities (examples/inventory/aws-iam.yaml) contained on moto through
the workflow: the IAM user written by ARN is found as a user, not looked up as a role."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import boto3
from temporalio.testing import WorkflowEnvironment

from stanch.config import load_settings
from stanch.inventory import YamlInventory, with_provider_type
from stanch.models import Category, Level
from tests.workflows.helpers import alert, handle, playbook, running_worker, send_alert
from workflows.containment import ContainmentWorkflow
from workflows.containment_types import ContainmentState, StepStatus

REPO = Path(__file__).resolve().parents[2]
S3_POLICY = "arn:aws:iam::aws:policy/AmazonS3FullAccess"


def _moto_user(moto_url: str) -> Any:
    iam = boto3.client("iam", endpoint_url=moto_url, region_name="us-east-1",
                       aws_access_key_id="testing", aws_secret_access_key="testing")
    try:
        iam.create_user(UserName="build-bot")
        iam.create_group(GroupName="build-bot-uploaders")
    except iam.exceptions.EntityAlreadyExistsException:
        pass
    iam.add_user_to_group(UserName="build-bot", GroupName="build-bot-uploaders")
    iam.attach_user_policy(UserName="build-bot", PolicyArn=S3_POLICY)
    return iam


async def test_build_bot_on_moto_as_documented(ts_env: WorkflowEnvironment, task_queue: str,
                                               moto_url: str, tmp_path: Path,
                                               monkeypatch: Any) -> None:
    iam = _moto_user(moto_url)
    config = (REPO / "examples" / "stanch-moto.toml").read_text().replace(
        "http://127.0.0.1:5055", moto_url)
    (tmp_path / "stanch.toml").write_text(f'state_dir = "{tmp_path / "state"}"\n' + config)
    monkeypatch.setenv("STANCH_CONFIG", str(tmp_path / "stanch.toml"))
    monkeypatch.chdir(REPO)
    settings = load_settings()
    inventory = YamlInventory.from_paths(settings.inventory_paths)
    bot = inventory.get("aws_iam:arn:aws:iam::123456789012:user/build-bot")
    assert bot is not None
    bot = with_provider_type(bot, settings)
    pb = playbook([{"action": "reduce_scope"}], categories=["anomalous_api_use"])
    a = alert(severity=Level.high, category=Category.anomalous_api_use, name="build-bot")
    async with running_worker(ts_env.client, settings, task_queue):
        await send_alert(ts_env.client, task_queue, a, [pb], bot)
        h = handle(ts_env.client, task_queue, bot)
        for _ in range(200):
            st = await h.query(ContainmentWorkflow.status)
            if st.state is not ContainmentState.active:
                break
            await asyncio.sleep(0.05)
        await h.terminate("test finished")
    assert st.state is ContainmentState.contained, st.model_dump_json(indent=1)
    assert st.steps[0].status is StepStatus.applied
    assert iam.list_groups_for_user(UserName="build-bot")["Groups"] == []
    assert iam.list_attached_user_policies(UserName="build-bot")["AttachedPolicies"] == []
