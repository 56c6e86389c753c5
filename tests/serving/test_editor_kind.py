"""The editor model kind (StarGAN, Choi et al. 2018): image-to-image translation without a latent space.

An editor version (``Manifest.kind == "editor"``) has a ``classifier`` graph (images -> factor codes)
and an ``editor`` graph (images, target codes -> images). Served, it answers one domain call:
EditAttributes on images = editor(images, apply(edits, classifier(images))), with the very edits
the VAE path compiles (serving/edits.py). Every call that needs a latent space answers
FAILED_PRECONDITION saying why, on every door, before any work; a manifest whose graphs do not
match its kind is refused at load; VAE models on the same server serve as before.

The bundle here is tiny and real: two torch modules exported with ``torch.onnx`` and a factor card
adapted from the shipped dsprites/5 (6 code dimensions).
"""

from __future__ import annotations

import asyncio
import base64
import io
import shutil
from pathlib import Path

import grpc
import httpx
import numpy as np
import onnxruntime as ort
import pytest
from fixtures.editor_model import SHAPE, D, build_editor
from fixtures.server import ServerThread, make_config
from fixtures.toy_model import build_toy_model
from PIL import Image

from latentdial.client import Client, Edit
from latentdial.factor_card import FactorCard
from latentdial.images import to_uint8
from latentdial.inference import grpc_service_pb2 as oip
from latentdial.inference import grpc_service_pb2_grpc as oip_grpc
from latentdial.manifest import GraphFile, Manifest, ManifestError, sha256_file
from latentdial.serving.batcher import DynamicBatcher
from latentdial.serving.edits import CheckedEdit, compile_edits
from latentdial.serving.repository import check_kind, load_model
from latentdial.v1 import latentdial_pb2 as pb
from latentdial.v1 import latentdial_pb2_grpc as pb_grpc

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("one_torch_thread")]

ROOT = Path(__file__).resolve().parents[2]


def build_bad_editor(root: Path, vae_dir: Path) -> Path:
    """An "editor" whose manifest lists a VAE's encoder and decoder files: refused at load."""
    out = root / "badeditor" / "1"
    out.mkdir(parents=True)
    for f in ("encoder.onnx", "decoder.onnx"):
        shutil.copy(vae_dir / f, out / f)
    Manifest(name="badeditor", version="1", image_shape=(1, 8, 8), latent_dim=4, kind="editor",
             files=[GraphFile("encoder", "encoder.onnx", sha256_file(out / "encoder.onnx")),
                    GraphFile("decoder", "decoder.onnx", sha256_file(out / "decoder.onnx"))]).save(out)
    return out


class Reference:
    """The bundle's graphs in ONNX Runtime, and the edit compiled exactly as the server compiles it."""

    def __init__(self, model_dir: Path) -> None:
        self.classifier = ort.InferenceSession(str(model_dir / "classifier.onnx"), providers=["CPUExecutionProvider"])
        self.editor = ort.InferenceSession(str(model_dir / "editor.onnx"), providers=["CPUExecutionProvider"])
        self.card = FactorCard.from_dict(Manifest.load(model_dir).factor_card)

    def edit(self, images_nchw: np.ndarray, edits: list[CheckedEdit]) -> tuple[np.ndarray, np.ndarray]:
        """(target codes (N, D), edited images (N, C, H, W)) = apply(edits, classifier(x)), editor(x, codes')."""
        codes = self.classifier.run(["codes"], {"images": images_nchw})[0]
        target = compile_edits(edits, self.card, D).apply(codes)
        return target, self.editor.run(None, {"images": images_nchw, "codes": target})[0]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("editor-kind")
    editor_dir = build_editor(root)
    vae = build_toy_model(root, "toy", "1")
    build_bad_editor(root, vae.path)
    with ServerThread(make_config(root, default_model="toy")) as server:
        yield server, Reference(editor_dir), vae


def images(n: int = 2, seed: int = 0) -> np.ndarray:
    """(N, 64, 64, 1) float32 in [0, 1], the wire layout."""
    return np.random.default_rng(seed).random((n, *SHAPE[1:], SHAPE[0]), dtype=np.float32)


def nchw(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def png_b64(hwc: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(to_uint8(hwc)[..., 0], mode="L").save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def png_pixels(text: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(text))))


EDITS = [Edit(factor="scale", set_value=0.8), Edit(factor="shape", set_label="heart"),
         Edit(factor="orientation", shift=0.5)]
