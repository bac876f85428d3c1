"""Session fixtures of the ldap connector's tests: a real OpenLDAP slapd and a real Samba AD DC,
each started once (ldap_test_servers), and `lab`, parametrised over both."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from ldap_lab import Lab
from ldap_test_servers import AD_BASE, AD_HOST_NAME, BIND_PASSWORD, SambaDC, running_samba
from soar_ldap.testing import ServerMissing, Slapd, running_slapd

from tests.servers import unavailable

FLAVOURS = [pytest.param("openldap", id="openldap"), pytest.param("ad", id="ad")]


@pytest.fixture(scope="session")
def slapd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Slapd]:
    try:
        with running_slapd(tmp_path_factory.mktemp("slapd"), password=BIND_PASSWORD) as server:
            yield server
    except ServerMissing as exc:
        unavailable(str(exc))


@pytest.fixture(scope="session")
def samba(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SambaDC]:
    try:
        with running_samba(tmp_path_factory.mktemp("samba")) as server:
            lab = Lab("ad", server.settings, str(server.ca_file), AD_HOST_NAME)
            conn = lab.admin()
            conn.add(f"OU=Services,{AD_BASE}", ["top", "organizationalUnit"])
            conn.unbind()
            yield server
    except ServerMissing as exc:
        unavailable(str(exc))


@pytest.fixture(scope="session")
def openldap_lab(slapd: Slapd) -> Lab:
    return Lab("openldap", slapd.settings)


@pytest.fixture(scope="session")
def ad_lab(samba: SambaDC) -> Lab:
    return Lab("ad", samba.settings, str(samba.ca_file), AD_HOST_NAME)


@pytest.fixture(params=FLAVOURS)
def lab(request: pytest.FixtureRequest) -> Lab:
    """The directory under test: OpenLDAP with ppolicy, then Active Directory (Samba)."""
    return request.getfixturevalue(f"{request.param}_lab")
