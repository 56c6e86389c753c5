"""Build the container images and run them for real: ``make container-check``.

    python scripts/container_check.py                  # everything below; exit 0 only if all passed
    python scripts/container_check.py --no-compose     # skip the compose stack
    python scripts/container_check.py --reset          # delete the engine's working directory first

With podman (no daemon) under ``.cache/containers`` (scripts/container_engine.py):

1. installs podman, buildah, runc, mmdebstrap, netavark, aardvark-dns, iptables and catatonit
   with apt-get if missing (as root; ``container_engine.PREREQUISITES`` says why each), or fails
   naming the missing one; podman-compose comes from the
   ``containers`` extra;
2. assembles the Debian base image with mmdebstrap (cached) and builds the CPU server image,
   the example app image and the Locust image from it (``PYTHON_IMAGE`` build argument; the
   host's CA bundle reaches pip as a build secret only);
3. checks each image: non-root, OCI labels, no compilers, torch, pip or build sources, and
   no layer holding a CA certificate that only the host trusts (a TLS-intercepting proxy's);
4. starts the server with its ports published on 127.0.0.1 only, waits for the image's own
   HEALTHCHECK and for gRPC health from the host, and times it;
5. runs the example app container (edits a factor; the output files are checked), a short
   headless Locust container (zero failures), a second server with another model repository
   mounted read-only (only that repository is served), and SIGTERM under load (exit 0, every
   request the server accepted answered);
6. brings the compose file's default profile up with podman-compose (server, app, Locust),
   drives it, and tears it down; parses every profile;
7. removes every container, network, volume and temporary directory it made, also on
   failure or interruption, and prints the image sizes and the time to SERVING.

Images stay in the engine's storage as the build cache, so a second run is fast.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from container_engine import (  # noqa: E402
    CheckFailed,
    Podman,
    PrerequisiteError,
    ensure_base,
    ensure_prerequisites,
    expect,
    log,
)
from image_audit import audit_image  # noqa: E402

SERVER, APP, LOCUST = "latentdial:cpu", "latentdial-example-app:latest", "latentdial-loadtest:latest"
IMAGES = {  # tag -> Dockerfile
    SERVER: "docker/Dockerfile.cpu",
    APP: "examples/app/Dockerfile",
    LOCUST: "loadtest/Dockerfile",
}
SIZE_TARGET_MB = {SERVER: 350}
HEALTH_TIMEOUT_S = 60.0
# Free space the check needs where its engine keeps its storage: a run from an empty working
# directory took 2.4 GB at its peak (base image, three builds and their temporary layer copies;
# measured with df once a second on the 2-core CI machine), so 3 GiB leaves a little room.
MIN_FREE_GIB = 3.0
# How a server that is shutting down turns away a call it never ran.
REFUSED = ("UNAVAILABLE", "CANCELLED")


def disk_shortfall(workdir: Path, min_free_gib: float, reclaimed: int = 0) -> str | None:
    """Why the disk under ``workdir`` is too full for a build, or None if it has ``min_free_gib``.

    ``reclaimed``: bytes that will be freed on that disk before the build (``--reset``).
    """
    probe = workdir
    while not probe.exists():
        probe = probe.parent
    free_gib = shutil.disk_usage(probe).free / 2**30
    after_gib = free_gib + reclaimed / 2**30
    if after_gib >= min_free_gib:
        return None
    reset = f" ({after_gib:.1f} GiB after --reset)" if reclaimed else ""
    return (f"{free_gib:.1f} GiB free on the disk under {workdir}{reset}, and a build needs about "
            f"{min_free_gib:.1f} GiB; free some space (old clones, /tmp/pytest-of-*) or point --workdir "
            "(CONTAINER_CHECK_DIR) elsewhere")


def bytes_on_disk(directory: Path) -> int:
    """Bytes that deleting ``directory`` would surely free on its own disk: files on other disks and
    files with other hard links (which may outlive the deletion) are not counted."""
    if not directory.is_dir():
        return 0
    device, total = directory.stat().st_dev, 0
    for root, dirs, files in os.walk(directory):
        for name in files:
            with contextlib.suppress(OSError):
                st = os.lstat(os.path.join(root, name))
                if st.st_dev == device and st.st_nlink == 1:
                    total += st.st_blocks * 512
        dirs[:] = [d for d in dirs if _on_device(os.path.join(root, d), device)]
    return total


def _on_device(path: str, device: int) -> bool:
    try:
        return os.lstat(path).st_dev == device
    except OSError:
        return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def git(*args: str) -> str:
    res = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False)
    return res.stdout.strip() if res.returncode == 0 else ""


def version() -> str:
    m = re.search(r'^version = "([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.MULTILINE)
    return m.group(1) if m else "unknown"


def revision() -> str:
    rev = git("rev-parse", "HEAD") or "unknown"
    return rev + ("-dirty" if git("status", "--porcelain", "--untracked-files=no") else "")


def source_url() -> str:
    """The git remote's URL, or the clone itself when it has none."""
    return git("remote", "get-url", "origin") or ROOT.as_uri()