CHECKED = [CheckedEdit("scale", None, "set_value", 0.8), CheckedEdit("shape", None, "set_label", "heart"),
           CheckedEdit("orientation", None, "shift", 0.5)]


# ------------------------------------------------------------------- loading
def test_a_manifest_whose_graphs_are_not_its_kinds_is_refused_at_load_naming_the_model(served):
    server, _, _ = served
    with pytest.raises(ManifestError, match=r"model badeditor/1 \(kind 'editor'\) is an editor .*classifier, editor.*encoder, decoder"):
        load_model(Path(server.config.repository) / "badeditor" / "1", "badeditor", "1")
    # the server went on serving the rest, and says why that version is not served
    listed = {m["name"]: m for m in httpx.get(f"{server.http_url}/v1/models").json()["models"]}
    assert set(listed) == {"stargan", "toy"}
    with Client(server.address) as c:
        assert [s.name for s in c.list_models()] == ["stargan", "toy"]
        # a listing says which models only edit images, on every door that lists
        assert {s.name: s.kind for s in c.list_models()} == {"stargan": "editor", "toy": "vae"}
    assert {name: m["kind"] for name, m in listed.items()} == {"stargan": "editor", "toy": "vae"}
    reason = server.handle.engine.repository.failed["badeditor/1"]
    assert "is an editor" in reason and "encoder, decoder" in reason


def test_check_kind_refuses_a_vae_with_editor_files_and_an_editor_without_its_signatures():
    vae_with_classifier = Manifest("m", "1", SHAPE, D, [GraphFile("encoder", "e.onnx", ""),
                                                        GraphFile("decoder", "d.onnx", ""),
                                                        GraphFile("classifier", "c.onnx", "")])
    with pytest.raises(ManifestError, match=r"model m/1 \(kind 'vae'\) is a VAE .*lists files of classifier.*\"kind\": \"editor\""):
        check_kind(vae_with_classifier, "m", "1")
    editor_files = [GraphFile("classifier", "c.onnx", ""), GraphFile("editor", "e.onnx", "")]
    without_io = Manifest("s", "2", SHAPE, D, editor_files, kind="editor")  # io left at the VAE's default
    with pytest.raises(ManifestError, match=r"model s/2 \(kind 'editor'\) is an editor .*its io states"):
        check_kind(without_io, "s", "2")
    no_editor_file = Manifest("s", "3", SHAPE, D, editor_files[:1], kind="editor", io=Manifest.default_io("editor"))
    with pytest.raises(ManifestError, match=r"model s/3 .*no fp32 ONNX file of editor"):
        check_kind(no_editor_file, "s", "3")
    check_kind(Manifest("s", "4", SHAPE, D, editor_files, kind="editor", io=Manifest.default_io("editor")), "s", "4")


# ---------------------------------------------------------------- model info
def test_model_info_says_the_kind_on_every_door(served):
    server, ref, _ = served
    with Client(server.address) as c:
        info = c.model_info("stargan")
        assert (info.kind, info.latent_dim, [f.name for f in info.factors]) == (
            "editor", D, [f.name for f in ref.card.factors])
        assert c.model_info("toy").kind == "vae"
    body = httpx.get(f"{server.http_url}/v1/models/stargan").json()
    assert body["kind"] == "editor" and body["oip_models"] == ["stargan.classifier", "stargan.editor"]
    assert httpx.get(f"{server.http_url}/v1/models/toy").json()["kind"] == "vae"
    listed = {m["name"]: m["oip_models"] for m in httpx.get(f"{server.http_url}/v1/models").json()["models"]}
    assert listed == {"stargan": ["stargan.classifier", "stargan.editor"], "toy": ["toy.encoder", "toy.decoder"]}
    with grpc.insecure_channel(server.address) as ch:
        meta = oip_grpc.GRPCInferenceServiceStub(ch).ModelMetadata(oip.ModelMetadataRequest(name="stargan.editor"))
    assert [(t.name, list(t.shape)) for t in meta.inputs] == [("images", [-1, 64, 64, 1]), ("codes", [-1, D])]
    assert [(t.name, list(t.shape)) for t in meta.outputs] == [("images", [-1, 64, 64, 1])]


# ---------------------------------------------------------------------- edits
def test_an_edit_by_factor_name_on_grpc_v1_is_the_editor_of_the_edited_classifier_codes(served):
    server, ref, _ = served
    x = images(3)
    codes, want = ref.edit(nchw(x), CHECKED)
    with Client(server.address) as c:
        got = c.edit(x, EDITS, model="stargan")
    assert got.model == ("stargan", "1")
    np.testing.assert_array_equal(got.latents, codes)  # the target codes the editor was given
    np.testing.assert_array_equal(got.images, want.transpose(0, 2, 3, 1))


