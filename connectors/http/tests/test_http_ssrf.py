"""The SSRF guard: every hostile URL form is refused before a connection is made, a redirect
is checked like the first URL, and the connection goes to the address that was checked."""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

import pytest
from http_test_servers import Origin
from soar_http import PinnedResolver, Policy, Refused, http, literal_address

from soar.connectors import ActionContext, ActionFailed

OPEN = {"allowed_hosts": ["*"]}  # any host name; the address rules alone decide


async def refused(settings: dict[str, Any], url: str, action: str = "get") -> ActionFailed:
    spec = http.actions[action]
    ctx = ActionContext("k", settings=settings)
    with pytest.raises(ActionFailed, match="refused") as failed:
        await spec.fn(ctx, spec.input_model.model_validate({"url": url}))
    assert failed.value.retryable is False
    return failed.value


# each URL points at the live origin's port where it can: were the guard to let it through,
# the origin would see the request
HOSTILE = [
    pytest.param("http://127.0.0.1:{port}/ok", "loopback", id="loopback"),
    pytest.param("http://localhost:{port}/ok", "loopback", id="name-resolving-to-loopback"),
    pytest.param("http://[::1]:{port}/ok", "loopback", id="ipv6-loopback"),
    pytest.param("http://[::ffff:127.0.0.1]:{port}/ok", "127.0.0.1", id="ipv4-mapped-ipv6"),
    pytest.param("http://[::127.0.0.1]:{port}/ok", "127.0.0.1", id="ipv4-compatible-ipv6"),
    pytest.param("http://[64:ff9b::7f00:1]:{port}/ok", "127.0.0.1", id="nat64"),
    pytest.param("http://[2002:7f00:1::]:{port}/ok", "127.0.0.1", id="6to4"),
    pytest.param("http://2130706433:{port}/ok", "non-standard form", id="decimal-ipv4"),
    pytest.param("http://0x7f.1:{port}/ok", "non-standard form", id="hex-ipv4"),
    pytest.param("http://0x7f000001:{port}/ok", "non-standard form", id="hex-dword-ipv4"),
    pytest.param("http://0177.0.0.1:{port}/ok", "non-standard form", id="octal-ipv4"),
    pytest.param("http://127.1:{port}/ok", "non-standard form", id="short-ipv4"),
    pytest.param("http://1.2.3.4.5/", "non-standard form", id="five-labels"),
    pytest.param("http://allowed.example@127.0.0.1:{port}/ok", "user info", id="userinfo"),
    pytest.param("http://user:pw@example.com/", "user info", id="userinfo-password"),
    pytest.param("http://169.254.169.254/latest/meta-data/", "metadata", id="aws-metadata"),
    pytest.param("http://[fd00:ec2::254]/latest/meta-data/", "metadata", id="aws-ipv6-metadata"),
    pytest.param("http://100.100.100.200/latest/meta-data/", "metadata", id="alibaba-metadata"),
    pytest.param("http://169.254.1.1/", "link-local", id="link-local"),
    pytest.param("http://[fe80::1]/", "link-local", id="ipv6-link-local"),
    pytest.param("http://[fe80::1%25eth0]/", "zone", id="ipv6-zone"),
    pytest.param("http://10.0.0.1/", "private", id="rfc1918-10"),
    pytest.param("http://172.16.5.4/", "private", id="rfc1918-172"),
    pytest.param("http://192.168.1.1/", "private", id="rfc1918-192"),
    pytest.param("http://100.64.0.1/", "private", id="cgnat"),
    pytest.param("http://[fc00::1]/", "private", id="unique-local"),
    pytest.param("http://[fd12:3456::1]/", "private", id="unique-local-fd"),
    pytest.param("http://224.0.0.1/", "multicast", id="multicast"),
    pytest.param("http://[ff02::1]/", "multicast", id="ipv6-multicast"),
    pytest.param("http://0.0.0.0:{port}/ok", "unspecified", id="unspecified"),
    pytest.param("http://[::]:{port}/ok", "unspecified", id="ipv6-unspecified"),
    pytest.param("http://255.255.255.255/", "broadcast", id="broadcast"),
    pytest.param("http://240.0.0.1/", "reserved", id="reserved"),
    pytest.param("http://0.1.2.3/", "0.0.0.0/8", id="this-network"),
    pytest.param("http://[100::1]/", "reserved", id="ipv6-discard"),
    pytest.param("http://2130706433/", "non-standard form", id="decimal-ipv4-port-80"),
    pytest.param("http://0x7f.1/", "non-standard form", id="hex-ipv4-port-80"),
    pytest.param("http://[::ffff:127.0.0.1]/", "127.0.0.1", id="ipv4-mapped-port-80"),
    pytest.param("http://[::ffff:7f00:1]/", "127.0.0.1", id="ipv4-mapped-hex-form"),
    pytest.param("http://allowed.example@127.0.0.1/", "user info", id="userinfo-port-80"),
    pytest.param("file:///etc/passwd", "only absolute http", id="file-scheme"),
    pytest.param("ftp://example.com/", "only absolute http", id="ftp-scheme"),
    pytest.param("/relative", "only absolute http", id="relative"),
]


