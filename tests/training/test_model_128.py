"""The conv128 architecture (128x128, 1 or 3 channels) and conv64 left exactly as it was.

conv64: parameter names and shapes as before conv128 existed, every shipped model's weights load
into a fresh one, and the default shipped model re-exports bit for bit. conv128: the shapes at
each layer, the config checks, and a run end to end: a folder of 128x128 RGB PNGs -> a few
training steps -> ``latentdial export`` (parity checked) -> a real server on a real port ->
every call of the SDK over gRPC, a PNG round trip over HTTP and the slider page.
"""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import httpx
import numpy as np
import onnx
import pytest
import torch
from fixtures.server import ServerThread, make_config
from onnx import numpy_helper
from PIL import Image

from latentdial.cli import main as cli_main
from latentdial.client import Client
from latentdial.manifest import Manifest
from latentdial.training.config import ConfigError, load_config
from latentdial.training.model import ARCHITECTURES, ModelConfig, build_model, encoder_widths

REPO = Path(__file__).resolve().parents[2]
MODELS = REPO / "models"
EXAMPLE = REPO / "configs" / "examples" / "conv128_rgb.toml"

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# -- conv64 is unchanged -----------------------------------------------------------------------
def conv64_state(c: int, d: int) -> list[tuple[str, tuple[int, ...]]]:
    """conv64's state_dict (names, shapes, order) as it was written before conv128 existed."""
    return [
        ("encoder.features.0.weight", (32, c, 4, 4)), ("encoder.features.0.bias", (32,)),
        ("encoder.features.2.weight", (32, 32, 4, 4)), ("encoder.features.2.bias", (32,)),
        ("encoder.features.4.weight", (64, 32, 4, 4)), ("encoder.features.4.bias", (64,)),
        ("encoder.features.6.weight", (64, 64, 4, 4)), ("encoder.features.6.bias", (64,)),
        ("encoder.features.9.weight", (256, 1024)), ("encoder.features.9.bias", (256,)),
        ("encoder.mean.weight", (d, 256)), ("encoder.mean.bias", (d,)),
        ("encoder.log_var.weight", (d, 256)), ("encoder.log_var.bias", (d,)),
        ("decoder.fc.0.weight", (256, d)), ("decoder.fc.0.bias", (256,)),
        ("decoder.fc.2.weight", (1024, 256)), ("decoder.fc.2.bias", (1024,)),
        ("decoder.deconv.0.weight", (64, 64, 4, 4)), ("decoder.deconv.0.bias", (64,)),
        ("decoder.deconv.2.weight", (64, 32, 4, 4)), ("decoder.deconv.2.bias", (32,)),
        ("decoder.deconv.4.weight", (32, 32, 4, 4)), ("decoder.deconv.4.bias", (32,)),
        ("decoder.deconv.6.weight", (32, c, 4, 4)), ("decoder.deconv.6.bias", (c,)),
    ]


@pytest.mark.parametrize(("channels", "latent_dim"), [(1, 10), (3, 6)])
def test_conv64_parameter_names_shapes_and_order_are_unchanged(channels, latent_dim):
    model = build_model(ModelConfig(channels=channels, latent_dim=latent_dim))
    got = [(k, tuple(v.shape)) for k, v in model.state_dict().items()]
    assert got == conv64_state(channels, latent_dim)
    assert encoder_widths(64) == (32, 32, 64, 64)


def shipped_versions() -> list[Path]:
    return sorted(p.parent for p in MODELS.glob("*/*/manifest.json"))


def weights_from_onnx(model_dir: Path) -> dict[str, torch.Tensor]:
    """The parameters stored in a model directory's fp32 ONNX graphs, by their torch names."""
    out = {}
    for graph in ("encoder", "decoder"):
        for init in onnx.load(str(model_dir / f"{graph}.onnx")).graph.initializer:
            if init.name.startswith(f"{graph}."):
                out[init.name] = torch.from_numpy(numpy_helper.to_array(init).copy())
    return out


def rebuilt(model_dir: Path):
    """A fresh model of the manifest's config holding the shipped weights (strict load)."""
    manifest = Manifest.load(model_dir)
    cfg = ModelConfig(**manifest.provenance["config"]["model"])
    model = build_model(cfg).eval()
    model.load_state_dict(weights_from_onnx(model_dir), strict=True)
    return model, manifest


