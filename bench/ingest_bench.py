"""Ingestion throughput: verify + parse + normalize, per source, on one core.

    python -m bench.ingest_bench [--seconds 0.5]

Each source uses a fixture from tests/fixtures/alerts and the auth mode an operator would
configure for it; requests are signed before the clock starts (signing is the sender's
cost), and standard-webhooks deliveries each carry a fresh id so replay protection runs.
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import UTC, datetime
from pathlib import Path

from pydantic import SecretStr

from stanch.config import Settings, SourceAuth
from stanch.ingest import SOURCES, ReplayCache, authenticate, normalize
from stanch.ingest.signing import SignedRequest, sign

FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "alerts"
WHSEC = "whsec_c2VjcmV0LWtleS1mb3ItYmVuY2htYXJrcw=="
WHSEC_OLD = "whsec_b2xkLXNlY3JldC1rZXktZm9yLWJlbmNobWFya3M="
MODES = {
    "generic": ("standard_webhooks", WHSEC, None),
    "splunk": ("url_token", "splunk-token", None),
    "elastic": ("bearer", "kibana-token", None),
    "sentinel": ("bearer", "logic-app-token", None),
    "crowdstrike": ("hmac", "falcon-key", "X-Timestamp"),
    "datadog": ("bearer", "dd-token", None),
    "guardduty": ("standard_webhooks", WHSEC, None),
    "github": ("github", "gh-secret", None),
    "ocsf": ("hmac", "ocsf-key", None),
}


def _fixture(source: str) -> bytes:
    path = sorted(p for p in (FIXTURES / source).glob("*.json")
                  if not p.name.endswith(".expected.json"))[0]
    return path.read_bytes()


def bench_source(source: str, seconds: float) -> tuple[str, int, float, float]:
    mode, secret, ts_header = MODES[source]
    # Two active secrets, the matching one last: rotation's worst case.
    old = WHSEC_OLD if secret.startswith("whsec_") else "rotated-out-" + secret
    settings = Settings(sources={source: SourceAuth(
        mode=mode,  # type: ignore[arg-type]
        secrets=[SecretStr(old), SecretStr(secret)], timestamp_header=ts_header)})
    body = _fixture(source)
    now = datetime.now(UTC)
    batch = 2000
    requests: list[SignedRequest] = [
        sign(mode, body, secret=secret, now=now, msg_id=f"msg_{i}", timestamp_header=ts_header)
        for i in range(batch)
    ]
    cache = ReplayCache()
    alerts = 0
    done = 0
    start = time.perf_counter()
    while True:
        for req in requests:
            authenticate(source, headers=req.headers, query=req.query, body=body,
                         settings=settings, now=now, replay_cache=cache)
            alerts += len(normalize(source, json.loads(body), now))
        done += len(requests)
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            break
        cache = ReplayCache()  # the same ids again would (rightly) be refused as replays
    return mode, len(body), done / elapsed, alerts / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=0.5, help="time per source")
    args = parser.parse_args()
    print(f"{'source':<12} {'auth mode':<18} {'body B':>7} {'req/s':>9} {'alerts/s':>9}")
    for source in SOURCES:
        mode, size, rps, aps = bench_source(source, args.seconds)
        print(f"{source:<12} {mode:<18} {size:>7} {rps:>9.0f} {aps:>9.0f}")


if __name__ == "__main__":
    main()
