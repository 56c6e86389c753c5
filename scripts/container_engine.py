"""An isolated podman for the container check: prerequisites, its own storage and settings, the base image.

Everything podman keeps (images, containers, volumes, networks, events, temporary files)
lives under one working directory (``.cache/containers`` by default), configured through
its own ``storage.conf``, ``containers.conf`` and ``registries.conf``; the host's podman
state is never touched. The settings are the ones this kind of host needs (runc, cgroupfs,
a file events log, ulimits within the hard limits, netavark with DNS between containers).

No registry is pulled from: the base image is assembled from the Debian mirror with
``mmdebstrap`` (Debian bookworm, Python 3.11) and imported under ``BASE_IMAGE``; the
Dockerfiles take it through their ``PYTHON_IMAGE`` build argument, so the same files build
from ``python:3.11-slim-bookworm`` wherever a registry is reachable.
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

BASE_IMAGE = "localhost/latentdial-base:bookworm"
# Debian packages of the base: the interpreter, venv (the build stage makes one), `python`
# on PATH (as in the official image) and the Debian CA bundle.
BASE_PACKAGES = ("python3.11", "python3.11-venv", "python-is-python3", "ca-certificates")
BASE_SUITE = "bookworm"
# Documentation, manual pages and translations never reach the image.
BASE_EXCLUDES = ("/usr/share/doc/*", "/usr/share/man/*", "/usr/share/locale/*", "/usr/share/info/*")
RECIPE_LABEL = "org.latentdial.base.recipe"

# Debian package -> (the command or file that shows it is installed, why the check needs it).
# Installed with --no-install-recommends, so everything podman only recommends or suggests but
# the check uses is named here; docs/deployment.md lists the same table.
PREREQUISITES: dict[str, tuple[str, str]] = {
    "podman": ("podman", "builds, runs and composes the images"),
    "buildah": ("buildah", "podman build's engine"),
    "runc": ("runc", "the OCI runtime (crun refuses this host's hybrid cgroup layout)"),
    "mmdebstrap": ("mmdebstrap", "assembles the Debian base image from the package mirror, no registry"),
    "netavark": ("/usr/lib/podman/netavark", "container networks (build steps, compose's network)"),
    "aardvark-dns": ("/usr/lib/podman/aardvark-dns", "DNS between the composed containers"),
    "iptables": ("/usr/sbin/iptables", "netavark's firewall driver: without it every networked step fails"),
    "catatonit": ("/usr/libexec/podman/catatonit", "init for containers run with --init"),
}


class PrerequisiteError(RuntimeError):
    """A tool the check needs is missing and cannot be installed here."""


class CheckFailed(AssertionError):
    """One of the checks did not hold; the message says which and why."""


def expect(cond: bool, msg: str) -> None:
    """Raise CheckFailed(msg) unless ``cond`` (unlike ``assert``, never optimised away)."""
    if not cond:
        raise CheckFailed(msg)


def log(msg: str) -> None:
    print(f"[container-check] {msg}", flush=True)


def _present(probe: str) -> bool:
    return Path(probe).exists() if probe.startswith("/") else shutil.which(probe) is not None


def ensure_prerequisites(install: bool = True) -> None:
    """Install the missing Debian packages with apt-get (as root), or raise naming each missing one."""
    if os.geteuid() != 0:
        raise PrerequisiteError("missing prerequisite: root (the check runs rootful podman; run it as root)")
    missing = [pkg for pkg, (probe, _why) in PREREQUISITES.items() if not _present(probe)]
    if not missing:
        return
    names = ", ".join(missing)
    if not install:
        raise PrerequisiteError(f"missing prerequisite(s): {names} (apt-get install {' '.join(missing)})")
    if shutil.which("apt-get") is None:
        raise PrerequisiteError(f"missing prerequisite(s): {names}, and no apt-get to install them with")
    log(f"installing {names} with apt-get")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for cmd in (["apt-get", "update", "-qq"],
                ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing]):
        res = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        if res.returncode != 0:
            raise PrerequisiteError(f"missing prerequisite(s): {names}; `{' '.join(cmd)}` failed:\n{res.stderr[-2000:]}")
    still = [pkg for pkg, (probe, _why) in PREREQUISITES.items() if not _present(probe)]
    if still:
        raise PrerequisiteError(f"missing prerequisite(s) after apt-get install: {', '.join(still)}")


def _toml_list(items: list[str]) -> str:
    return "[" + ", ".join(json.dumps(i) for i in items) + "]"


def default_ulimits() -> list[str]:
    """nofile and nproc within this process's hard limits (no CAP_SYS_RESOURCE to raise them)."""
    out = []
    for name, which, cap in (("nofile", resource.RLIMIT_NOFILE, 1 << 20), ("nproc", resource.RLIMIT_NPROC, 32768)):
        hard = resource.getrlimit(which)[1]
        value = cap if hard == resource.RLIM_INFINITY else min(hard, cap)
        out.append(f"{name}={value}:{value}")
    return out


