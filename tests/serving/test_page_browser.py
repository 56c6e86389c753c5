"""The slider page in a real headless Chromium (Debian's chromium + chromium-driver, driven by Selenium).

`make test` installs both when missing (`make browser`); without them this test fails, it does not skip.
External hosts are unresolvable for the browser (--host-resolver-rules), and the performance log
must show no request outside this server.
"""

from __future__ import annotations

import io
import json
import shutil
import time

import numpy as np
import pytest
from fixtures.server import ServerThread, make_config
from fixtures.toy_model import build_toy_model
from PIL import Image

from latentdial.client import Client, Edit, latents

pytestmark = pytest.mark.integration

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1280,900",
         "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1")


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver):
        pytest.fail("chromium and chromium-driver are missing: run `make browser` (make test installs them)")
    options = webdriver.ChromeOptions()
    for flag in FLAGS:
        options.add_argument(flag)
    options.binary_location = chromium
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    d = webdriver.Chrome(options=options, service=Service(driver))
    d.set_script_timeout(20)
    yield d
    d.quit()


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("page")
    build_toy_model(root, "toy", "2", seed=2)
    build_toy_model(root, "toy", "10", seed=10)
    build_toy_model(root, "plain", "1", with_card=False, seed=5)
    (root / "default").write_text("toy\n")
    with ServerThread(make_config(root)) as server:
        yield server, root


def wait(d, condition, what: str, timeout_s: float = 15.0):
    end = time.time() + timeout_s
    while time.time() < end:
        got = d.execute_script(condition)
        if got:
            return got
        time.sleep(0.05)
    state = d.execute_script("return [document.body.dataset.state, document.getElementById('status').textContent]")
    raise AssertionError(f"timed out waiting for {what}; page state {state}")


def shown_pixels(d, img_id: str) -> np.ndarray:
    """The grey values of an <img> as the browser decoded it: (H, W) uint8."""
    rgba = d.execute_script(f"""
        const img = document.getElementById('{img_id}');
        const c = document.createElement('canvas');
        c.width = img.naturalWidth; c.height = img.naturalHeight;
        const ctx = c.getContext('2d'); ctx.drawImage(img, 0, 0);
        return [c.width, c.height, Array.from(ctx.getImageData(0, 0, c.width, c.height).data)];""")
    w, h, data = rgba
    return np.asarray(data, np.uint8).reshape(h, w, 4)[:, :, 0]


def outside_requests(d, base: str) -> list[str]:
    """URLs the browser requested since the last call that are not this server's (nor data:/blob:)."""
    urls = []
    for entry in d.get_log("performance"):
        msg = json.loads(entry["message"])["message"]
        if msg["method"] == "Network.requestWillBeSent":
            urls.append(msg["params"]["request"]["url"])
    assert any(u.startswith(base) for u in urls), f"the performance log saw no request to {base}: {urls[:5]}"
    return [u for u in urls if not u.startswith((base, "data:", "blob:"))]


def test_moving_a_slider_shows_exactly_what_edit_attributes_returns(browser, served, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    server, _ = served
    d = browser
    base = server.http_url
    d.get(base + "/")
    wait(d, "return document.body.dataset.state === 'ready' && document.getElementById('factor-pos_x')", "models")
    options = [o.text for o in d.find_elements(By.CSS_SELECTOR, "#model option")]
    assert options == ["plain / 1", "toy / 10 (default)", "toy / 2"]
    kinds = {e.get_attribute("id"): e.tag_name for e in d.find_elements(By.CSS_SELECTOR, "#factors input, #factors select")}
    assert kinds == {"factor-pos_x": "input", "factor-shape": "select", "factor-angle": "input"}

    x = np.random.default_rng(7).integers(0, 256, (8, 8), dtype=np.uint8)
    path = tmp_path / "source.png"
    Image.fromarray(x).save(path)
    d.find_element(By.ID, "upload").send_keys(str(path))
    wait(d, "return document.body.dataset.renders >= 1 && document.body.dataset.state === 'ready'", "reconstruction")
    before = shown_pixels(d, "edited")

    slider = d.find_element(By.ID, "factor-pos_x")
    for _ in range(15):
        slider.send_keys(Keys.RIGHT)
    value = float(slider.get_attribute("value"))
    wait(d, f"return document.body.dataset.state === 'ready' && "
            f"document.getElementById('edits').textContent === 'pos_x = {value:.2f}'", "the edit")
    wait(d, "return document.getElementById('strip').complete && document.getElementById('strip').naturalWidth > 0",
         "the traversal strip")
    after = shown_pixels(d, "edited")

    with Client(server.address) as c:
        buf = io.BytesIO()
        Image.fromarray(x).save(buf, format="PNG")
        z0 = c.encode([buf.getvalue()]).mean
        want = c.edit(latents(z0), [Edit(factor="pos_x", set_value=value)], output="uint8").images[0, :, :, 0]
        recon = c.edit(latents(z0), [], output="uint8").images[0, :, :, 0]
    np.testing.assert_array_equal(before, recon)
    np.testing.assert_array_equal(after, want)
    assert not np.array_equal(after, before), "moving the slider did not change the image"
    assert "pos_x" in d.find_element(By.ID, "strip-caption").text
    assert shown_pixels(d, "strip").shape == (8, 8 * 8 + 7 * 2)

    # a model without a factor card offers the raw latent sliders
    d.find_element(By.CSS_SELECTOR, "#model option[value='plain|1']").click()
    wait(d, "return document.getElementById('dim-3') && !document.getElementById('latents').hidden", "raw sliders")
    assert outside_requests(d, base) == []


def test_the_api_docs_render_offline(browser, served):
    server, _ = served
    d = browser
    d.get(server.http_url + "/docs")
    title = wait(d, "const t = document.querySelector('.swagger-ui .info .title'); return t && t.textContent",
                 "Swagger UI")
    assert title.startswith("latentdial")
    wait(d, "return document.querySelectorAll('.opblock').length > 10", "the operations")
    assert outside_requests(d, server.http_url) == []