@pytest.mark.parametrize(("template", "reason"), HOSTILE)
async def test_a_hostile_url_is_refused(origin: Origin, template: str, reason: str) -> None:
    url = template.format(port=origin.port)
    for action in ("get", "request"):
        failure = await refused(OPEN, url, action)
        assert reason in str(failure)
    assert origin.hits == []


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("http://169.254.169.254/latest/meta-data/", id="aws"),
        pytest.param("http://[fd00:ec2::254]/", id="aws-ipv6"),
        pytest.param("http://[::ffff:169.254.169.254]/", id="mapped"),
        pytest.param("http://224.0.0.1/", id="multicast"),
    ],
)
async def test_metadata_and_multicast_stay_refused_with_allow_private(url: str) -> None:
    await refused({**OPEN, "allow_private": True}, url)


async def test_a_host_off_the_allow_list_is_refused_before_any_lookup() -> None:
    settings = {"allowed_hosts": ["api.example.com", "*.corp.example"]}
    failure = await refused(settings, "http://evil.example.net/")
    assert "not on the allow-list" in str(failure)
    await refused(settings, "http://corp.example/")  # `*.x` is for names under x only
    await refused(settings, "http://evilcorp.example/")
    await refused({}, "http://example.com/")  # nothing is allowed by default


async def test_the_userinfo_trick_is_refused_even_naming_an_allowed_host() -> None:
    settings = {"allowed_hosts": ["allowed.example"]}
    failure = await refused(settings, "http://allowed.example@127.0.0.1/")
    assert "user info" in str(failure)
    failure = await refused(settings, "http://127.0.0.1#@allowed.example/")
    assert "not on the allow-list" in str(failure)


def test_the_allow_list_matches_names_wildcards_and_addresses() -> None:
    policy = Policy.from_settings(
        {"allowed_hosts": ["API.Example.com.", "*.corp.example", "2001:db8::1", "203.0.113.7"]}
    )
    assert policy.is_allowed_host("api.example.com", None)
    assert policy.is_allowed_host("a.b.corp.example", None)
    assert not policy.is_allowed_host("corp.example", None)
    assert not policy.is_allowed_host("api.example.com.evil.net", None)
    v6 = ipaddress.ip_address("2001:db8:0::1")
    assert policy.is_allowed_host(str(v6), v6)
    assert not policy.is_allowed_host("2001:db8::2", ipaddress.ip_address("2001:db8::2"))


def test_allowed_networks_open_exactly_what_they_name() -> None:
    policy = Policy.from_settings({"allowed_hosts": ["*"], "allowed_networks": ["10.1.0.0/16"]})
    policy.check_address(ipaddress.ip_address("10.1.2.3"))
    with pytest.raises(Refused, match="private"):
        policy.check_address(ipaddress.ip_address("10.2.0.1"))


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("example.com", None),
        ("127.0.0.1", "127.0.0.1"),
        ("::ffff:7f00:1", "::ffff:7f00:1"),
        ("1x.example", None),
    ],
)
def test_literal_addresses_are_recognised(host: str, expected: str | None) -> None:
    found = literal_address(host)
    assert (str(found) if found is not None else None) == expected


async def test_a_redirect_to_the_metadata_address_is_refused(origin: Origin) -> None:
    target = "http://169.254.169.254/latest/meta-data/"
    failure = await refused(origin.settings(), f"{origin.url}/redirect?to={target}")
    assert "169.254.169.254" in str(failure)
    failure = await refused(
        {**origin.settings(), "allowed_hosts": ["*"]}, f"{origin.url}/redirect?to={target}"
    )
    assert "metadata" in str(failure)
    assert origin.hits == ["/redirect", "/redirect"]


