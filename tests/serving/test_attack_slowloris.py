"""Slowloris on both doors: many connections that send their request a byte at a time.

A server that gives each connection a thread, or that parses on the event loop while waiting,
stalls for everyone else; one that counts a half-sent request as a request in flight lets a few
hundred such connections take every slot of ``max_in_flight`` (256) and refuse everyone else
until the deadline (60 s). The bar: while the attack runs, a well-behaved client's small calls
on both doors all succeed and their p99 stays within :data:`P99_RATIO` times its p99 without the
attack, or :data:`P99_FLOOR_MS` (a loaded 2-core machine jitters by tens of ms; a stalled loop
shows as seconds); the server's resident set rises by less than :data:`MAX_RSS_GROWTH_MIB`.
"""

from __future__ import annotations

import socket
import threading
import time
from contextlib import contextmanager

import pytest
from fixtures.attack import BenignClient, RssWatch, assert_kept_serving

pytestmark = pytest.mark.integration

P99_RATIO = 10.0
P99_FLOOR_MS = 250.0
#: Each half-open connection costs the server a socket and a parser's buffer (a few KiB).
MAX_RSS_GROWTH_MIB = 64.0
#: Connections per attack: more than max_in_flight (256), fewer than the file descriptors a default
#: ulimit allows.
CONNECTIONS = 320
CALLS = 60  # benign calls per door, at least, with and without the attack
ATTACKED_S = 3.0  # the benign client's calls go on for at least this long under attack


def _host_port(url_or_address: str) -> tuple[str, int]:
    host, port = url_or_address.rsplit("/", 1)[-1].rsplit(":", 1)
    return host, int(port)


@contextmanager
def dripping(target: tuple[str, int], opening: bytes, drip: bytes, n: int, every_s: float = 0.5):
    """``n`` connections to ``target`` that each send ``opening`` and then one byte of ``drip`` per
    ``every_s`` for as long as the block runs; yields the open sockets."""
    socks = [socket.create_connection(target, timeout=5) for _ in range(n)]
    for s in socks:
        s.sendall(opening)
    stop = threading.Event()

    def trickle():
        i = 0
        while not stop.wait(every_s):
            byte = drip[i % len(drip): i % len(drip) + 1]
            for s in socks:
                try:
                    s.send(byte)
                except OSError:
                    pass  # the server closed it: fine, that is one defence
            i += 1

    thread = threading.Thread(target=trickle, daemon=True)
    thread.start()
    try:
        yield socks
    finally:
        stop.set()
        thread.join()
        for s in socks:
            s.close()


def _attack(served, benign, opening_http: bytes, drip_http: bytes):
    """Quiet p99, then p99 and RSS while CONNECTIONS drip into the HTTP port and as many into gRPC's."""
    quiet = benign.measure(CALLS)
    grpc_preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"  # then an HTTP/2 frame header that never completes
    with RssWatch(served.pid) as rss, \
            dripping(_host_port(served.http_url), opening_http, drip_http, CONNECTIONS), \
            dripping(_host_port(served.address), grpc_preface, b"\x00\x00\x40\x04\x00\x00\x00\x00\x00",
                     CONNECTIONS // 4):
        time.sleep(1.0)  # every connection has started dripping
        attacked = benign.measure(CALLS, min_s=ATTACKED_S)
    return quiet, attacked, rss


def test_headers_sent_a_byte_at_a_time_do_not_stall_other_clients(served):
    with BenignClient(served.address, served.http_url) as benign:
        quiet, attacked, rss = _attack(served, benign, b"POST /v1/models/toy/decode HTTP/1.1\r\nHost: x\r\n",
                                       b"X-Slow: " + b"a" * 64)
    print(f"\nslow headers on {CONNECTIONS} HTTP and {CONNECTIONS // 4} gRPC connections: "
          f"quiet {quiet}, attacked {attacked}; {rss}")
    served.assert_alive()
    assert_kept_serving(quiet, attacked, ratio=P99_RATIO, floor_ms=P99_FLOOR_MS)
    assert rss.growth < MAX_RSS_GROWTH_MIB, str(rss)


def test_bodies_sent_a_byte_at_a_time_do_not_lock_other_clients_out(served):
    opening = (b"POST /v1/models/toy/decode HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               b"Content-Length: 100000\r\n\r\n")
    with BenignClient(served.address, served.http_url) as benign:  # a body arriving holds no slot
        quiet, attacked, rss = _attack(served, benign, opening, b" ")
    print(f"\nslow bodies on {CONNECTIONS} HTTP connections: quiet {quiet}, attacked {attacked}; {rss}")
    served.assert_alive()
    assert rss.growth < MAX_RSS_GROWTH_MIB, str(rss)
    assert_kept_serving(quiet, attacked, ratio=P99_RATIO, floor_ms=P99_FLOOR_MS)
