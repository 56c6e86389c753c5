"""What a built image must and must not contain: the container check's image audit.

``audit_image(podman, tag, host_bundle, revision)`` raises ``CheckFailed`` naming the
first problem, or returns a one-line summary. It checks:

- the image runs as a non-root user and carries the OCI labels source, version and revision
  (the revision being the one just built);
- its file system has no compiler on PATH, no torch, no pip, no build sources (``/src``),
  no pip or wheel caches;
- no layer holds a CA certificate that the host trusts but the image's own bundle does not
  (a TLS-intercepting proxy's CA, which reaches the build as a secret only). Every layer of
  ``podman save`` is read; layers found clean are remembered by digest, so a warm run
  scans only new layers.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import shutil
import tarfile
import tempfile
from pathlib import Path

from container_engine import Podman, expect

LABELS = ("org.opencontainers.image.source", "org.opencontainers.image.version", "org.opencontainers.image.revision")
PEM = re.compile(rb"-----BEGIN CERTIFICATE-----\s+(.+?)\s+-----END CERTIFICATE-----", re.DOTALL)

# Runs inside the image as root, so that it sees every directory; prints JSON findings.
PROBE = r"""
import importlib.util, json, os, shutil
found = {}
found["compilers"] = [c for c in ("gcc", "cc", "c++", "g++", "clang", "ld", "make") if shutil.which(c)]
found["modules"] = [m for m in ("torch", "pip", "setuptools") if importlib.util.find_spec(m)]
found["build_dirs"] = [d for d in ("/src", "/root/.cache/pip", "/root/.cache", "/tmp/pip-ephem-wheel-cache")
                       if os.path.exists(d)]
found["caches"] = []
for top in ("/opt", "/home", "/root", "/tmp", "/usr/local"):
    for dirpath, dirnames, filenames in os.walk(top):
        if os.path.basename(dirpath) in ("pip", "wheels", "http-v2") and ".cache" in dirpath:
            found["caches"].append(dirpath)
        found["caches"] += [os.path.join(dirpath, f) for f in filenames if f.endswith(".whl")]
print(json.dumps(found))
"""


def _certs(pem_text: bytes) -> dict[bytes, bytes]:
    """{DER bytes: one line of its PEM base64} for every certificate in a bundle."""
    out = {}
    for m in PEM.finditer(pem_text):
        lines = m.group(1).split()
        der = base64.b64decode(b"".join(lines))
        out[der] = lines[len(lines) // 2] if len(lines) > 2 else b"".join(lines)
    return out


def _markers(podman: Podman, tag: str, host_bundle: Path | None) -> list[bytes]:
    """Byte strings that would only be in a layer if a host-only CA certificate were in it."""
    if host_bundle is None:
        return []
    image_bundle = podman("run", "--rm", "--entrypoint", "cat", tag, "/etc/ssl/certs/ca-certificates.crt").stdout
    extra = set(_certs(host_bundle.read_bytes())) - set(_certs(image_bundle.encode()))
    host = _certs(host_bundle.read_bytes())
    # the PEM line (a bundle, a copied .crt) and a DER run (a keystore, a binary bundle)
    return [m for der in sorted(extra) for m in (host[der], der[64:128])]


def _layer_holds(blob: Path, markers: list[bytes]) -> str | None:
    """The path of the first file in a layer tarball that contains a marker, or None."""
    try:
        tar = tarfile.open(blob, "r:*")
    except tarfile.TarError:
        return None  # the config or manifest blob
    with tar:
        for member in tar:
            if not member.isfile():
                continue
            data = tar.extractfile(member).read()
            if any(m in data for m in markers):
                return member.name
    return None


def scan_layers(podman: Podman, tag: str, markers: list[bytes]) -> int:
    """Raise CheckFailed if a layer of ``tag`` holds a marker; returns the layers read now."""
    key = hashlib.sha256(b"".join(markers)).hexdigest()[:16]
    clean_file = podman.root / "audits" / f"clean-layers-{key}.txt"
    clean_file.parent.mkdir(parents=True, exist_ok=True)
    clean = set(clean_file.read_text().split()) if clean_file.exists() else set()
    layers = podman.inspect(tag)["RootFS"]["Layers"]
    if all(layer in clean for layer in layers):
        return 0
    out = Path(tempfile.mkdtemp(prefix="audit-", dir=podman.root / "tmp"))
    try:
        podman("save", "--format", "docker-dir", "--output", str(out / "image"), tag)
        scanned = 0
        for blob in sorted((out / "image").iterdir()):
            if blob.name in clean or blob.suffix in (".json",) or blob.name == "version":
                continue
            hit = _layer_holds(blob, markers)
            expect(hit is None, f"{tag}: a layer holds a CA certificate only the host trusts, in {hit}")
            clean.add(blob.name)
            clean.add(f"sha256:{blob.name}")
            scanned += 1
        clean_file.write_text("\n".join(sorted(clean)) + "\n")
        return scanned
    finally:
        shutil.rmtree(out, ignore_errors=True)


def audit_image(podman: Podman, tag: str, host_bundle: Path | None, revision: str) -> str:
    info = podman.inspect(tag)
    user = (info.get("Config") or {}).get("User") or ""
    expect(bool(user) and user.split(":")[0] not in ("root", "0"), f"{tag} runs as {user or 'root'}")
    labels = info.get("Labels") or {}
    missing = [k for k in LABELS if not labels.get(k)]
    expect(not missing, f"{tag} lacks the labels {missing}")
    expect(labels["org.opencontainers.image.revision"] == revision,
           f"{tag} is labelled revision {labels['org.opencontainers.image.revision']}, built {revision}")
    res = podman("run", "--rm", "--user", "0", "--entrypoint", "python", tag, "-c", PROBE)
    found = json.loads(res.stdout.strip().splitlines()[-1])
    bad = {k: v for k, v in found.items() if v}
    expect(not bad, f"{tag} contains what a runtime image must not: {bad}")
    markers = _markers(podman, tag, host_bundle)
    scanned = scan_layers(podman, tag, markers) if markers else 0
    ca = (f"{len(markers) // 2} host-only CA certificate(s) in none of its layers ({scanned} layer(s) read now)"
          if markers else "the host trusts no CA beyond the image's own bundle")
    return f"{tag}: user {user}, labels {', '.join(k.rsplit('.', 1)[1] for k in LABELS)}; no compilers, torch, pip, sources or caches; {ca}"
