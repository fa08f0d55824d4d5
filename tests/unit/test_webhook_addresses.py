"""Where a webhook may go: URLs checked in full (a bad port or host is refused, never raised),
every resolved address checked, the connection made to the checked address (no second DNS
answer), and each key's webhooks signed with its own secret."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import threading
import time

import httpx
import pytest

from veracity.errors import BadRequestError
from veracity.jobs.webhook_targets import IPAddress, parse_webhook_url, refusal
from veracity.jobs.webhooks import WebhookSender, key_secret, verify_signature

SECRET = "webhook-secret-0123456789"  # noqa: S105 (a test secret)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://example.com:99999/", "Port out of range"),
        ("http://example.com:0/", "port 0"),
        ("http://example.com:+80/", "not a valid URL"),
        ("http://" + "a" * 64 + ".example.com/", "longer than 63 characters"),
        ("http://" + "a." * 127 + "com/", "longer than 253 characters"),
        ("http://[::1/", "not a valid URL"),
        ("http://a..b/", "not a valid host name"),
        ("http://-a.example.com/", "not a valid host name"),
        ("http://%41.example.com/", "percent sign"),
        ("http://[fe80::1%25eth0]/", "percent sign"),
        ("http://1.2.3.4.5/", "neither a host name nor an IP address"),
        ("http://exa mple.com/", "spaces"),
        ("http://a\x00b.example.com/", "control characters"),
        ("http://a\\@b.example.com/", "backslashes"),
        ("https://user:pw@example.com/h", "credentials"),
        ("ftp://example.com/h", "http:// or https://"),
        ("/relative", "http:// or https://"),
    ],
)
def test_an_invalid_url_is_refused_with_its_reason(url: str, reason: str) -> None:
    with pytest.raises(BadRequestError, match="webhook_url") as refused:
        parse_webhook_url(url)
    assert reason in refused.value.message


@pytest.mark.parametrize(
    ("url", "host", "port"),
    [
        ("https://hooks.example.com/veracity?x=1", "hooks.example.com", 443),
        ("http://hooks.example.com:8080/h", "hooks.example.com", 8080),
        ("http://[2606:4700::1]:8443/h", "2606:4700::1", 8443),
        ("https://bücher.example/h", "xn--bcher-kva.example", 443),
    ],
)
def test_a_valid_url_is_read_as_the_client_reads_it(url: str, host: str, port: int) -> None:
    target = parse_webhook_url(url)
    assert (target.host, target.port) == (host, port)


@pytest.mark.parametrize(
    "address",
    [
        "100.64.0.1",  # shared address space (carrier-grade NAT)
        "100.100.100.200",  # a cloud metadata service, inside 100.64.0.0/10
        "fec0::1",  # IPv6 site-local
        "2002:7f00:1::1",  # 6to4 around 127.0.0.1
        "2002:808:808::1",  # 6to4, whatever it wraps
        "64:ff9b::7f00:1",  # NAT64 around 127.0.0.1
        "::ffff:127.0.0.1",
        "::7f00:1",  # IPv4-compatible, deprecated
        "127.0.0.1",
        "10.1.2.3",
        "169.254.169.254",
        "fd00:ec2::254",
        "0.0.0.0",
        "224.0.0.1",
        "ff0e::1",
    ],
)
def test_every_address_that_is_not_global_is_refused(address: str) -> None:
    assert refusal(ipaddress.ip_address(address)) is not None


@pytest.mark.parametrize(
    "address", ["93.184.215.14", "2606:4700::1111", "::ffff:93.184.215.14", "64:ff9b::808:808"]
)
def test_global_addresses_pass(address: str) -> None:
    assert refusal(ipaddress.ip_address(address)) is None


class Resolver:
    """DNS that answers ``answers[n]`` to the n-th question (the last one after that)."""

    def __init__(self, *answers: list[str]) -> None:
        self.answers = answers
        self.questions: list[tuple[str, int]] = []

    async def __call__(self, host: str, port: int) -> list[IPAddress]:
        self.questions.append((host, port))
        answer = self.answers[min(len(self.questions), len(self.answers)) - 1]
        return [ipaddress.ip_address(a) for a in answer]


class Receiver:
    """The network, as the sender's client sees it: every request it would send."""

    def __init__(self, status: int = 200) -> None:
        self.requests: list[httpx.Request] = []
        self.status = status

    def __call__(self, request: httpx.Request) -> httpx.Response:
        request.read()
        self.requests.append(request)
        return httpx.Response(self.status)


def send(url: str, resolver: Resolver, receiver: Receiver, *, allow_private: bool = False):
    async def run():
        sender = WebhookSender(
            SECRET,
            timeout_s=2,
            allow_private=allow_private,
            resolver=resolver,
            transport=httpx.MockTransport(receiver),
        )
        try:
            return await sender.send(url, {"job_id": "j1"}, "j1", key_id="key-a")
        finally:
            await sender.close()

    return asyncio.run(run())


