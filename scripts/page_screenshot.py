"""A picture of the slider page editing one image by name, as a person would see it.

    python scripts/page_screenshot.py --repository models --model dsprites --image sprite.png \\
        --set shape=heart --set scale=0.8 --out docs/images/slider_page.png

Serves ``--repository`` on loopback ports (a real server), opens the page in Debian's headless
Chromium (Selenium, as the page's browser test does; `make browser` installs both), picks the
model, uploads ``--image``, turns each ``--set`` dial (a label for a categorical factor, a value
for the others) and saves a screenshot once the page shows the edit. Exits non-zero when a dial
is missing or the page does not reach the edit.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1280,1000",
         "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1")


def _wait(driver, condition: str, what: str, timeout_s: float = 30.0):
    end = time.time() + timeout_s
    while time.time() < end:
        got = driver.execute_script(condition)
        if got:
            return got
        time.sleep(0.05)
    raise SystemExit(f"page_screenshot: timed out waiting for {what}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repository", type=Path, default=REPO / "models")
    parser.add_argument("--model", required=True, help="model name (its latest version is picked)")
    parser.add_argument("--image", type=Path, required=True, help="the image to upload")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="FACTOR=VALUE")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)

    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    from latentdial.serving.config import ServerConfig
    from latentdial.serving.embedded import EmbeddedServer

    chromium, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver_path):
        raise SystemExit("page_screenshot: needs chromium and chromium-driver (make browser)")
    config = ServerConfig(repository=str(args.repository), host="127.0.0.1", port=0, http_port=0, metrics_port=0)
    options = webdriver.ChromeOptions()
    for flag in FLAGS:
        options.add_argument(flag)
    options.binary_location = chromium
    with EmbeddedServer(config, name="page-screenshot") as server, tempfile.TemporaryDirectory() as profile:
        options.add_argument(f"--user-data-dir={profile}")
        d = webdriver.Chrome(options=options, service=Service(driver_path))
        try:
            d.get(f"http://127.0.0.1:{server.handle.http.port}/")
            _wait(d, "return document.body.dataset.state === 'ready'", "the models")
            choices = [o for o in d.find_elements(By.CSS_SELECTOR, "#model option")
                       if o.get_attribute("value").split("|")[0] == args.model]
            if not choices:
                raise SystemExit(f"page_screenshot: no model {args.model!r} on the page")
            latest = max(choices, key=lambda o: int(o.get_attribute("value").split("|")[1]))
            latest.click()
            _wait(d, "return document.body.dataset.state === 'ready' && "
                     "document.querySelectorAll('#factors .dial').length > 0", "the dials")
            renders = int(d.execute_script("return Number(document.body.dataset.renders || 0)"))
            d.find_element(By.ID, "upload").send_keys(str(args.image.resolve()))
            _wait(d, f"return document.body.dataset.renders > {renders} && document.body.dataset.state === 'ready'",
                  "the reconstruction")
            for item in args.sets:
                name, _, value = item.partition("=")
                found = d.find_elements(By.ID, f"factor-{name}")
                if not found:
                    raise SystemExit(f"page_screenshot: the page has no dial {name!r}")
                control = found[0]
                renders = int(d.execute_script("return Number(document.body.dataset.renders || 0)"))
                if control.tag_name == "select":
                    Select(control).select_by_visible_text(value)
                else:
                    d.execute_script("arguments[0].value = arguments[1];"
                                     "arguments[0].dispatchEvent(new Event('input'));", control, value)
                _wait(d, f"return document.body.dataset.renders > {renders} && "
                         "document.body.dataset.state === 'ready'", f"the edit {item}")
            if args.sets:
                _wait(d, "const s = document.getElementById('strip'); return s.complete && s.naturalWidth > 0",
                      "the traversal strip")
            args.out.parent.mkdir(parents=True, exist_ok=True)
            d.save_screenshot(str(args.out))
        finally:
            d.quit()
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
