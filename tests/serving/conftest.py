"""One ``latentdial serve`` child process for the attack and fuzz tests of this directory.

A child, not a server in the test process, so that its resident memory (from /proc) is the
server's alone, and so that a crash shows up as a dead process. Default limits, a toy model
(``toy``/1: 8x8 grey images, 4 latents, the default model) and an editor (``ed``/1: 64x64 grey
images, 6 codes; fixtures/editor_model.py), so that both kinds' paths are attacked; gRPC and HTTP
on free loopback ports.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from fixtures.editor_model import build_editor
from fixtures.toy_model import build_toy_model

from latentdial.serving.embedded import ServerProcess
from latentdial.serving.supervisor import free_port


@dataclass(frozen=True)
class Served:
    pid: int
    address: str  # gRPC host:port
    http_url: str
    process: ServerProcess

    def assert_alive(self) -> None:
        assert self.process.proc is not None and self.process.proc.poll() is None, "the server process died"


@pytest.fixture(scope="session")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzzed")
    build_toy_model(root, "toy", "1")
    build_editor(root, "ed", "1")
    (root / "default").write_text("toy\n")  # an empty ModelRef still reaches the toy
    http_port = free_port()
    log = tmp_path_factory.mktemp("fuzzed-log") / "server.log"
    with ServerProcess(repository=root, args=["--http-port", str(http_port)], log_path=log) as server:
        served = Served(server.pid, server.address, f"http://127.0.0.1:{http_port}", server)
        yield served
        served.assert_alive()
        # a handler that crashed shows in the log even when its client got an answer (or had gone)
        # (a client hanging up mid-body, as the attacks do, is one debug line, not a traceback)
        crashes = [e for e, _ in exceptions_logged(log.read_text())]
        assert not crashes, crashes


def exceptions_logged(text: str) -> list[tuple[str, str]]:
    """(exception type, traceback text) of each traceback in a log."""
    found = []
    for block in text.split("Traceback (most recent call last):")[1:]:
        last = next((line for line in block.splitlines()[1:] if line and not line[0].isspace()), "?")
        found.append((last.split(":")[0], block))
    return found