@pytest.mark.parametrize(
    "target",
    [
        pytest.param("http://[::ffff:127.0.0.1]:{port}/ok", id="mapped-loopback"),
        pytest.param("http://2130706433:{port}/ok", id="decimal"),
        pytest.param("http://localhost:{port}/ok", id="another-name"),
        pytest.param("http://10.0.0.1/", id="private"),
        pytest.param("file:///etc/passwd", id="file"),
        pytest.param("http://x@127.0.0.1:{port}/ok", id="userinfo"),
    ],
)
async def test_a_redirect_from_an_allowed_host_to_a_forbidden_one_is_refused(
    origin: Origin, target: str
) -> None:
    await refused(origin.settings(), f"{origin.url}/redirect?to={target.format(port=origin.port)}")
    assert origin.hits == ["/redirect"]


async def test_a_redirect_to_loopback_is_refused_when_only_the_names_are_open(
    origin: Origin,
) -> None:
    # the first hop is allowed by an explicit network; the redirect to another loopback port
    # is a private address again
    settings = {"allowed_hosts": ["*"], "allowed_networks": ["127.0.0.1/32"]}
    target = f"http://[::1]:{origin.port}/ok"
    failure = await refused(settings, f"{origin.url}/redirect?to={target}")
    assert "loopback" in str(failure)


async def test_the_connection_goes_to_the_checked_address_only() -> None:
    checked = [ipaddress.ip_address("127.0.0.1")]
    resolver = PinnedResolver("api.example.com", checked)
    answers = await resolver.resolve("api.example.com", 443, socket.AF_UNSPEC)
    assert [(a["host"], a["port"], a["hostname"]) for a in answers] == [
        ("127.0.0.1", 443, "api.example.com")
    ]
    assert await resolver.resolve("API.example.com.", 443, socket.AF_INET)
    with pytest.raises(OSError, match="no pinned address"):
        await resolver.resolve("rebound.example.com", 443)
    with pytest.raises(OSError, match="family"):
        await resolver.resolve("api.example.com", 443, socket.AF_INET6)
    with pytest.raises(OSError, match="no pinned address"):
        await PinnedResolver(None, []).resolve("anything", 80)


async def test_a_name_is_connected_through_its_pinned_address(origin: Origin) -> None:
    # `localhost` passes only where loopback is allowed, and reaches the origin through the
    # address resolved and checked beforehand
    settings = {"allowed_hosts": ["localhost"], "allow_private": True}
    spec = http.actions["get"]
    ctx = ActionContext("k", settings=settings)
    url = f"http://localhost:{origin.port}/ok"
    out = await spec.fn(ctx, spec.input_model.model_validate({"url": url}))
    assert out.status == 200  # type: ignore[attr-defined]
    assert origin.hits == ["/ok"]


@pytest.mark.parametrize(
    ("address", "allowed"),
    [
        ("127.0.0.1", True),
        ("::1", True),
        ("10.0.0.1", True),
        ("fc00::1", True),
        ("fe80::1", True),
        ("::ffff:192.168.1.1", True),
        ("8.8.8.8", True),
        ("2001:4860:4860::8888", True),
        ("240.0.0.1", False),
        ("0.1.2.3", False),
        ("169.254.169.254", False),
        ("::ffff:169.254.169.254", False),
        ("ff02::1", False),
    ],
)
def test_allow_private_opens_private_ranges_only(address: str, allowed: bool) -> None:
    policy = Policy.from_settings({"allowed_hosts": ["*"], "allow_private": True})
    if allowed:
        policy.check_address(ipaddress.ip_address(address))
    else:
        with pytest.raises(Refused):
            policy.check_address(ipaddress.ip_address(address))


async def test_ports_can_be_limited(origin: Origin) -> None:
    failure = await refused(origin.settings(allowed_ports=[443]), f"{origin.url}/ok")
    assert f"port {origin.port}" in str(failure)
    spec = http.actions["get"]
    ctx = ActionContext("k", settings=origin.settings(allowed_ports=[origin.port]))
    out = await spec.fn(ctx, spec.input_model.model_validate({"url": f"{origin.url}/ok"}))
    assert out.status == 200  # type: ignore[attr-defined]
    assert origin.hits == ["/ok"]
