"""The code version that runs and exported models record (latentdial.provenance)."""

from __future__ import annotations

import subprocess
from importlib.metadata import version
from pathlib import Path

from latentdial import provenance


def test_in_a_git_checkout_it_is_the_package_version_plus_git_describe():
    root = Path(provenance.__file__).resolve().parent
    describe = subprocess.run(["git", "-C", str(root), "describe", "--always", "--dirty", "--tags"],
                              capture_output=True, text=True, check=True).stdout.strip()
    assert provenance.code_version() == f"{version('latentdial')}+{describe}"


def test_without_git_it_is_the_package_version_alone(monkeypatch):
    def no_git(*args, **kwargs):
        raise FileNotFoundError("git")

    monkeypatch.setattr(provenance.subprocess, "run", no_git)
    assert provenance.code_version() == version("latentdial")