def test_an_edit_by_factor_name_on_http_is_the_same_edit(served):
    server, ref, _ = served
    x = images(2, seed=5)
    u8 = to_uint8(x)
    x_wire = u8.astype(np.float32) / 255.0  # what the server reads from the PNGs
    codes, want = ref.edit(nchw(x_wire), CHECKED)
    body = {"images": [png_b64(img) for img in x],
            "edits": [{"factor": "scale", "set_value": 0.8}, {"factor": "shape", "set_label": "heart"},
                      {"factor": "orientation", "shift": 0.5}]}
    r = httpx.post(f"{server.http_url}/v1/models/stargan/edit", json=body)
    assert r.status_code == 200, r.text
    out = r.json()
    np.testing.assert_allclose(np.asarray(out["latents"], np.float32), codes, rtol=0, atol=1e-6)
    assert set(out["factors"]) == {f.name for f in ref.card.factors}
    got = np.stack([png_pixels(p) for p in out["images"]])
    np.testing.assert_array_equal(got, to_uint8(want.transpose(0, 2, 3, 1))[..., 0])
    # a PNG body with the edits in the query answers the same image
    png = base64.b64decode(png_b64(x[0]))
    r = httpx.post(f"{server.http_url}/v1/models/stargan/edit?set=scale=0.8&set=shape=heart&shift=orientation=0.5"
                   "&format=png", content=png, headers={"Content-Type": "image/png"})
    assert r.status_code == 200, r.text
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(r.content))), got[0])


def test_the_edits_checks_are_the_vae_paths_on_an_editor(served):
    server, _, _ = served
    with Client(server.address) as c:
        for edits, match in (([Edit(factor="colour", set_value=1.0)], "colour"),
                             ([Edit(factor="shape", set_label="star")], "star"),
                             ([Edit(dimension=6, set_latent=0.0)], "dimension 6 is outside 0..5")):
            with pytest.raises(Exception, match=match) as e:
                c.edit(images(1), edits, model="stargan")
            assert e.value.code == "INVALID_ARGUMENT"


def test_oip_classifier_and_editor_infer_like_the_graphs_on_both_bindings(served):
    server, ref, _ = served
    x = images(2, seed=3)
    want_codes = ref.classifier.run(["codes"], {"images": nchw(x)})[0]
    target = want_codes + np.float32(0.25)
    want_images = ref.editor.run(None, {"images": nchw(x), "codes": target})[0].transpose(0, 2, 3, 1)
    with grpc.insecure_channel(server.address) as ch:
        s = oip_grpc.GRPCInferenceServiceStub(ch)
        r = s.ModelInfer(oip.ModelInferRequest(
            model_name="stargan.classifier",
            inputs=[oip.ModelInferRequest.InferInputTensor(name="images", datatype="FP32", shape=x.shape)],
            raw_input_contents=[x.tobytes()]))
        np.testing.assert_array_equal(np.frombuffer(r.raw_output_contents[0], np.float32).reshape(2, D), want_codes)
        r = s.ModelInfer(oip.ModelInferRequest(
            model_name="stargan.editor",
            inputs=[oip.ModelInferRequest.InferInputTensor(name="images", datatype="FP32", shape=x.shape),
                    oip.ModelInferRequest.InferInputTensor(name="codes", datatype="FP32", shape=target.shape)],
            raw_input_contents=[x.tobytes(), target.tobytes()]))
        np.testing.assert_array_equal(np.frombuffer(r.raw_output_contents[0], np.float32).reshape(x.shape),
                                      want_images)
    body = {"inputs": [{"name": "images", "datatype": "FP32", "shape": list(x.shape), "data": x.ravel().tolist()},
                       {"name": "codes", "datatype": "FP32", "shape": list(target.shape),
                        "data": target.ravel().tolist()}]}
    r = httpx.post(f"{server.http_url}/v2/models/stargan.editor/infer", json=body)
    assert r.status_code == 200, r.text
    out = r.json()["outputs"][0]
    np.testing.assert_array_equal(np.asarray(out["data"], np.float32).reshape(out["shape"]), want_images)
    body["inputs"][1]["shape"], body["inputs"][1]["data"] = [1, D], target[:1].ravel().tolist()
    r = httpx.post(f"{server.http_url}/v2/models/stargan.editor/infer", json=body)
    assert r.status_code == 400 and "2 images but 1 rows of codes" in r.json()["error"]