def test_the_connection_goes_to_the_checked_address_not_a_second_answer() -> None:
    # DNS rebinding: public for the check, loopback for whoever asks again.
    resolver = Resolver(["93.184.215.14"], ["127.0.0.1"])
    receiver = Receiver()
    delivery = send("https://rebind.example:8443/hook?x=1", resolver, receiver)
    assert delivery.delivered, delivery.error
    assert resolver.questions == [("rebind.example", 8443)]
    (request,) = receiver.requests
    assert str(request.url) == "https://93.184.215.14:8443/hook?x=1"
    # The receiver sees its own name, and TLS is verified for it.
    assert request.headers["host"] == "rebind.example:8443"
    assert request.extensions["sni_hostname"] == "rebind.example"


def test_a_plain_http_url_keeps_its_host_header_and_has_no_sni() -> None:
    receiver = Receiver()
    assert send("http://hooks.example/h", Resolver(["2606:4700::1111"]), receiver).delivered
    (request,) = receiver.requests
    assert request.url.host == "2606:4700::1111"
    assert request.headers["host"] == "hooks.example"
    assert "sni_hostname" not in request.extensions


@pytest.mark.parametrize("private", ["100.100.100.200", "fec0::1", "2002:7f00:1::1", "127.0.0.1"])
def test_one_non_global_answer_refuses_the_delivery(private: str) -> None:
    receiver = Receiver()
    delivery = send("https://hooks.example/h", Resolver(["93.184.215.14", private]), receiver)
    assert not delivery.delivered
    assert not delivery.final  # DNS may change: retried
    assert "non-public address" in (delivery.error or "")
    assert receiver.requests == []


def test_allowing_private_addresses_still_connects_to_the_resolved_one() -> None:
    resolver = Resolver(["127.0.0.1"], ["10.9.9.9"])
    receiver = Receiver()
    assert send("http://hooks.local/h", resolver, receiver, allow_private=True).delivered
    assert [r.url.host for r in receiver.requests] == ["127.0.0.1"]


@pytest.mark.parametrize(
    "url", ["http://example.com:99999/", "http://" + "a" * 64 + ".example.com/", "http://[::1/"]
)
def test_an_invalid_url_at_delivery_is_given_up_with_its_reason(url: str) -> None:
    receiver = Receiver()
    delivery = send(url, Resolver(["93.184.215.14"]), receiver)
    assert not delivery.delivered
    assert delivery.final
    assert (delivery.error or "").startswith("given up: webhook_url")
    assert receiver.requests == []


def test_a_resolver_failure_is_a_failed_delivery_not_an_exception() -> None:
    class Failing(Resolver):
        async def __call__(self, host: str, port: int) -> list[IPAddress]:
            raise UnicodeError("label too long")

    delivery = send("https://hooks.example/h", Failing(), Receiver())
    assert not delivery.delivered
    assert "does not resolve" in (delivery.error or "")


def test_each_key_signs_with_its_own_secret() -> None:
    receiver = Receiver()
    assert send("https://hooks.example/h", Resolver(["93.184.215.14"]), receiver).delivered
    (request,) = receiver.requests
    header, body = request.headers["veracity-signature"], request.content
    assert verify_signature(key_secret(SECRET, "key-a"), header, body)
    # Not the deployment's secret, which every receiver would otherwise share, nor another
    # key's.
    assert not verify_signature(SECRET, header, body)
    assert not verify_signature(key_secret(SECRET, "key-b"), header, body)
    assert key_secret(SECRET, "key-a") != key_secret("another-deployment", "key-a")
    assert key_secret(SECRET, "key-a").startswith("whsec_")


def test_a_receiver_that_trickles_its_answer_is_cut_off_at_the_timeout() -> None:
    """httpx's timeout is per read: a byte every 0.2 s would never trip it, and the replica's
    one delivery loop would wait for every other key's webhooks behind this one."""
    stop = threading.Event()
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def trickle() -> None:
        connection, _ = listener.accept()
        with connection:
            connection.recv(65536)
            connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
            for _ in range(100):  # bounded: 20 s at most
                if stop.wait(0.2):
                    return
                try:
                    connection.sendall(b"x")
                except OSError:
                    return

    thread = threading.Thread(target=trickle)
    thread.start()

    async def run():
        sender = WebhookSender(
            SECRET, timeout_s=1, allow_private=True, resolver=Resolver(["127.0.0.1"])
        )
        try:
            return await sender.send(f"http://hooks.test:{port}/", {}, "j1", key_id="key-a")
        finally:
            await sender.close()

    started = time.monotonic()
    try:
        delivery = asyncio.run(run())
    finally:
        stop.set()
        thread.join(5)
        listener.close()
    assert time.monotonic() - started < 3
    assert not delivery.delivered
    assert "did not answer within 1 s" in (delivery.error or "")
