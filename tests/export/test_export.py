"""latentdial export: a run directory becomes a verified ONNX model directory."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from fixtures.torch_run import write_run_dir

from latentdial.export import bundle, graphs
from latentdial.export.bundle import ExportError, export_run
from latentdial.export.parity import FP32_TOLERANCE, ParityError
from latentdial.export.variants import FP16_TOLERANCE, INT8_TOLERANCE
from latentdial.factor_card import FactorCard
from latentdial.manifest import SCHEMA_VERSION, Manifest, sha256_file

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def make_run_dir(path: Path, *, channels: int = 1, latent_dim: int = 10, card: bool = True) -> Path:
    """An untrained run directory with config, weights, factor card and metrics."""
    write_run_dir(path, channels=channels, latent_dim=latent_dim, seed=0, weights_metadata={"step": "0"},
                  config={"dataset": {"name": "dsprites"}, "objective": {"name": "beta_vae", "beta": 4.0}})
    if card:
        FactorCard.from_hand_named({"scale": 2, "pos_x": [4, 5]}, latent_dim).save(path / "factor_card.json")
    (path / "metrics.json").write_text(json.dumps({"mig": 0.25, "dci_disentanglement": 0.5}))
    return path


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> tuple[Path, Manifest, Path]:
    """One full export with the default (torch.export-based) exporter and both variants."""
    root = tmp_path_factory.mktemp("export")
    run = make_run_dir(root / "run")
    model_dir = root / "models" / "sprites" / "3"
    lines: list[str] = []
    manifest = export_run(run, model_dir, variant_names="fp16,int8", speed_rounds=2, choice_rounds=0,
                          report=lines.append)
    assert any("max abs diff" in line for line in lines)
    return model_dir, manifest, run


def test_manifest_lists_every_file_with_its_sha256_precision_and_error(exported):
    model_dir, manifest, _ = exported
    manifest.verify_files(model_dir)
    on_disk = {p.name for p in model_dir.iterdir()} - {"manifest.json"}
    assert on_disk == {f.path for f in manifest.files}
    for f in manifest.files:
        assert f.sha256 == sha256_file(model_dir / f.path)
        tol = {"fp32": FP32_TOLERANCE, "fp16": FP16_TOLERANCE, "int8": INT8_TOLERANCE}[f.precision]
        assert f.max_abs_error is not None and 0 <= f.max_abs_error <= tol
    assert {(f.graph, f.precision) for f in manifest.files} >= {
        ("encoder", "fp32"), ("decoder", "fp32"), ("encoder", "fp16"), ("decoder", "fp16")}
    # the ONNX graph, not the torch program, is what graph_file() returns
    assert manifest.graph_file("encoder").path == "encoder.onnx"
    # every file says its format, and selection by format does not depend on list order
    assert {(f.path, f.format, f.variant) for f in manifest.files if f.precision == "fp32"} == {
        ("encoder.onnx", "onnx", ""), ("decoder.onnx", "onnx", ""),
        ("encoder.raw.onnx", "onnx", "raw"), ("decoder.raw.onnx", "onnx", "raw"),  # serving candidates
        ("encoder.pt2", "torch-export", ""), ("decoder.pt2", "torch-export", "")}
    assert manifest.graph_file("decoder", "fp32", "torch-export").path == "decoder.pt2"
    assert Manifest.load(model_dir).schema_version == SCHEMA_VERSION


def test_manifest_copies_shapes_card_metrics_and_provenance(exported):
    model_dir, _, run = exported
    loaded = Manifest.load(model_dir)
    assert (loaded.name, loaded.version) == ("sprites", "3")
    assert loaded.image_shape == (1, 64, 64) and loaded.latent_dim == 10
    assert loaded.batch_profile == {"min": 1, "opt": 64, "max": 256}
    assert FactorCard.from_dict(loaded.factor_card).names == ["scale", "pos_x"]
    assert loaded.metrics == {"mig": 0.25, "dci_disentanglement": 0.5}
    prov = loaded.provenance
    assert prov["run_dir"] == str(run.resolve())
    assert prov["dataset"] == {"name": "dsprites"} and prov["objective"]["name"] == "beta_vae"
    assert prov["config"]["model"]["latent_dim"] == 10
    assert {"torch", "onnx", "onnxruntime"} <= set(prov["versions"])
    assert prov["code_version"] and prov["created"].endswith("+00:00")


def test_int8_measurement_is_recorded_whether_or_not_it_was_kept(exported):
    _, manifest, _ = exported
    for graph in ("encoder", "decoder"):
        m = manifest.graph_file(graph).notes["int8_measurement"]
        assert m["baseline_items_per_s"] > 0 and m["candidate_items_per_s"] > 0
        kept = any(f.graph == graph and f.precision == "int8" for f in manifest.files)
        assert m["kept"] == kept
        assert kept == (m["speedup"] >= m["min_speedup"] and m["max_abs_error"] <= m["tolerance"])


def test_onnx_graphs_have_contract_names_opset_and_dynamic_batch(exported):
    model_dir, manifest, _ = exported
    for f in manifest.files:
        if f.format != "onnx":
            continue
        model = onnx.load(str(model_dir / f.path))
        onnx.checker.check_model(model)
        assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 17
        io = manifest.io[f.graph]
        assert [i.name for i in model.graph.input] == io["inputs"]
        assert [o.name for o in model.graph.output] == io["outputs"]
        for v in (*model.graph.input, *model.graph.output):
            assert v.type.tensor_type.elem_type == onnx.TensorProto.FLOAT  # fp32 I/O, also for fp16
            assert v.type.tensor_type.shape.dim[0].dim_param


def test_decoder_graph_contains_the_sigmoid(exported):
    model_dir, _, _ = exported
    sess = ort.InferenceSession(str(model_dir / "decoder.onnx"), providers=["CPUExecutionProvider"])
    z = np.random.default_rng(0).standard_normal((5, 10)).astype(np.float32) * 50
    (images,) = sess.run(None, {"latents": z})
    assert images.shape == (5, 1, 64, 64)
    assert images.min() >= 0.0 and images.max() <= 1.0


def test_torch_programs_reproduce_the_model_without_training_code(exported):
    model_dir, _, run = exported
    from latentdial.training.run_dir import load_run

    model = load_run(run).model
    x = torch.rand(4, 1, 64, 64)
    program = torch.export.load(str(model_dir / "encoder.pt2")).module()
    mean, log_var = program(x)
    ref_mean, ref_log_var = model.encoder(x)
    torch.testing.assert_close(mean, ref_mean)
    torch.testing.assert_close(log_var, ref_log_var)


def test_broken_optimisation_pass_fails_parity_and_leaves_no_model_dir(tmp_path, monkeypatch):
    run = make_run_dir(tmp_path / "run")
    real = graphs.optimise_onnx

    def corrupting(src, dst):
        out = real(src, dst)
        model = onnx.load(str(out))
        init = model.graph.initializer[0]
        w = onnx.numpy_helper.to_array(init) + 0.5
        init.CopyFrom(onnx.numpy_helper.from_array(w.astype(np.float32), init.name))
        onnx.save(model, str(out))
        return out

    monkeypatch.setattr(graphs, "optimise_onnx", corrupting)
    target = tmp_path / "models" / "m" / "1"
    with pytest.raises(ParityError, match="exceeds the tolerance"):
        export_run(run, target, exporter="torchscript", torch_program=False, report=lambda s: None)
    assert not target.exists()
    assert list((tmp_path / "models" / "m").iterdir()) == []  # no partial directory left


def test_existing_model_dir_is_not_overwritten_without_flag(tmp_path):
    run = make_run_dir(tmp_path / "run")
    target = tmp_path / "m" / "1"
    target.mkdir(parents=True)
    with pytest.raises(ExportError, match="already exists"):
        export_run(run, target, report=lambda s: None)


def test_unknown_variant_lists_the_valid_ones():
    with pytest.raises(ExportError, match=r"valid: \['fp16', 'int8'\]"):
        bundle.parse_variants("fp16,bf16")


def test_opset_below_17_is_refused(tmp_path):
    run = make_run_dir(tmp_path / "run")
    with pytest.raises(ValueError, match="opset 13 is too old"):
        export_run(run, tmp_path / "m" / "1", opset=13, exporter="torchscript", report=lambda s: None)
    assert not (tmp_path / "m" / "1").exists()


def test_cli_exports_and_overwrites(tmp_path, capsys):
    from latentdial.cli import main

    run = make_run_dir(tmp_path / "run", channels=3, latent_dim=6, card=False)
    target = tmp_path / "models" / "colour" / "2"
    args = ["export", str(run), str(target), "--exporter", "torchscript", "--no-torch-program", "--choice-rounds", "0"]
    assert main(args) == 0
    assert "max abs diff" in capsys.readouterr().out
    m = Manifest.load(target)
    assert m.image_shape == (3, 64, 64) and m.latent_dim == 6 and m.factor_card is None
    assert main(args) == 1  # exists
    assert "already exists" in capsys.readouterr().err
    assert main([*args, "--overwrite", "--name", "renamed"]) == 0
    assert Manifest.load(target).name == "renamed"


def test_a_directory_that_is_not_a_run_gives_a_clear_error(tmp_path):
    (tmp_path / "run").mkdir()
    with pytest.raises(ExportError, match=r"config.json is missing; is .* a finished training run"):
        export_run(tmp_path / "run", tmp_path / "m" / "1", report=lambda s: None)
    assert not (tmp_path / "m" / "1").exists()
