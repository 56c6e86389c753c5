"""Where an artefact came from: the one code version string that runs and exports record."""

from __future__ import annotations

import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path


def code_version() -> str:
    """``<package version>+<git describe>`` of the source tree, e.g. ``0.1.0+v0.1-12-gabc1234-dirty``.

    Without a git checkout (an installed wheel) it is the package version alone, and
    ``unknown`` when even that is missing.
    """
    try:
        package = version("latentdial")
    except PackageNotFoundError:
        package = "unknown"
    try:
        out = subprocess.run(
            ["git", "-C", str(Path(__file__).resolve().parent), "describe", "--always", "--dirty", "--tags"],
            capture_output=True, text=True, timeout=5, check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return package
    return f"{package}+{out.stdout.strip()}"
