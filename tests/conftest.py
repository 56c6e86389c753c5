"""Shared test fixtures: a toy model repository and a running server (builders in tests/fixtures/)."""

from __future__ import annotations

import os

import pytest


def pytest_configure(config: pytest.Config) -> None:
    """Servers started by the tests (in this process or as children) serve each model's main ONNX
    file with the tuned options instead of timing every candidate at load: which graph is fastest
    here changes no answer. tests/core/test_graph_choice.py unsets this and specifies the timing."""
    os.environ.setdefault("LATENTDIAL_GRAPH_CHOICE", "off")


@pytest.fixture(scope="session")
def toy_repo(tmp_path_factory) -> tuple:
    """(repository path, ToyModel) with one model ``toy`` version 1 (factor card included)."""
    from fixtures.toy_model import build_toy_model

    root = tmp_path_factory.mktemp("models")
    return root, build_toy_model(root)


@pytest.fixture(scope="module")
def toy_server(tmp_path_factory):
    """A server on port 0 over a fresh toy repository, shared by a test module: (ServerThread, ToyModel)."""
    from fixtures.server import ServerThread, make_config
    from fixtures.toy_model import build_toy_model

    root = tmp_path_factory.mktemp("served")
    model = build_toy_model(root)
    with ServerThread(make_config(root)) as server:
        yield server, model


@pytest.fixture(scope="module")
def one_torch_thread():
    """torch on one thread for a whole test module (CI shares two cores); the old count is restored after.

    Use with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``; it is set up before the
    module's own fixtures, so models built there run on one thread too.
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
