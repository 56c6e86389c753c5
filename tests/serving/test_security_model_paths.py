"""LoadModel stays inside the model repository (review finding 2).

In explicit mode ``LoadModel`` loaded and served ``../outside/evil`` and an absolute path, its
NOT_FOUND messages told whether any path existed, and a manifest's file paths were not
contained. Now names and versions must match the documented pattern (INVALID_ARGUMENT before
the disk is looked at, the same answer whether the path exists or not), the version directory,
its manifest and every file the manifest names must resolve inside the repository (symlinks
followed), and no answer names a filesystem path. The server keeps serving what it served.
"""

from __future__ import annotations

import json
import os
import shutil

import grpc
import numpy as np
import pytest
from fixtures.server import ServerThread, make_config
from fixtures.toy_model import build_toy_model

from latentdial.client import (
    Client,
    FailedPreconditionError,
    InvalidArgumentError,
    LatentDialError,
    NotFoundError,
)
from latentdial.manifest import MANIFEST_NAME, sha256_file
from latentdial.serving.repository import valid_name

pytestmark = pytest.mark.integration

X = np.zeros((1, 8, 8, 1), np.uint8)


@pytest.fixture
def layout(tmp_path):
    """``tmp/repo`` (toy/1 served) beside ``tmp/outside/evil`` (a valid model that must never load)."""
    repo, outside = tmp_path / "repo", tmp_path / "outside"
    build_toy_model(repo, "toy", "1")
    build_toy_model(tmp_path, "outside", "evil", seed=7)  # tmp/outside/evil/manifest.json
    return tmp_path, repo, outside


def refusal(c: Client, name: str, version: str) -> LatentDialError:
    with pytest.raises(LatentDialError) as info:
        c.load_model(name, version=version)
    return info.value


def assert_no_path(text: str, tmp) -> None:
    for p in {str(tmp), os.path.realpath(tmp)}:
        assert p not in text, f"the answer names a filesystem path: {text}"


def served(c: Client) -> list[str]:
    return [f"{m.name}/{v}" for m in c.list_models() for v in m.versions]


@pytest.mark.parametrize("name, version", [
    ("../outside", "evil"),        # the review's traversal
    ("toy", "../../outside/evil"),
    ("..", "outside"),
    ("toy", ".."),
    ("toy/../..", "1"),
    (".hidden", "1"),
    ("toy", "1/../1"),
])
def test_names_that_leave_the_repository_are_invalid_before_the_disk_is_touched(layout, name, version):
    tmp, repo, _ = layout
    with ServerThread(make_config(repo, model_control="explicit")) as server, Client(server.address) as c:
        e = refusal(c, name, version)
        assert isinstance(e, InvalidArgumentError), e
        assert "letter or digit" in str(e)
        assert_no_path(str(e), tmp)
        assert served(c) == ["toy/1"]
        assert c.encode(X).mean.shape == (1, 4)  # nothing lost


def test_an_absolute_path_is_refused_and_existence_is_not_revealed(layout):
    tmp, repo, outside = layout
    with ServerThread(make_config(repo, model_control="explicit")) as server, Client(server.address) as c:
        real = refusal(c, str(outside), "evil")  # exists
        fake = refusal(c, str(tmp / "no-such-dir"), "evil")  # does not
        assert type(real) is type(fake) is InvalidArgumentError
        assert str(real).replace(str(outside), "X") == str(fake).replace(str(tmp / "no-such-dir"), "X")
        missing = refusal(c, "nope", "1")  # a valid name that is not in the repository
        assert isinstance(missing, NotFoundError) and "not in the repository" in str(missing)
        assert_no_path(str(missing), tmp)
        assert served(c) == ["toy/1"]


def test_a_symlink_out_of_the_repository_is_refused(layout):
    tmp, repo, outside = layout
    (repo / "linked").symlink_to(outside, target_is_directory=True)  # repo/linked/evil -> outside/evil
    (repo / "toy" / "7").symlink_to(outside / "evil", target_is_directory=True)
    with ServerThread(make_config(repo, model_control="explicit")) as server, Client(server.address) as c:
        for name, version in (("linked", "evil"), ("toy", "7")):
            e = refusal(c, name, version)
            assert isinstance(e, FailedPreconditionError) and "outside the repository" in str(e), e
            assert_no_path(str(e), tmp)
        assert served(c) == ["toy/1"]
        assert c.encode(X).model == ("toy", "1")