def host_ca_bundle() -> Path | None:
    for candidate in (os.environ.get("SSL_CERT_FILE"), "/etc/ssl/certs/ca-certificates.crt"):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


@dataclass
class Run:
    """What this run made (removed at the end) and what it measured (printed at the end)."""

    podman: Podman
    base: str = ""
    tag: str = field(default_factory=lambda: f"ldcheck{os.getpid()}")
    containers: list[str] = field(default_factory=list)
    networks: list[str] = field(default_factory=list)
    tempdirs: list[Path] = field(default_factory=list)
    finalizers: list[Callable[[], None]] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    def tempdir(self, name: str, owner_uid: int | None = None) -> Path:
        d = Path(tempfile.mkdtemp(prefix=f"{self.tag}-{name}-", dir=self.podman.root / "tmp"))
        self.tempdirs.append(d)
        if owner_uid is not None:
            os.chown(d, owner_uid, owner_uid)
        return d

    def timed(self, name: str, t0: float) -> float:
        self.timings[name] = time.monotonic() - t0
        return self.timings[name]

    def cleanup(self) -> None:
        for fn in reversed(self.finalizers):
            try:
                fn()
            except Exception as e:  # keep cleaning up
                log(f"cleanup step failed: {e}")
        if self.containers:
            self.podman("rm", "--force", "--ignore", "--time", "5", *self.containers, check=False, quiet=True)
        # Anything labelled with this run's tag, in case a name was never recorded.
        left = self.podman("ps", "--all", "--quiet", "--filter", f"label=org.latentdial.check={self.tag}",
                           check=False, quiet=True).stdout.split()
        if left:
            self.podman("rm", "--force", "--time", "5", *left, check=False, quiet=True)
        for net in self.networks:
            self.podman("network", "rm", "--force", net, check=False, quiet=True)
        for d in self.tempdirs:
            shutil.rmtree(d, ignore_errors=True)
        log(f"cleaned up: {len(self.containers)} container(s), {len(self.networks)} network(s), "
            f"{len(self.tempdirs)} temporary directory(ies)")


# ---------------------------------------------------------------------------- build --


def build_images(run: Run, base: str) -> None:
    ca = host_ca_bundle()
    common = ["build", "--format", "docker", "--pull=never", "--layers",
              "--build-arg", f"PYTHON_IMAGE={base}",
              "--build-arg", f"VERSION={version()}",
              "--build-arg", f"REVISION={revision()}",
              "--build-arg", f"SOURCE={source_url()}"]
    if ca is not None:
        common += ["--secret", f"id=ca,src={ca}"]
    for tag, dockerfile in IMAGES.items():
        t0 = time.monotonic()
        log(f"building {tag} from {dockerfile}")
        run.podman.stream(*common, "--file", str(ROOT / dockerfile), "--tag", tag, str(ROOT))
        log(f"built {tag} in {run.timed(f'build {tag}', t0):.0f} s")


def image_sizes(run: Run) -> dict[str, float]:
    return {tag: run.podman.inspect(tag)["Size"] / 1e6 for tag in [*IMAGES, run.base]}


# --------------------------------------------------------------------------- server --