def test_concurrent_edits_batch_together_and_each_gets_its_own_rows(served):
    """Concurrent edits of one editor go through its one batcher (merged when they meet there); each
    request's images and codes stay on their rows."""
    server, ref, _ = served
    engine = server.handle.engine
    batcher = engine.served("stargan").batcher("editor")
    seen: list[int] = []
    observer = batcher._observer
    batcher._observer = lambda n, waited: (seen.append(n), observer and observer(n, waited))
    sources = [images(1 + i % 2, seed=10 + i) for i in range(6)]
    edits = [[Edit(factor="scale", set_value=0.5 + 0.1 * i)] for i in range(6)]

    async def all_at_once():
        from latentdial.client.aio import AsyncClient

        async with AsyncClient(server.address) as c:
            return await asyncio.gather(*(c.edit(x, e, model="stargan") for x, e in zip(sources, edits, strict=True)))

    try:
        results = asyncio.run(all_at_once())
    finally:
        batcher._observer = observer
    for x, e, got in zip(sources, edits, results, strict=True):
        codes, want = ref.edit(nchw(x), [CheckedEdit("scale", None, "set_value", e[0].set_value)])
        np.testing.assert_array_equal(got.latents, codes)
        np.testing.assert_array_equal(got.images, want.transpose(0, 2, 3, 1))
    assert sum(seen) == sum(len(x) for x in sources)


def test_a_batch_of_two_input_requests_keeps_images_and_codes_on_the_same_rows():
    """The batcher splits and merges every input of a request at the same rows (unit, no server)."""
    calls: list[int] = []

    def run(inputs):
        calls.append(len(inputs["images"]))
        return {"images": inputs["images"] + inputs["codes"][:, :1, None, None]}

    async def go():
        b = DynamicBatcher(run, name="t/1/editor", max_batch_size=4, max_queue_delay_s=0.05, adaptive=False)
        requests = [(np.full((n, 1, 2, 2), i, np.float32), np.full((n, D), 10 * i, np.float32))
                    for i, n in enumerate((1, 2, 3))]
        outs = await asyncio.gather(*(b.submit({"images": x, "codes": z}) for x, z in requests))
        await b.close()
        return requests, outs

    requests, outs = asyncio.run(go())
    for (x, z), out in zip(requests, outs, strict=True):
        np.testing.assert_array_equal(out["images"], x + z[:, :1, None, None])
    assert calls == [3, 3]  # 1 + 2 rows merged, then 3 (a batch holds at most 4)


# ---------------------------------------------------------------- refusals
UNSERVED_V1 = {
    "Encode": pb.EncodeRequest(model=pb.ModelRef(name="stargan")),
    "Decode": pb.DecodeRequest(model=pb.ModelRef(name="stargan")),  # no latents at all: refused before reading
    "Reconstruct": pb.ReconstructRequest(model=pb.ModelRef(name="stargan")),
    "Traverse": pb.TraverseRequest(model=pb.ModelRef(name="stargan"), factors=["scale"]),
    "Generate": pb.GenerateRequest(model=pb.ModelRef(name="stargan"), count=1),
}


@pytest.mark.parametrize("call", sorted(UNSERVED_V1))
def test_every_call_an_editor_cannot_serve_is_failed_precondition_on_grpc_v1_saying_why(served, call):
    server, _, _ = served
    with grpc.insecure_channel(server.address) as ch:
        with pytest.raises(grpc.RpcError) as e:
            getattr(pb_grpc.LatentDialStub(ch), call)(UNSERVED_V1[call], timeout=10)
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert e.value.details() == (
        f"model stargan/1 is an editor (image-to-image translation): it has no latent space, so {call} is not "
        "served; EditAttributes is (on images)")


def test_an_editor_edits_images_not_latents(served):
    server, _, _ = served
    req = pb.EditAttributesRequest(model=pb.ModelRef(name="stargan"))
    req.latents.CopyFrom(pb.Tensor(dtype=pb.DATA_TYPE_FLOAT32, shape=[1, D], raw=np.zeros((1, D), np.float32).tobytes()))
    with grpc.insecure_channel(server.address) as ch:
        with pytest.raises(grpc.RpcError) as e:
            pb_grpc.LatentDialStub(ch).EditAttributes(req, timeout=10)
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "is an editor" in e.value.details() and "takes images, not latents" in e.value.details()
    r = httpx.post(f"{server.http_url}/v1/models/stargan/edit", json={"latents": [[0.0] * D], "edits": []})
    assert (r.status_code, r.json()["code"]) == (400, "FAILED_PRECONDITION")