def test_every_shipped_model_loads_into_a_fresh_conv64_and_computes_what_its_onnx_does():
    import onnxruntime as ort

    versions = shipped_versions()
    assert versions, f"no shipped model in {MODELS}"
    for model_dir in versions:
        model, manifest = rebuilt(model_dir)
        assert model.config.architecture == "conv64"
        x = np.random.default_rng(0).random((3, *manifest.image_shape), dtype=np.float32)
        sess = ort.InferenceSession(str(model_dir / "encoder.onnx"), providers=["CPUExecutionProvider"])
        mean, log_var = sess.run(None, {"images": x})
        with torch.no_grad():
            want_mean, want_log_var = model.encoder(torch.from_numpy(x))
        np.testing.assert_allclose(mean, want_mean.numpy(), atol=1e-4, err_msg=str(model_dir))
        np.testing.assert_allclose(log_var, want_log_var.numpy(), atol=1e-4, err_msg=str(model_dir))


@pytest.mark.slow
def test_the_default_shipped_model_re_exports_bit_for_bit(tmp_path):
    from latentdial.export import graphs
    from latentdial.export.bundle import _library_versions

    model_dir = MODELS / (MODELS / "default").read_text().strip()
    model_dir = max((p for p in model_dir.iterdir() if (p / "manifest.json").is_file()), key=lambda p: int(p.name))
    model, manifest = rebuilt(model_dir)
    if manifest.provenance["versions"] != _library_versions():
        pytest.skip(f"{model_dir} was exported with {manifest.provenance['versions']}, "
                    f"this environment has {_library_versions()}")
    cfg = model.config
    for graph in ("encoder", "decoder"):
        module = graphs.graph_module(model, graph)
        example = graphs.example_input(graph, (cfg.channels, cfg.image_size, cfg.image_size), cfg.latent_dim)
        with torch.no_grad():
            raw = graphs.export_onnx(module, graph, example, tmp_path / f"{graph}.raw.onnx")
        again = graphs.optimise_onnx(raw, tmp_path / f"{graph}.onnx")
        assert again.read_bytes() == (model_dir / f"{graph}.onnx").read_bytes(), f"{model_dir}/{graph}.onnx"


# -- conv128 ------------------------------------------------------------------------------------
@pytest.mark.parametrize("channels", [1, 3])
def test_conv128_shapes_at_each_layer_are_the_documented_ones(channels):
    cfg = ModelConfig(architecture="conv128", image_size=128, channels=channels, latent_dim=7)
    model = build_model(cfg)
    assert ARCHITECTURES == {"conv64": 64, "conv128": 128}
    assert encoder_widths(128) == (32, 32, 32, 64, 64)
    x = torch.rand(2, channels, 128, 128)
    convs = []
    for layer in model.encoder.features:
        x = layer(x)
        if isinstance(layer, torch.nn.Conv2d):
            convs.append(tuple(x.shape[1:]))
    assert convs == [(32, 64, 64), (32, 32, 32), (32, 16, 16), (64, 8, 8), (64, 4, 4)]
    assert x.shape == (2, 256)
    h = model.decoder.fc(torch.randn(2, 7)).view(-1, *model.decoder.bottleneck)
    deconvs = []
    for layer in model.decoder.deconv:
        h = layer(h)
        if isinstance(layer, torch.nn.ConvTranspose2d):
            deconvs.append(tuple(h.shape[1:]))
    assert deconvs == [(64, 8, 8), (32, 16, 16), (32, 32, 32), (32, 64, 64), (channels, 128, 128)]
    logits, mean, log_var, z = model(torch.rand(3, channels, 128, 128))
    assert logits.shape == (3, channels, 128, 128) and mean.shape == log_var.shape == z.shape == (3, 7)


def test_model_config_checks_the_image_size_against_the_architecture():
    with pytest.raises(ConfigError, match=r'conv64 needs 64x64 images.*use architecture = "conv128" for 128x128'):
        ModelConfig(image_size=128)
    with pytest.raises(ConfigError, match=r"conv128 needs 128x128 images.*image_size = 128 for conv128"):
        ModelConfig(architecture="conv128")
    with pytest.raises(ConfigError, match=r"needs 64x64 images.*conv64 \(64x64\), conv128 \(128x128\)"):
        ModelConfig(image_size=96)
    with pytest.raises(ConfigError, match=r"unknown architecture 'conv256'; valid: \['conv128', 'conv64'\]"):
        ModelConfig(architecture="conv256", image_size=256)
    # in a config file it is a ConfigError, which `latentdial train` prints without a traceback
    with pytest.raises(ConfigError, match="conv64 needs 64x64"):
        load_config(EXAMPLE, ["model.architecture=conv64"])


