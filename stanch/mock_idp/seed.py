"""The demo identities every fresh mock IdP starts with.

Ids are fixed: the inventory, playbooks and other test suites name them. Timestamps are
fixed too, so a reset is byte-for-byte the same state.
"""

from __future__ import annotations

from typing import Any

SEED_TIME = "2025-01-01T00:00:00+00:00"

# Each identity: (id, kind, display_name, upn, groups[(name, privileged)],
#                 sessions[id], credentials[(id, type)])
SEED_IDENTITIES: list[dict[str, Any]] = [
    {
        "id": "u-alice",
        "kind": "user",
        "display_name": "Alice Ng",
        "upn": "alice@example.com",
        "groups": [
            ("employees", False),
            ("engineering", False),
            ("prod-admins", True),
            ("break-glass-admins", True),
        ],
        "sessions": ["sess-alice-0001", "sess-alice-0002"],
        "credentials": [("pwd-alice-0001", "password"), ("mfa-alice-0001", "mfa")],
    },
    {
        "id": "u-bob",
        "kind": "user",
        "display_name": "Bob Ruiz",
        "upn": "bob@example.com",
        "groups": [("employees", False), ("finance", False), ("payments-approvers", True)],
        "sessions": ["sess-bob-0001"],
        "credentials": [("pwd-bob-0001", "password")],
    },
    {
        "id": "sa-deploy",
        "kind": "service_account",
        "display_name": "deploy bot",
        "upn": None,
        "groups": [("ci-deployers", False), ("prod-deployers", True)],
        "sessions": [],
        "credentials": [("AKIAMOCKDEPLOY0001", "api_key")],
    },
    {
        "id": "app-reporting",
        "kind": "oauth_app",
        "display_name": "reporting integration",
        "upn": None,
        "groups": [("reports.read", False), ("users.read.all", True), ("mail.send", True)],
        "sessions": [],
        "credentials": [("cs-reporting-0001", "client_secret")],
    },
    {
        "id": "tok-ci",
        "kind": "token",
        "display_name": "CI pipeline token",
        "upn": None,
        "groups": [("ci-runners", False), ("registry-push", True)],
        "sessions": [],
        "credentials": [("tok-ci-0001", "token")],
    },
]