@pytest.mark.parametrize("route, call", [("encode", "Encode"), ("decode", "Decode"), ("reconstruct", "Reconstruct"),
                                         ("traverse", "Traverse"), ("generate", "Generate")])
def test_every_call_an_editor_cannot_serve_is_failed_precondition_on_rest_v1_saying_why(served, route, call):
    server, _, _ = served
    r = httpx.post(f"{server.http_url}/v1/models/stargan/{route}", json={"junk": "not even a valid body"})
    assert r.status_code == 400  # serving/http/errors.py: FAILED_PRECONDITION is 400
    assert r.json()["code"] == "FAILED_PRECONDITION"
    assert f"stargan/1 is an editor (image-to-image translation): it has no latent space, so {call} is not served" \
        in r.json()["error"]


def test_the_encoder_and_decoder_of_an_editor_are_failed_precondition_on_both_oip_bindings(served):
    server, _, _ = served
    with grpc.insecure_channel(server.address) as ch:
        s = oip_grpc.GRPCInferenceServiceStub(ch)
        for graph in ("encoder", "decoder"):
            with pytest.raises(grpc.RpcError) as e:
                s.ModelInfer(oip.ModelInferRequest(model_name=f"stargan.{graph}"), timeout=10)
            assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert "is an editor" in e.value.details() and "stargan.classifier, stargan.editor" in e.value.details()
            with pytest.raises(grpc.RpcError) as e:
                s.ModelMetadata(oip.ModelMetadataRequest(name=f"stargan.{graph}"), timeout=10)
            assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert not s.ModelReady(oip.ModelReadyRequest(name=f"stargan.{graph}")).ready
        assert s.ModelReady(oip.ModelReadyRequest(name="stargan.editor")).ready
        with pytest.raises(grpc.RpcError) as e:  # a VAE has no editor graph: that OIP model does not exist
            s.ModelMetadata(oip.ModelMetadataRequest(name="toy.editor"), timeout=10)
        assert e.value.code() == grpc.StatusCode.NOT_FOUND and "toy.encoder, toy.decoder" in e.value.details()
    r = httpx.post(f"{server.http_url}/v2/models/stargan.decoder/infer", json={"inputs": []})
    assert (r.status_code, r.json()["code"]) == (400, "FAILED_PRECONDITION")
    assert "is an editor" in r.json()["error"]


def test_samples_of_the_data_are_served_for_an_editors_page(served):
    server, _, _ = served
    r = httpx.get(f"{server.http_url}/v1/models/stargan/samples?count=2&seed=1")
    assert r.status_code == 200, r.text
    assert [png_pixels(p).shape for p in r.json()["images"]] == [(64, 64), (64, 64)]