def test_the_example_config_is_a_beta_vae_on_a_folder_of_128x128_rgb_images():
    cfg = load_config(EXAMPLE)
    assert cfg.objective_name == "beta_vae" and cfg.objective.beta == 4.0
    assert cfg.model == ModelConfig(architecture="conv128", channels=3, image_size=128, latent_dim=10)
    assert cfg.dataset["name"] == "folder"
    assert (cfg.dataset["channels"], cfg.dataset["image_size"]) == (cfg.model.channels, cfg.model.image_size)


# -- end to end: train, export, serve --------------------------------------------------------------
def write_pngs(folder: Path, n: int = 6) -> None:
    """Coloured discs on coloured backgrounds, 128x128 RGB (and one at another size, resized on read)."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:128, :128]
    folder.mkdir(parents=True)
    for i in range(n):
        img = np.empty((128, 128, 3), np.uint8)
        img[:] = rng.integers(0, 256, 3)
        cy, cx, r = rng.integers(30, 98, 2).tolist() + [int(rng.integers(10, 30))]
        img[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = rng.integers(0, 256, 3)
        Image.fromarray(img).save(folder / f"disc_{i}.png")
    Image.new("RGB", (200, 150), (10, 200, 90)).save(folder / "other_size.png")


@pytest.fixture(scope="module")
def rgb128(tmp_path_factory):
    """(repository, model dir, run dir, images (N, 128, 128, 3) uint8): a conv128 run exported as rgb128/1."""
    from latentdial.training.data import get_dataset
    from latentdial.training.trainer import train

    root = tmp_path_factory.mktemp("conv128")
    images = root / "images"
    write_pngs(images)
    data = get_dataset("folder", path=str(images), channels=3, image_size=128)
    assert data.observation_shape == (3, 128, 128)
    cfg = load_config(EXAMPLE, [f"dataset.path={json.dumps(str(images))}", "steps=2", "batch_size=4",
                                "log_every=1", "checkpoint_every=2", "num_threads=1"])
    run = train(cfg, root / "run", progress=False)
    repository = root / "models"
    model_dir = repository / "rgb128" / "1"
    assert cli_main(["export", str(run), str(model_dir), "--choice-rounds", "0"]) == 0
    x = data.sample_observations(4, np.random.default_rng(1))  # (N, 3, 128, 128) in [0, 1]
    return repository, model_dir, run, (x.transpose(0, 2, 3, 1) * 255).round().astype(np.uint8)


def test_a_conv128_run_trains_on_a_folder_and_exports_with_parity(rgb128):
    _, model_dir, run, _ = rgb128
    config = json.loads((run / "config.json").read_text())
    assert config["model"] == {"architecture": "conv128", "channels": 3, "image_size": 128, "latent_dim": 10}
    lines = (run / "loss_log.csv").read_text().splitlines()
    assert [ln.split(",")[0] for ln in lines[1:]] == ["1", "2"]
    assert Image.open(run / "reconstructions.png").size[0] > 128  # figures at the model's size
    manifest = Manifest.load(model_dir)
    manifest.verify_files(model_dir)
    assert manifest.image_shape == (3, 128, 128) and manifest.latent_dim == 10
    for graph in ("encoder", "decoder"):
        f = manifest.graph_file(graph)
        assert f.max_abs_error is not None and f.max_abs_error <= f.notes["tolerance"]
        io_ = {v.name: [d.dim_value or d.dim_param for d in v.type.tensor_type.shape.dim]
               for v in (*onnx.load(str(model_dir / f.path)).graph.input,
                         *onnx.load(str(model_dir / f.path)).graph.output)}
        if graph == "encoder":
            assert io_["images"][1:] == [3, 128, 128] and io_["mean"][1:] == io_["log_var"][1:] == [10]
        else:
            assert io_["latents"][1:] == [10] and io_["images"][1:] == [3, 128, 128]
    # the decoder graph holds the sigmoid
    import onnxruntime as ort

    sess = ort.InferenceSession(str(model_dir / "decoder.onnx"), providers=["CPUExecutionProvider"])
    (out,) = sess.run(None, {"latents": np.random.default_rng(0).standard_normal((2, 10), np.float32) * 30})
    assert out.shape == (2, 3, 128, 128) and 0 <= out.min() and out.max() <= 1


@pytest.fixture(scope="module")
def served(rgb128):
    repository, _, _, images = rgb128
    with ServerThread(make_config(repository)) as server:
        yield server, images


def test_every_sdk_call_over_grpc_returns_128x128_rgb_images(served):
    server, x = served
    with Client(server.address, timeout_s=60) as c:
        info = c.model_info("rgb128")
        assert (info.channels, info.height, info.width, info.latent_dim) == (3, 128, 128, 10)

        enc = c.encode(x, model="rgb128")
        assert enc.mean.shape == enc.log_var.shape == (4, 10) and np.isfinite(enc.mean).all()

        dec = c.decode(enc.mean, model="rgb128")
        assert dec.shape == (4, 128, 128, 3) and dec.dtype == np.float32
        assert 0 <= dec.min() and dec.max() <= 1

        rec = c.reconstruct(x, model="rgb128")
        assert rec.images.shape == (4, 128, 128, 3) and rec.latents.shape == (4, 10)
        np.testing.assert_allclose(rec.images, dec, atol=1e-4)  # Reconstruct == Decode(Encode)
        rec8 = c.reconstruct(x[:2], model="rgb128", output="uint8")
        assert rec8.images.shape == (2, 128, 128, 3) and rec8.images.dtype == np.uint8

        grid = c.traverse(x[:2], dims=[0, 3, 9], steps=5, model="rgb128")
        assert grid.images.shape == (2, 3, 5, 128, 128, 3)
        assert grid.values.shape == (3, 5)

        gen = c.generate(3, seed=4, model="rgb128")
        assert gen.images.shape == (3, 128, 128, 3) and gen.latents.shape == (3, 10)
        again = c.generate(3, seed=4, model="rgb128")
        np.testing.assert_array_equal(gen.images, again.images)  # seeded


def test_a_png_round_trip_over_http_is_a_128x128_rgb_png(served):
    server, x = served
    buf = io.BytesIO()
    Image.fromarray(x[0]).save(buf, format="PNG")
    with httpx.Client(base_url=server.http_url, timeout=60) as http:
        info = http.get("/v1/models/rgb128").json()
        assert (info["channels"], info["height"], info["width"]) == (3, 128, 128)
        r = http.post("/v1/models/rgb128/reconstruct", content=buf.getvalue(),
                      headers={"Content-Type": "image/png", "Accept": "image/png"})
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == "image/png"
        png = Image.open(io.BytesIO(r.content))
        assert (png.mode, png.size) == ("RGB", (128, 128))
        strip = http.post("/v1/models/rgb128/traverse?format=png",
                          json={"latents": np.zeros((1, 10)).tolist(), "dimensions": [0], "steps": 4})
        assert strip.status_code == 200, strip.text
        assert Image.open(io.BytesIO(strip.content)).height == 128
    with Client(server.address, timeout_s=60) as c:
        want = c.reconstruct([buf.getvalue()], model="rgb128", output="uint8").images[0]
    np.testing.assert_array_equal(np.asarray(png), want)


@pytest.mark.slow
def test_the_page_shows_a_128x128_model_at_twice_its_size(served, tmp_path):
    """In headless Chromium (as tests/serving/test_page_browser.py): 128x128 images are drawn 256 px wide."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver):
        pytest.fail("chromium and chromium-driver are missing: run `make browser` (make test installs them)")
    server, x = served
    options = webdriver.ChromeOptions()
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--window-size=1280,900",
                 "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1"):
        options.add_argument(flag)
    options.binary_location = chromium
    d = webdriver.Chrome(options=options, service=Service(driver))
    try:
        d.get(server.http_url + "/?model=rgb128")
        wait_for(d, "return document.body.dataset.state === 'ready' && document.getElementById('dim-0')", "the model")
        path = tmp_path / "source.png"
        Image.fromarray(x[1]).save(path)
        d.find_element(By.ID, "upload").send_keys(str(path))
        wait_for(d, "return document.body.dataset.renders >= 1 && document.body.dataset.state === 'ready'",
                 "the reconstruction")
        for img in ("source", "edited"):
            natural, box = d.execute_script(
                f"const i = document.getElementById('{img}'); const r = i.getBoundingClientRect();"
                "return [[i.naturalWidth, i.naturalHeight], [r.width, r.height]];")
            assert natural == [128, 128], img
            assert box == [256, 256], img
    finally:
        d.quit()


def wait_for(d, condition: str, what: str, timeout_s: float = 30.0):
    import time

    end = time.time() + timeout_s
    while time.time() < end:
        if d.execute_script(condition):
            return
        time.sleep(0.05)
    state = d.execute_script("return [document.body.dataset.state, document.getElementById('status').textContent]")
    raise AssertionError(f"timed out waiting for {what}; page state {state}")