def health_from_host(address: str, timeout_s: float = 2.0) -> str:
    """The server's overall health status name as seen from the host ("SERVING", ...)."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(address) as ch:
        try:
            reply = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=timeout_s)
        except grpc.RpcError as e:
            return e.code().name
    return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)


def wait_healthy(run: Run, container: str, timeout_s: float = HEALTH_TIMEOUT_S) -> float:
    """Run the image's own HEALTHCHECK until it passes; seconds waited.

    podman 4.3 schedules health checks through systemd timers, which this host lacks, so the
    check runs them itself (``podman healthcheck run`` executes the image's HEALTHCHECK).
    """
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        if run.podman("healthcheck", "run", container, check=False, quiet=True).returncode == 0:
            return time.monotonic() - t0
        state = run.podman.inspect(container, "container")["State"]
        expect(state["Running"], f"{container} exited ({state.get('ExitCode')}) before it was healthy:\n"
               + run.podman("logs", "--tail", "30", container, check=False).stderr)
        time.sleep(0.2)
    raise CheckFailed(f"{container} was not healthy within {timeout_s:.0f} s")


def http_ready(url: str) -> int:
    """HTTP status of the OIP readiness endpoint (0 when nothing answers)."""
    try:
        with urllib.request.urlopen(url + "/v2/health/ready", timeout=2) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return 0


@dataclass
class Server:
    name: str
    grpc: str  # host:port of gRPC on the host
    http: str  # base URL of the HTTP front door on the host
    healthy_s: float  # start to the image's HEALTHCHECK passing
    serving_s: float  # start to SERVING (gRPC) and ready (HTTP) from the host


def check_docs_page(http_url: str) -> int:
    """/docs answers and every Swagger UI file it links answers with a body (the image prunes the
    package's unused files); the number of files fetched."""
    with urllib.request.urlopen(http_url + "/docs", timeout=10) as r:
        expect(r.status == 200, f"/docs answered {r.status}")
        page = r.read().decode()
    linked = sorted(set(re.findall(r"""["'](/static/swagger/[^"']+)["']""", page)))
    expect(any(u.endswith("swagger-ui-bundle.js") for u in linked), f"/docs links no swagger-ui-bundle.js: {linked}")
    for url in linked:
        with urllib.request.urlopen(http_url + url, timeout=10) as r:
            expect(r.status == 200 and len(r.read()) > 0, f"{url}, linked from /docs, answered {r.status} or nothing")
    return len(linked)


def start_server(run: Run, name: str, network: str, *extra: str) -> Server:
    """Start the CPU image with every port published on 127.0.0.1 only; wait until it serves."""
    port, http, metrics = free_port(), free_port(), free_port()
    t0 = time.monotonic()
    run.podman("run", "--detach", "--name", name, "--label", f"org.latentdial.check={run.tag}",
               "--network", network, "--network-alias", "latentdial",
               "--publish", f"127.0.0.1:{port}:50051", "--publish", f"127.0.0.1:{http}:8000",
               "--publish", f"127.0.0.1:{metrics}:9090", *extra, SERVER)
    run.containers.append(name)
    healthy = wait_healthy(run, name)
    server = Server(name, f"127.0.0.1:{port}", f"http://127.0.0.1:{http}", healthy, 0.0)
    wait_serving(server.grpc, server.http, t0)
    server.serving_s = time.monotonic() - t0
    ports = run.podman("port", name).stdout.split("\n")
    bound = [p.split("->")[1].strip() for p in ports if "->" in p]
    expect(len(bound) == 3 and all(b.startswith("127.0.0.1:") for b in bound),
           f"{name} publishes {bound}; expected three ports on 127.0.0.1 only")
    return server


def wait_serving(grpc_address: str, http_url: str, t0: float) -> None:
    """gRPC health SERVING and HTTP readiness 200, both from the host."""
    while True:
        status, code = health_from_host(grpc_address), http_ready(http_url)
        if status == "SERVING" and code == 200:
            return
        expect(time.monotonic() - t0 < HEALTH_TIMEOUT_S,
               f"from the host: gRPC {grpc_address} says {status}, {http_url}/v2/health/ready says {code}")
        time.sleep(0.1)


# ----------------------------------------------------------------------- the checks --


def newest_versions(repository: Path) -> list[str]:
    """``name/version`` of the newest version of each model in ``repository``, in the server's own
    version order (``version_key``): what the images carry (.dockerignore leaves the older ones out)."""
    from latentdial.manifest import iter_model_dirs
    from latentdial.serving.repository import version_key

    newest: dict[str, str] = {}
    for name, version, _ in iter_model_dirs(repository):
        if name not in newest or version_key(version) > version_key(newest[name]):
            newest[name] = version
    return sorted(f"{n}/{v}" for n, v in newest.items())


def check_baked_models(listed: dict) -> str:
    """CheckFailed unless the baked-in server (``/v1/models``'s answer) serves the newest version of
    every model in ``models/`` and no version failed to load: the image leaves the torch programs
    (``*.pt2``) out, and a torch-less server must not ask for them."""
    states = {f"{m['name']}/{v['version']}": (v["state"], v["reason"])
              for m in listed["models"] for v in m["version_status"]}
    expected = newest_versions(ROOT / "models")
    failed = {ref: reason for ref, (state, reason) in states.items() if state != "ready"}
    expect(not failed, f"the image's server failed to load {failed}")
    expect(sorted(states) == expected, f"the image's server serves {sorted(states)}; expected {expected}")
    return f"the image serves the newest version of each shipped model, all ready: {', '.join(expected)}"


def check_app(run: Run, network: str) -> None:
    out = run.tempdir("app", owner_uid=10001)
    run.podman("run", "--rm", "--label", f"org.latentdial.check={run.tag}", "--network", network,
               "--volume", f"{out}:/output", "--env", "LATENTDIAL_ADDRESS=latentdial:50051",
               "--env", "EDIT_FACTOR=scale", "--env", "EDIT_VALUE=0.8", APP)
    verify_app_output(out, "scale", 0.8)
    log(f"example app set scale = 0.8: {out.name}/edit.json and the three PNGs check out")


def verify_app_output(out: Path, factor: str, value: float) -> None:
    """The app's files: a real edit of ``factor`` and only of its latent dimensions."""
    import numpy as np
    from PIL import Image

    record = json.loads((out / "edit.json").read_text())
    expect(record["edit"]["factor"] == factor and record["edit"]["value"] == value, f"edit.json: {record['edit']}")
    dims = record["edit"]["dimensions"]
    before, after = np.array(record["latents_before"]), np.array(record["latents_after"])
    others = [i for i in range(len(before)) if i not in dims]
    expect(len(dims) > 0 and not np.allclose(before[dims], after[dims]), f"the {factor} latents did not move: {record}")
    expect(np.allclose(before[others], after[others], atol=1e-3), f"other latents moved: {record}")
    original, edited = (np.asarray(Image.open(out / n)) for n in ("original.png", "edited.png"))
    expect(original.shape == edited.shape == (64, 64), f"image shapes {original.shape}, {edited.shape}")
    expect(not np.array_equal(original, edited), "edited.png equals original.png")
    expect(Image.open(out / "comparison.png").size == ((2 * 64 + 4) * 4, 64 * 4), "comparison.png size")


def check_locust(run: Run, network: str, seconds: int) -> None:
    out = run.tempdir("locust", owner_uid=10001)
    res = run.podman("run", "--rm", "--label", f"org.latentdial.check={run.tag}", "--network", network,
                     "--volume", f"{out}:/out", "--env", "LOADTEST_SUMMARY_JSON=/out/summary.json", LOCUST,
                     "-f", "/opt/loadtest/locustfile.py", "--headless", "--users", "4", "--spawn-rate", "4",
                     "--run-time", f"{seconds}s", "--host", "latentdial:50051", "--only-summary",
                     check=False, timeout=seconds + 120)
    expect(res.returncode == 0, f"Locust exited {res.returncode}:\n{res.stderr[-3000:]}")
    rows = json.loads((out / "summary.json").read_text())["rows"]
    agg = next(r for r in rows if r["name"] == "Aggregated")
    expect(agg["requests"] > 0 and agg["failures"] == 0, f"Locust: {agg}")
    log(f"Locust container: {agg['requests']} requests in {seconds} s, 0 failures, p99 {agg['p99_ms']:.0f} ms")


def check_mounted_repository(run: Run, network: str) -> None:
    """A read-only volume on /models replaces the baked-in repository."""
    repo = run.tempdir("repo")
    shutil.copytree(ROOT / "models" / "dsprites_tcvae", repo / "dsprites_tcvae")
    for p in [repo, *repo.rglob("*")]:
        p.chmod(0o755 if p.is_dir() else 0o644)
    name = f"{run.tag}-mounted"
    address = start_server(run, name, network, "--volume", f"{repo}:/models:ro").grpc
    mounts = run.podman.inspect(name, "container")["Mounts"]
    expect(any(m["Destination"] == "/models" and not m["RW"] for m in mounts), f"/models is not read-only: {mounts}")
    from latentdial.client import Client

    with Client(address, timeout_s=10) as c:
        served = sorted(f"{m.name}/{v}" for m in c.list_models() for v in m.versions)
    expect(served == ["dsprites_tcvae/2"], f"with another repository mounted the server lists {served}")
    run.podman("rm", "--force", "--time", "5", name)
    run.containers.remove(name)
    log("a repository mounted read-only on /models is what the server serves: dsprites_tcvae/2 only")


def check_sigterm_under_load(run: Run, container: str, address: str, workers: int = 8,
                             load_s: float = 2.0, margin_s: float = 0.25) -> None:
    """SIGTERM while callers keep the server busy: exit 0, every accepted call answered.

    Each caller loops Decode (32 latents of the default model) on its own connection until the server stops. Every
    call that began before the signal (less ``margin_s`` for the request to reach the server)
    must be answered. A call that began after it may be refused: UNAVAILABLE from the server,
    or CANCELLED when it reached gRPC's core but no handler had taken it yet as the server shut
    down (it never ran). Any other status is a lost request.
    """
    import numpy as np

    from latentdial.client import Client, LatentDialError

    with Client(address, timeout_s=10) as c:
        latent_dim = c.model_info().latent_dim  # the default model's, whichever is shipped
    z = np.random.default_rng(0).standard_normal((32, latent_dim)).astype(np.float32)
    calls: list[tuple[float, float, str]] = []  # (start, end, status)
    lock, stop = threading.Lock(), threading.Event()

    def caller() -> None:
        with Client(address, retries=0, timeout_s=30) as c:
            while not stop.is_set():
                t0 = time.monotonic()
                try:
                    c.decode(z)
                    status = "OK"
                except LatentDialError as e:
                    status = e.code if e.code in REFUSED else f"{e.code}: {e}"
                with lock:
                    calls.append((t0, time.monotonic(), status))
                if status != "OK":
                    return

    threads = [threading.Thread(target=caller, daemon=True) for _ in range(workers)]
    for t in threads:
        t.start()
    time.sleep(load_s)
    t_signal = time.monotonic()
    run.podman("kill", "--signal", "TERM", container)
    code = int(run.podman("wait", container, timeout=60).stdout.strip().splitlines()[-1])
    stop.set()
    for t in threads:
        t.join(35)
    logs = run.podman("logs", container, check=False).stderr
    expect(code == 0, f"{container} exited {code} after SIGTERM:\n{logs[-2000:]}")
    expect("draining" in logs, "the server did not log its drain")
    ok = [c for c in calls if c[2] == "OK"]
    in_flight = [c for c in ok if c[0] < t_signal < c[1]]
    lost = [c for c in calls if c[2] != "OK" and (c[0] < t_signal - margin_s or c[2] not in REFUSED)]
    expect(not lost, "requests lost during the drain (start and end in s after SIGTERM, status): "
           + str([(round(a - t_signal, 3), round(b - t_signal, 3), s) for a, b, s in lost[:5]]))
    expect(len(in_flight) > 0, "no call was in flight when SIGTERM arrived; the drain was not under load")
    refused = {code: sum(c[2] == code for c in calls) for code in REFUSED}
    log(f"SIGTERM under load: exit 0; {len(ok)} calls answered ({len(in_flight)} in flight at the signal), "
        f"refused after the signal: {refused}; none lost")


# -------------------------------------------------------------------------- compose --


def compose_command(run: Run, project: str, env: dict[str, str]) -> Callable[..., subprocess.CompletedProcess]:
    exe = shutil.which("podman-compose", path=str(Path(sys.executable).parent)) or shutil.which("podman-compose")
    if exe is None:
        raise PrerequisiteError("missing prerequisite: podman-compose (pip install -e '.[containers]')")
    full_env = dict(run.podman.env, **env)

    def compose(*args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
        cmd = [exe, "--project-name", project, "--file", str(ROOT / "docker-compose.yml"), *args]
        res = subprocess.run(cmd, cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=timeout, check=False)
        if check and res.returncode != 0:
            raise CheckFailed(f"podman-compose {' '.join(args)} exited {res.returncode}:\n{res.stdout[-2000:]}{res.stderr[-3000:]}")
        return res

    return compose


def check_compose(run: Run) -> None:
    """The default profile for real: server, app and Locust up, driven, torn down."""
    project = f"{run.tag}c"
    grpc_port, http_port, metrics_port, locust_port = free_port(), free_port(), free_port(), free_port()
    compose = compose_command(run, project, {
        "LATENTDIAL_GRPC_PORT": str(grpc_port), "LATENTDIAL_HTTP_HOST_PORT": str(http_port),
        "LATENTDIAL_METRICS_HOST_PORT": str(metrics_port),
        "LATENTDIAL_LOCUST_PORT": str(locust_port), "PYTHON_IMAGE": run.base,
    })
    profiles = compose("--profile", "gpu", "--profile", "scaleout", "config").stdout
    for service in ("latentdial-gpu:", "replica:", "envoy:"):
        expect(service in profiles, f"podman-compose config lost {service}")

    run.finalizers.append(lambda: compose("down", "--volumes", "--timeout", "15", check=False, timeout=120))
    t0 = time.monotonic()
    # podman before 4.6 cannot wait for a health condition, so podman-compose ignores
    # `condition: service_healthy`; the dependency is honoured here instead.
    compose("up", "--detach", "--no-build", "latentdial")
    server = f"{project}_latentdial_1"
    wait_healthy(run, server)
    wait_serving(f"127.0.0.1:{grpc_port}", f"http://127.0.0.1:{http_port}", t0)
    compose("up", "--detach", "--no-build")
    app = f"{project}_app_1"
    code = int(run.podman("wait", app, timeout=120).stdout.strip().splitlines()[-1])
    expect(code == 0, f"compose app exited {code}:\n{run.podman('logs', app, check=False).stderr[-2000:]}")
    out = run.tempdir("compose-app")
    run.podman("cp", f"{app}:/output/.", str(out))
    verify_app_output(out, "scale", 0.8)

    locust = f"http://127.0.0.1:{locust_port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(locust + "/", timeout=2).read()
            break
        except OSError:
            expect(time.monotonic() < deadline, "the Locust web UI did not come up")
            time.sleep(0.5)
    form = urllib.parse.urlencode({"user_count": 2, "spawn_rate": 2, "host": "latentdial:50051"}).encode()
    urllib.request.urlopen(locust + "/swarm", data=form, timeout=10).read()
    time.sleep(8)
    stats = json.loads(urllib.request.urlopen(locust + "/stats/requests", timeout=10).read())
    urllib.request.urlopen(locust + "/stop", data=b"", timeout=10).read()
    total = next(s for s in stats["stats"] if s["name"] == "Aggregated")
    expect(total["num_requests"] > 0 and total["num_failures"] == 0, f"compose Locust: {total}")
    run.timed("compose up, driven", t0)

    t1 = time.monotonic()
    compose("down", "--volumes", "--timeout", "15", timeout=120)
    left = run.podman("ps", "--all", "--quiet", "--filter", f"label=io.podman.compose.project={project}").stdout.split()
    expect(not left, f"compose down left containers: {left}")
    run.timed("compose down", t1)
    log(f"compose default profile: server healthy, app edited scale, Locust UI drove "
        f"{total['num_requests']} requests with 0 failures; down removed everything")


# ----------------------------------------------------------------------------- main --


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workdir", type=Path, default=Path(os.environ.get("CONTAINER_CHECK_DIR", ROOT / ".cache" / "containers")),
                   help="podman's storage and settings (default .cache/containers)")
    p.add_argument("--locust-seconds", type=int, default=10)
    p.add_argument("--no-compose", action="store_true", help="skip the compose stack")
    p.add_argument("--reset", action="store_true", help="delete the working directory (all cached images) first")
    p.add_argument("--min-free-gib", type=float, default=MIN_FREE_GIB,
                   help=f"refuse to start with less free disk than this under --workdir (default {MIN_FREE_GIB})")
    args = p.parse_args(argv)
    short = disk_shortfall(args.workdir, args.min_free_gib, bytes_on_disk(args.workdir) if args.reset else 0)
    if short:
        log(f"FAILED: {short}")
        return 2

    def interrupted(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, interrupted)

    t_start = time.monotonic()
    try:
        ensure_prerequisites()
    except PrerequisiteError as e:
        log(f"FAILED: {e}")
        return 2
    podman = Podman(args.workdir)
    if args.reset:
        podman("system", "reset", "--force", check=False)
        podman = Podman(args.workdir)
    run = Run(podman)
    try:
        t0 = time.monotonic()
        run.base, took = ensure_base(podman)
        run.timings["base image"] = took
        build_images(run, run.base)
        run.timed("base + builds", t0)

        t0 = time.monotonic()
        for tag in IMAGES:
            log(audit_image(podman, tag, host_ca_bundle(), revision()))
        run.timed("image audits", t0)

        network = f"{run.tag}-net"
        podman("network", "create", "--label", f"org.latentdial.check={run.tag}", network)
        run.networks.append(network)
        server = f"{run.tag}-server"
        srv = start_server(run, server, network)
        run.timings["server: start to HEALTHCHECK pass"] = srv.healthy_s
        run.timings["server: start to SERVING from the host"] = srv.serving_s
        with urllib.request.urlopen(srv.http + "/v1/models", timeout=10) as r:
            listed = json.loads(r.read())
        log(f"server {SERVER}: gRPC {srv.grpc}, HTTP {srv.http} ({len(str(listed))} bytes of /v1/models); "
            f"HEALTHCHECK passed after {srv.healthy_s:.1f} s, SERVING (gRPC) and ready (HTTP) from the host "
            f"after {srv.serving_s:.1f} s")
        log(f"/docs and the {check_docs_page(srv.http)} Swagger UI files it links answer")
        log(check_baked_models(listed))

        t0 = time.monotonic()
        check_app(run, network)
        check_locust(run, network, args.locust_seconds)
        check_mounted_repository(run, network)
        check_sigterm_under_load(run, server, srv.grpc)
        run.timed("app, Locust, mounted repository, SIGTERM", t0)
        if not args.no_compose:
            check_compose(run)
        sizes = image_sizes(run)
    except (CheckFailed, PrerequisiteError, RuntimeError, subprocess.TimeoutExpired) as e:
        log(f"FAILED: {e}")
        return 1
    except KeyboardInterrupt as e:
        log(f"interrupted ({e}); cleaning up")
        return 130
    except Exception:
        log("FAILED with an unexpected error:")
        traceback.print_exc()
        return 1
    finally:
        run.cleanup()

    print("\nimage sizes (uncompressed, as podman reports them):")
    for tag, mb in sizes.items():
        target = SIZE_TARGET_MB.get(tag)
        verdict = "" if target is None else (f"  (target <= {target} MB: {'met' if mb <= target else 'MISSED'})")
        print(f"  {tag:<40} {mb:7.1f} MB{verdict}")
    print("timings:")
    for name, s in run.timings.items():
        print(f"  {name:<45} {s:7.1f} s")
    total = time.monotonic() - t_start
    print(f"container check passed in {total:.0f} s (load average {os.getloadavg()[0]:.2f})")
    over = [t for t, mb in sizes.items() if mb > SIZE_TARGET_MB.get(t, float("inf"))]
    if over:
        log(f"size target missed by {', '.join(over)}; see `podman history` in docs/deployment.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