# ------------------------------------------------------------ VAEs as before
def test_a_vae_on_the_same_server_serves_every_call_as_before(served):
    server, _, vae = served
    x = np.random.default_rng(1).random((2, 8, 8, 1), dtype=np.float32)
    mean, _ = vae.encode(nchw(x))
    with Client(server.address) as c:
        enc = c.encode(x, model="toy")
        np.testing.assert_allclose(enc.mean, mean, rtol=1e-5, atol=1e-5)
        got = c.edit(x, [Edit(factor="pos_x", set_value=1.0)], model="toy")
        want = compile_edits([CheckedEdit("pos_x", None, "set_value", 1.0)], _toy_card(), 4)
        np.testing.assert_allclose(got.latents, want.apply(enc.mean), rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(got.images, vae.decode(got.latents).transpose(0, 2, 3, 1), rtol=1e-5, atol=1e-5)
        assert c.generate(2, seed=3, model="toy").images.shape == (2, 8, 8, 1)
    r = httpx.post(f"{server.http_url}/v1/models/toy/traverse", json={"latents": [[0.0] * 4], "factors": ["pos_x"],
                                                                       "steps": 3})
    assert r.status_code == 200 and len(r.json()["images"]) == 3


def _toy_card() -> FactorCard:
    from fixtures.toy_model import TOY_CARD

    return TOY_CARD


# ------------------------------------------------------------------- the page
@pytest.fixture(scope="module")
def browser():
    """Headless Chromium driven by Selenium, as tests/serving/test_page_browser.py runs it."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver):
        pytest.fail("chromium and chromium-driver are missing: run `make browser` (make test installs them)")
    options = webdriver.ChromeOptions()
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1280,900",
                 "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1"):
        options.add_argument(flag)
    options.binary_location = chromium
    d = webdriver.Chrome(options=options, service=Service(driver))
    d.set_script_timeout(20)
    yield d
    d.quit()


def _wait(d, condition: str, what: str, timeout_s: float = 15.0):
    import time

    end = time.time() + timeout_s
    while time.time() < end:
        if got := d.execute_script(condition):
            return got
        time.sleep(0.05)
    state = d.execute_script("return [document.body.dataset.state, document.getElementById('status').textContent]")
    raise AssertionError(f"timed out waiting for {what}; page state {state}")


def _shown(d, img_id: str) -> np.ndarray:
    """The grey values of an <img> as the browser decoded it: (H, W) uint8."""
    w, h, data = d.execute_script(f"""
        const img = document.getElementById('{img_id}');
        const c = document.createElement('canvas');
        c.width = img.naturalWidth; c.height = img.naturalHeight;
        const ctx = c.getContext('2d'); ctx.drawImage(img, 0, 0);
        return [c.width, c.height, Array.from(ctx.getImageData(0, 0, c.width, c.height).data)];""")
    return np.asarray(data, np.uint8).reshape(h, w, 4)[:, :, 0]


def test_the_page_edits_an_uploaded_image_with_an_editors_dials_and_says_why_the_rest_is_absent(
        served, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    server, _, _ = served
    d = browser
    d.get(server.http_url + "/?model=stargan")
    _wait(d, "return document.body.dataset.state === 'ready' && document.body.dataset.kind === 'editor' "
             "&& document.getElementById('factor-scale')", "the editor's dials")
    note = d.find_element(By.ID, "kind-note")
    assert note.is_displayed() and "stargan/1 is an editor" in note.text and "no latent space" in note.text
    assert not d.find_element(By.ID, "raw-toggle").is_displayed()
    assert not d.find_element(By.CSS_SELECTOR, "figure.strip").is_displayed()
    assert not d.find_element(By.ID, "latents").is_displayed()

    x = np.random.default_rng(9).integers(0, 256, (64, 64), dtype=np.uint8)
    path = tmp_path / "source.png"
    Image.fromarray(x).save(path)
    d.find_element(By.ID, "upload").send_keys(str(path))
    _wait(d, "return document.body.dataset.renders >= 1 && document.body.dataset.state === 'ready'", "the first render")
    before = _shown(d, "edited")
    slider = d.find_element(By.ID, "factor-scale")
    for _ in range(15):
        slider.send_keys(Keys.LEFT)
    value = float(slider.get_attribute("value"))
    _wait(d, f"return document.body.dataset.state === 'ready' && "
             f"document.getElementById('edits').textContent === 'scale = {value:.2f}'", "the edit")
    after = _shown(d, "edited")
    png = path.read_bytes()
    with Client(server.address) as c:
        unedited = c.edit([png], [], output="uint8", model="stargan").images[0, :, :, 0]
        want = c.edit([png], [Edit(factor="scale", set_value=value)], output="uint8", model="stargan").images[0, :, :, 0]
    np.testing.assert_array_equal(before, unedited)
    np.testing.assert_array_equal(after, want)
    assert not np.array_equal(after, before), "moving the dial did not change the image"
    assert not d.find_element(By.ID, "strip").get_attribute("src")  # no traversal was asked for


def test_an_editors_graphs_run_on_onnx_runtime_only(served):
    """TensorRT's profiles, the torch runtime's CUDA graphs and the graph choice are built for one-input
    VAE graphs; an editor's graphs (the editor takes images and codes) are never handed to them."""
    from latentdial.serving.runtimes import available_runtimes

    server, _, _ = served
    m = server.handle.engine.served("stargan").model
    assert {g: r.name for g, r in m.runtimes.items()} == {"classifier": "onnxruntime-cpu", "editor": "onnxruntime-cpu"}
    for graph in ("classifier", "editor"):
        reasons = available_runtimes(m.manifest, graph)
        for name in ("tensorrt", "onnxruntime-tensorrt", "torch-cuda", "torch-cpu"):
            assert reasons[name] and "runs on ONNX Runtime" in reasons[name]
        assert reasons["onnxruntime-cpu"] is None