@dataclass
class Podman:
    """podman with its state and settings under ``root``; call it like the command line."""

    root: Path

    def __post_init__(self) -> None:
        self.root = self.root.resolve()
        conf = self.root / "conf"
        for sub in ("conf", "storage", "run", "tmp", "networks"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        (conf / "storage.conf").write_text(
            "[storage]\n"
            'driver = "overlay"\n'
            f'graphroot = "{self.root / "storage"}"\n'
            f'runroot = "{self.root / "run"}"\n'
        )
        (conf / "containers.conf").write_text(
            "[containers]\n"
            f"default_ulimits = {_toml_list(default_ulimits())}\n"
            'log_driver = "k8s-file"\n'
            "[engine]\n"
            'runtime = "runc"\n'
            'cgroup_manager = "cgroupfs"\n'
            'events_logger = "file"\n'
            f'events_logfile_path = "{self.root / "events.log"}"\n'
            f'tmp_dir = "{self.root / "tmp"}"\n'
            "[network]\n"
            'network_backend = "netavark"\n'
            f'network_config_dir = "{self.root / "networks"}"\n'
        )
        # No unqualified name resolves to a registry: every image here is built or imported.
        (conf / "registries.conf").write_text("unqualified-search-registries = []\n")
        self.env = dict(
            os.environ,
            CONTAINERS_STORAGE_CONF=str(conf / "storage.conf"),
            CONTAINERS_CONF=str(conf / "containers.conf"),
            CONTAINERS_REGISTRIES_CONF=str(conf / "registries.conf"),
            TMPDIR=str(self.root / "tmp"),
        )

    def command(self, *args: str) -> list[str]:
        return ["podman", *args]

    def __call__(self, *args: str, check: bool = True, timeout: float | None = 600,
                 quiet: bool = False) -> subprocess.CompletedProcess:
        res = subprocess.run(self.command(*args), env=self.env, capture_output=True, text=True,
                             timeout=timeout, check=False)
        if check and res.returncode != 0:
            raise RuntimeError(f"podman {' '.join(args)} exited {res.returncode}:\n{res.stderr[-4000:]}")
        if not quiet and res.returncode != 0:
            log(f"podman {args[0]}: exit {res.returncode}: {res.stderr.strip()[-500:]}")
        return res

    def stream(self, *args: str, nice: bool = True, timeout: float | None = None) -> None:
        """Run with output on the console (builds); ``nice`` lowers its CPU priority."""
        cmd = (["nice", "-n", "10"] if nice else []) + self.command(*args)
        res = subprocess.run(cmd, env=self.env, timeout=timeout, check=False,
                             stdout=sys.stdout, stderr=sys.stderr)
        if res.returncode != 0:
            raise RuntimeError(f"podman {' '.join(args[:3])} ... exited {res.returncode}")

    def image_exists(self, ref: str) -> bool:
        return self("image", "exists", ref, check=False, quiet=True).returncode == 0

    def inspect(self, ref: str, kind: str = "image") -> dict:
        return json.loads(self(kind, "inspect", ref).stdout)[0]


def base_recipe(mirror: str | None) -> str:
    """A digest of everything that decides the base image's contents."""
    spec = {"suite": BASE_SUITE, "packages": BASE_PACKAGES, "excludes": BASE_EXCLUDES, "mirror": mirror}
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


def ensure_base(podman: Podman, mirror: str | None = None) -> tuple[str, float]:
    """Build ``BASE_IMAGE`` from the Debian mirror unless the same recipe is already imported.

    Returns the image reference and the seconds spent (0 when cached).
    """
    recipe = base_recipe(mirror)
    if podman.image_exists(BASE_IMAGE):
        labels = podman.inspect(BASE_IMAGE).get("Labels") or {}
        if labels.get(RECIPE_LABEL) == recipe:
            log(f"base image {BASE_IMAGE} is cached (recipe {recipe})")
            return BASE_IMAGE, 0.0
    log(f"assembling {BASE_IMAGE} from the Debian mirror with mmdebstrap ({', '.join(BASE_PACKAGES)})")
    t0 = time.monotonic()
    tarball = podman.root / "tmp" / "base.tar"
    cmd = ["nice", "-n", "10", "mmdebstrap", "--quiet", "--variant=minbase",
           # merged /usr without the usrmerge package (which pulls in perl)
           "--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr",
           f"--include={','.join(BASE_PACKAGES)}",
           *[f"--dpkgopt=path-exclude={p}" for p in BASE_EXCLUDES],
           "--aptopt=Acquire::Retries 3",
           BASE_SUITE, str(tarball), *([mirror] if mirror else [])]
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise RuntimeError(f"mmdebstrap failed (exit {res.returncode}):\n{res.stderr[-4000:]}")
    changes = [
        "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "ENV LANG=C.UTF-8",
        'CMD ["python3"]',
        f"LABEL {RECIPE_LABEL}={recipe}",
        f"LABEL org.opencontainers.image.description=Debian {BASE_SUITE} minbase with Python 3.11 (mmdebstrap)",
    ]
    args = ["import", *[a for c in changes for a in ("--change", c)], str(tarball), BASE_IMAGE]
    podman(*args)
    tarball.unlink()
    took = time.monotonic() - t0
    log(f"base image {BASE_IMAGE} built in {took:.0f} s")
    return BASE_IMAGE, took
