"""The manifest contract: typed file formats, selection by (graph, precision, format), and old schemas."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from latentdial.manifest import (
    SCHEMA_VERSION,
    GraphFile,
    Manifest,
    ManifestError,
    iter_model_dirs,
    sha256_file,
)

SHIPPED = Path(__file__).resolve().parents[2] / "models"


def _manifest(files: list[GraphFile]) -> Manifest:
    return Manifest(name="m", version="1", image_shape=(1, 8, 8), latent_dim=2, files=files)


def _v1_dict() -> dict:
    """A schema 1 manifest as export wrote it before files had a typed format."""
    return {
        "name": "m", "version": "1", "image_shape": [1, 8, 8], "latent_dim": 2,
        "files": [
            # the torch program first: schema 1 readers that matched on precision alone got it wrong
            {"graph": "encoder", "path": "encoder.pt2", "sha256": "a", "precision": "fp32",
             "max_abs_error": 0.0, "notes": {"format": "torch.export", "torch": "2.13.0+cpu"}},
            {"graph": "encoder", "path": "encoder.onnx", "sha256": "b", "precision": "fp32",
             "max_abs_error": 1e-6, "notes": {"format": "onnx", "opset": 17}},
            {"graph": "decoder", "path": "decoder.onnx", "sha256": "c", "precision": "fp32",
             "notes": {}},  # no format note at all: schema 1 meant ONNX
        ],
        "schema_version": 1,
    }


SHIPPED_DIRS = {f"{name}/{version}": path for name, version, path in iter_model_dirs(SHIPPED)}


@pytest.mark.parametrize("name_version", sorted(SHIPPED_DIRS))
def test_every_shipped_model_directory_loads_and_its_files_match_their_sha256(name_version):
    model_dir = SHIPPED_DIRS[name_version]
    manifest = Manifest.load(model_dir)
    manifest.verify_files(model_dir)
    assert manifest.schema_version == SCHEMA_VERSION
    for graph in ("encoder", "decoder"):
        assert manifest.graph_file(graph).path == f"{graph}.onnx"
        assert manifest.graph_file(graph, "fp16").path == f"{graph}.fp16.onnx"
        assert manifest.graph_file(graph, "fp32", "torch-export").path == f"{graph}.pt2"
    assert all("format" not in f.notes for f in manifest.files)


def test_the_shipped_repository_holds_every_shipped_model_in_the_current_schema():
    """Every shipped model was re-exported in schema 2; the schema 1 reader is covered by the fixture below."""
    assert {"dsprites/5", "color_dsprites/3", "dsprites_adagvae/1", "dsprites_tcvae/2"} <= set(SHIPPED_DIRS)
    on_disk = {json.loads((path / "manifest.json").read_text()).get("schema_version")
               for path in SHIPPED_DIRS.values()}
    assert on_disk == {SCHEMA_VERSION}


def test_a_schema_1_manifest_is_upgraded_moving_the_format_out_of_the_notes():
    m = Manifest.from_dict(_v1_dict())
    assert m.schema_version == SCHEMA_VERSION == 2
    assert [(f.path, f.format) for f in m.files] == [
        ("encoder.pt2", "torch-export"), ("encoder.onnx", "onnx"), ("decoder.onnx", "onnx")]
    assert m.files[0].notes == {"torch": "2.13.0+cpu"}
    assert m.files[1].notes == {"opset": 17}


def test_a_schema_1_manifest_is_not_modified_in_place_by_reading_it():
    d = _v1_dict()
    before = copy.deepcopy(d)
    Manifest.from_dict(d)
    assert d == before


def test_selection_is_by_graph_precision_and_format_whatever_the_list_order():
    m = Manifest.from_dict(_v1_dict())
    assert m.graph_file("encoder").path == "encoder.onnx"
    assert m.graph_file("encoder", "fp32", "torch-export").path == "encoder.pt2"
    m.files.reverse()
    assert m.graph_file("encoder").path == "encoder.onnx"
    assert m.graph_file("encoder", "fp32", "torch-export").path == "encoder.pt2"


def test_a_missing_file_is_none_from_find_file_and_a_clear_error_from_graph_file():
    m = Manifest.from_dict(_v1_dict())
    assert m.find_file("decoder", "fp32", "torch-export") is None
    with pytest.raises(ManifestError, match=r"no decoder at fp32 \(torch-export\); has \['decoder/fp32', 'encoder/fp32', 'encoder/fp32 \(torch-export\)'\]"):
        m.graph_file("decoder", "fp32", "torch-export")


def _written(tmp_path: Path) -> Manifest:
    """A manifest over two real files in ``tmp_path``: an ONNX graph and a torch program."""
    for name, data in (("encoder.onnx", b"onnx bytes"), ("encoder.pt2", b"torch program bytes")):
        (tmp_path / name).write_bytes(data)
    return _manifest([GraphFile("encoder", "encoder.onnx", sha256_file(tmp_path / "encoder.onnx")),
                      GraphFile("encoder", "encoder.pt2", sha256_file(tmp_path / "encoder.pt2"),
                                format="torch-export")])


def test_a_file_of_a_format_that_may_be_absent_is_skipped_when_missing_and_checked_when_present(tmp_path):
    """A torch-less server reads a model directory without its .pt2 files (the serving images leave them
    out); a present one is still held to its sha256, and other formats must all be there."""
    m = _written(tmp_path)
    m.verify_files(tmp_path, may_be_absent=("torch-export",))  # everything present: passes
    (tmp_path / "encoder.pt2").write_bytes(b"changed")
    with pytest.raises(ManifestError, match="encoder.pt2: sha256 .* does not match"):
        m.verify_files(tmp_path, may_be_absent=("torch-export",))
    (tmp_path / "encoder.pt2").unlink()
    m.verify_files(tmp_path, may_be_absent=("torch-export",))
    with pytest.raises(ManifestError, match="encoder.pt2 is listed in the manifest but missing"):
        m.verify_files(tmp_path)  # by default every listed file must be there
    (tmp_path / "encoder.onnx").unlink()
    with pytest.raises(ManifestError, match="encoder.onnx is listed in the manifest but missing"):
        m.verify_files(tmp_path, may_be_absent=("torch-export",))


def test_a_saved_manifest_round_trips_with_its_formats(tmp_path):
    m = _manifest([GraphFile("encoder", "encoder.onnx", "a"),
                   GraphFile("encoder", "encoder.pt2", "b", format="torch-export")])
    m.save(tmp_path)
    on_disk = json.loads((tmp_path / "manifest.json").read_text())
    assert on_disk["schema_version"] == SCHEMA_VERSION
    assert [f["format"] for f in on_disk["files"]] == ["onnx", "torch-export"]
    assert Manifest.load(tmp_path) == m


@pytest.mark.parametrize("field, value", [("format", "tflite"), ("precision", "bf16"), ("graph", "prior")])
def test_an_unknown_graph_precision_or_format_is_rejected_naming_the_valid_ones(field, value):
    d = {"graph": "encoder", "path": "x", "sha256": "s", "precision": "fp32", "format": "onnx", field: value}
    with pytest.raises(ManifestError, match=rf"unknown {field} '{value}'; valid: \["):
        Manifest.from_dict({**_v1_dict(), "schema_version": 2, "files": [d]})


def test_an_unknown_format_note_in_a_schema_1_manifest_is_rejected():
    d = _v1_dict()
    d["files"][0]["notes"]["format"] = "tflite"
    with pytest.raises(ManifestError, match="unknown format 'tflite' in a schema 1 manifest"):
        Manifest.from_dict(d)


def test_a_manifest_from_a_newer_latentdial_asks_for_an_upgrade():
    with pytest.raises(ManifestError, match="newer than this latentdial understands"):
        Manifest.from_dict({**_v1_dict(), "schema_version": SCHEMA_VERSION + 1})


def test_a_vae_manifest_does_not_write_its_kind_so_older_readers_read_it_unchanged():
    m = Manifest.load(SHIPPED / "dsprites" / "5")
    assert m.kind == "vae" and m.graphs == ("encoder", "decoder")
    assert "kind" not in m.to_dict()


def test_an_editor_manifest_round_trips_with_its_kind_and_graphs(tmp_path):
    m = Manifest(name="stargan", version="1", image_shape=(1, 64, 64), latent_dim=6, files=[],
                 kind="editor", io=Manifest.default_io("editor"))
    m.save(tmp_path)
    back = Manifest.load(tmp_path)
    assert back.kind == "editor" and back.graphs == ("classifier", "editor")
    assert back.io["editor"]["inputs"] == ["images", "codes"]


def test_an_unknown_model_kind_is_rejected_naming_the_valid_ones():
    with pytest.raises(ManifestError, match="unknown model kind 'gan'.*editor.*vae"):
        Manifest.from_dict({**Manifest.load(SHIPPED / "dsprites" / "5").to_dict(), "kind": "gan"})