def test_start_up_refuses_a_symlinked_version_that_leaves_the_repository(layout):
    tmp, repo, outside = layout
    (repo / "toy" / "7").symlink_to(outside / "evil", target_is_directory=True)
    with ServerThread(make_config(repo)) as server, Client(server.address) as c:
        assert served(c) == ["toy/1"]
        [toy] = c.list_models()
        failed = {s.version: s.reason for s in toy.version_status if s.state == "failed"}
        assert "outside the repository" in failed["7"]
        assert_no_path(failed["7"], tmp)


def _copy_with_manifest_file(repo, version: str, path: str, target) -> None:
    """toy/<version>: a copy of toy/1 whose manifest names ``path`` (sha256 of ``target``) for the encoder."""
    dst = repo / "toy" / version
    shutil.copytree(repo / "toy" / "1", dst)
    doc = json.loads((dst / MANIFEST_NAME).read_text())
    for f in doc["files"]:
        if f["graph"] == "encoder":
            f["path"], f["sha256"] = path, sha256_file(target)
    (dst / MANIFEST_NAME).write_text(json.dumps(doc))


def test_a_manifest_naming_files_outside_the_repository_is_refused(layout):
    """The checksums match: only containment stands between the manifest and the outside file."""
    tmp, repo, outside = layout
    evil = outside / "evil" / "encoder.onnx"
    _copy_with_manifest_file(repo, "2", "../../../outside/evil/encoder.onnx", evil)
    _copy_with_manifest_file(repo, "3", str(evil), evil)  # absolute
    os.symlink(evil, repo / "toy" / "1" / "evil.onnx")  # a file inside that points outside
    _copy_with_manifest_file(repo, "4", "../1/evil.onnx", evil)
    with ServerThread(make_config(repo, model_control="explicit")) as server, Client(server.address) as c:
        for version in ("2", "3", "4"):
            e = refusal(c, "toy", version)
            assert isinstance(e, FailedPreconditionError), e
            assert "file 0 of its manifest (encoder, fp32) resolves outside the repository" in str(e), e
            assert_no_path(str(e), tmp)
        assert served(c) == ["toy/1"]
        statuses = {s.version: s for s in c.list_models()[0].version_status}
        assert all(statuses[v].state == "failed" for v in ("2", "3", "4"))
        for v in ("2", "3", "4"):
            assert_no_path(statuses[v].reason, tmp)
        assert c.encode(X).model == ("toy", "1")


def test_refusal_reasons_name_files_relative_to_the_repository(layout):
    tmp, repo, _ = layout
    build_toy_model(repo, "toy", "5", seed=5)
    (repo / "toy" / "5" / "decoder.onnx").unlink()
    with ServerThread(make_config(repo, model_control="explicit")) as server, Client(server.address) as c:
        e = refusal(c, "toy", "5")
        assert isinstance(e, FailedPreconditionError)
        assert "toy/5/decoder.onnx is listed in the manifest but missing" in str(e), e
        assert_no_path(str(e), tmp)
        # a version inside the repository that is fine still loads, by name
        build_toy_model(repo, "toy", "6", seed=6)
        assert c.load_model("toy", version="6") == "6"


def test_unload_checks_names_the_same_way(layout):
    _, repo, _ = layout
    with ServerThread(make_config(repo, model_control="explicit")) as server, Client(server.address) as c:
        with pytest.raises(InvalidArgumentError, match="letter or digit"):
            c.unload_model("../toy", version="1")
        assert served(c) == ["toy/1"]


def test_the_name_pattern():
    for ok in ("toy", "dsprites_tcvae", "color-dsprites.v2", "1", "10", "a" * 64):
        assert valid_name(ok), ok
    for bad in ("", ".", "..", "a..b", "-x", "_x", "a/b", "a\\b", "/abs", "a" * 65, "é", "a b", "a\x00"):
        assert not valid_name(bad), bad


def test_a_grpc_caller_gets_invalid_argument_not_a_filesystem_answer(layout):
    """The raw RPC, without the SDK: the status code is INVALID_ARGUMENT for a path-like name."""
    from latentdial.v1 import latentdial_pb2 as pb
    from latentdial.v1 import latentdial_pb2_grpc as pb_grpc

    tmp, repo, _ = layout
    with ServerThread(make_config(repo, model_control="explicit")) as server, \
            grpc.insecure_channel(server.address) as ch:
        stub = pb_grpc.LatentDialStub(ch)
        with pytest.raises(grpc.RpcError) as info:
            stub.LoadModel(pb.LoadModelRequest(model=pb.ModelRef(name="../outside", version="evil")), timeout=10)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert_no_path(info.value.details(), tmp)
