"""Webhooks through the app: a URL that cannot be delivered to is refused when the job is
created, each key learns its own signing secret, and a delivery connects to the address
that was checked even when DNS answers differently the second time."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from tests.api.conftest import API_KEY, OTHER_KEY, assert_error, make_settings, serving
from tests.api.test_jobs import (
    SECRET,
    Receiver,
    post_video_job,
    wait_webhook,
    webhook_settings,
)
from tests.videofiles import write_video
from veracity.jobs.webhooks import verify_signature


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://example.com:99999/", "65535"),
        ("http://" + "a" * 64 + ".example.com/", "longer than 63 characters"),
        ("http://[::1/", "not a valid URL"),
        ("http://exa%20mple.com/", "percent sign"),
    ],
)
def test_a_url_that_cannot_be_delivered_to_is_refused_at_creation(
    tiny_checkpoint: Path, url: str, reason: str
) -> None:
    with serving(webhook_settings(tiny_checkpoint)) as client:
        response = post_video_job(client, write_video(), webhook_url=url)
        error = assert_error(response, 400, "bad_request")
    assert "webhook_url" in error["message"]
    assert reason in error["message"]


def test_each_key_gets_its_own_webhook_secret(tiny_checkpoint: Path, receiver: Receiver) -> None:
    with serving(webhook_settings(tiny_checkpoint)) as client:
        assert_error(client.get("/webhooks/secret"), 401, "unauthorized")
        mine = client.get("/webhooks/secret", headers={"X-API-Key": API_KEY})
        theirs = client.get("/webhooks/secret", headers={"X-API-Key": OTHER_KEY}).json()
        assert mine.status_code == 200
        assert mine.headers["cache-control"] == "no-store"
        created = post_video_job(
            client, write_video(seconds=1.0), frames=2, webhook_url=receiver.url
        ).json()
        assert wait_webhook(client, created["url"])["webhook"]["status"] == "delivered"
    secret = mine.json()["secret"]
    assert secret.startswith("whsec_")
    assert secret != theirs["secret"]
    assert SECRET not in (secret, theirs["secret"])
    ((headers, body),) = receiver.calls
    assert verify_signature(secret, headers["Veracity-Signature"], body)
    # Another key's receiver cannot make events this one accepts.
    assert not verify_signature(theirs["secret"], headers["Veracity-Signature"], body)


def test_no_secret_without_webhooks(tiny_checkpoint: Path) -> None:
    with serving(make_settings(tiny_checkpoint)) as client:
        response = client.get("/webhooks/secret", headers={"X-API-Key": API_KEY})
        assert_error(response, 404, "not_found")


def test_a_rebound_name_is_not_followed_to_loopback(
    tiny_checkpoint: Path, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    public = "93.184.215.14"
    port = int(receiver.url.rsplit(":", 1)[1].split("/", 1)[0])
    real_getaddrinfo = socket.getaddrinfo
    questions: list[str] = []

    def rebinding_dns(host, *args, **kwargs):
        if host not in ("rebind.test", b"rebind.test"):
            return real_getaddrinfo(host, *args, **kwargs)
        questions.append(host)
        # Public for the check, loopback for whoever asks again.
        return real_getaddrinfo(public if len(questions) == 1 else "127.0.0.1", *args, **kwargs)

    real_connect = anyio.connect_tcp
    connects: list[str] = []

    async def network(remote_host, remote_port, **kwargs):
        connects.append(str(remote_host))
        # Stands in for the public host: the receiver on loopback answers for it.
        target = "127.0.0.1" if str(remote_host) == public else remote_host
        return await real_connect(target, remote_port, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding_dns)
    monkeypatch.setattr(anyio, "connect_tcp", network)
    with serving(webhook_settings(tiny_checkpoint, webhook_allow_private=False)) as client:
        url = f"http://rebind.test:{port}/hook"
        created = post_video_job(client, write_video(seconds=1.0), frames=2, webhook_url=url)
        job = wait_webhook(client, created.json()["url"])
    assert job["webhook"]["status"] == "delivered", job["webhook"]
    # One question, and the connection went to its (checked) answer, under the URL's name.
    assert len(questions) == 1
    assert connects == [public]
    ((headers, _),) = receiver.calls
    assert headers["Host"] == f"rebind.test:{port}"
