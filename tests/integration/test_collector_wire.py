"""HTTP/1.1 on the wire at the ingest paths, which the collector's protocol answers without ASGI
(collector/protocol.py): pipelining, ``Expect: 100-continue``, HTTP/1.0, chunked and split bodies,
early 413s on a connection that stays usable, and the same answers as the ASGI path gives."""

from __future__ import annotations

import json
import socket
import uuid

import pytest

from tests.helpers import Admin, basic_auth, count_rows, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def project(stack):
    return Admin(stack.settings).create_project(prefix="wire")


@pytest.fixture(scope="module")
def auth(project) -> bytes:
    name, value = next(iter(basic_auth(project["keys"]["public_key"]).items()))
    return f"{name}: {value}\r\n".encode()


@pytest.fixture()
def connection(settings):
    sock = socket.create_connection((settings.collector_host, settings.collector_port), timeout=15)
    yield sock, sock.makefile("rb")
    sock.close()


def event_body(**extra) -> tuple[str, bytes]:
    message_id = str(uuid.uuid4())
    body = {"type": "track", "event": "Wire", "anonymousId": "w1", "messageId": message_id, **extra}
    return message_id, json.dumps(body).encode()


def request(auth: bytes, body: bytes, path: str = "/v1/track", version: str = "1.1", extra: bytes = b"") -> bytes:
    return (f"POST {path} HTTP/{version}\r\nHost: collector\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n").encode() + auth + extra + b"\r\n" + body


def read_answer(reader) -> tuple[int, dict[str, str], bytes]:
    status = int(reader.readline().split()[1])
    headers: dict[str, str] = {}
    while (line := reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    body = reader.read(int(headers.get("content-length", 0))) if status >= 200 else b""
    return status, headers, body


def stored(clickhouse, project, message_ids: list[str]) -> bool:
    where = "message_id IN %(ids)s"
    return count_rows(clickhouse, project["project"]["database"], where, {"ids": message_ids}) == len(message_ids)


def test_pipelined_requests_are_answered_in_order_and_stored(connection, auth, project, clickhouse):
    sock, reader = connection
    first, body_one = event_body()
    second, body_two = event_body()
    _, bad = event_body(timestamp="1900-01-01T00:00:00Z")
    sock.sendall(request(auth, body_one) + request(auth, bad) + request(auth, body_two))
    assert [read_answer(reader)[0] for _ in range(3)] == [200, 400, 200]
    wait_for(lambda: stored(clickhouse, project, [first, second]))


def test_expect_continue_gets_100_before_the_body(connection, auth, project, clickhouse):
    sock, reader = connection
    message_id, body = event_body()
    head, _, payload = request(auth, body, extra=b"Expect: 100-continue\r\n").partition(b"\r\n\r\n")
    sock.sendall(head + b"\r\n\r\n")
    assert read_answer(reader)[0] == 100
    sock.sendall(payload)
    assert read_answer(reader)[0] == 200
    wait_for(lambda: stored(clickhouse, project, [message_id]))


def test_http_1_0_is_answered_then_closed(connection, auth):
    sock, reader = connection
    _, body = event_body()
    sock.sendall(request(auth, body, version="1.0"))
    status, headers, _ = read_answer(reader)
    assert (status, headers.get("connection")) == (200, "close")
    assert reader.read() == b""


def test_chunked_and_split_bodies_are_whole(connection, auth, project, clickhouse):
    sock, reader = connection
    chunked_id, chunked = event_body()
    head = request(auth, b"").replace(b"Content-Length: 0\r\n", b"Transfer-Encoding: chunked\r\n")
    half = len(chunked) // 2
    sock.sendall(head + b"%x\r\n%s\r\n%x\r\n%s\r\n0\r\n\r\n" % (half, chunked[:half], len(chunked) - half,
                                                                 chunked[half:]))
    assert read_answer(reader)[0] == 200
    split_id, split = event_body()
    whole = request(auth, split)
    for start in range(0, len(whole), 97):
        sock.sendall(whole[start:start + 97])
    assert read_answer(reader)[0] == 200
    wait_for(lambda: stored(clickhouse, project, [chunked_id, split_id]))


def test_an_oversized_body_is_refused_early_and_the_connection_stays_usable(connection, auth, settings):
    sock, reader = connection
    huge = b"x" * (settings.max_request_bytes + 1)
    sock.sendall(request(auth, huge).split(b"\r\n\r\n")[0] + b"\r\n\r\n")
    status, _, answer = read_answer(reader)  # before a byte of the body was sent
    assert status == 413 and json.loads(answer)["reason"] == "too_large"
    sock.sendall(huge)
    _, body = event_body()
    sock.sendall(request(auth, body))
    assert read_answer(reader)[0] == 200


def test_a_body_over_the_limit_without_a_declared_length_is_a_413(connection, auth, settings):
    sock, reader = connection
    head = request(auth, b"").replace(b"Content-Length: 0\r\n", b"Transfer-Encoding: chunked\r\n")
    piece = b"y" * 65536
    sock.sendall(head)
    for _ in range(settings.max_request_bytes // len(piece) + 2):
        sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
    sock.sendall(b"0\r\n\r\n")
    assert read_answer(reader)[0] == 413
    _, body = event_body()
    sock.sendall(request(auth, body))
    assert read_answer(reader)[0] == 200


def test_the_asgi_path_answers_the_same(connection, auth):
    """A percent-encoded path is left to ASGI: same status, body and headers as the direct path."""
    sock, reader = connection
    _, bad = event_body(timestamp="1900-01-01T00:00:00Z")
    sock.sendall(request(auth, bad))
    direct = read_answer(reader)
    sock.sendall(request(auth, bad, path="/v1/%74rack"))
    through_asgi = read_answer(reader)
    assert direct[0] == through_asgi[0] == 400
    assert direct[2] == through_asgi[2]
    ignored = {"date"}
    assert {k: v for k, v in direct[1].items() if k not in ignored} == \
        {k: v for k, v in through_asgi[1].items() if k not in ignored}


def test_other_methods_and_paths_still_go_through_the_application(connection, auth):
    sock, reader = connection
    sock.sendall(b"GET /v1/track HTTP/1.1\r\nHost: collector\r\n\r\n")
    assert read_answer(reader)[0] == 405
    _, body = event_body()
    sock.sendall(request(auth, body, path="/v1/nowhere"))
    assert read_answer(reader)[0] == 404
