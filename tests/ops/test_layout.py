"""Packaging rules: serving never needs torch, and each stage lives where the layout says."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())

# Blocks `import torch` (and training/export) in a child interpreter, then imports every serving module.
_NO_TORCH_IMPORT = r"""
import importlib, pkgutil, sys
class Block:
    def find_spec(self, name, path=None, target=None):
        root = name.split(".")[0]
        if root in {"torch", "torchvision"} or name.startswith(("latentdial.training", "latentdial.export")):
            raise ImportError(f"serving imported {name}")
        return None
sys.meta_path.insert(0, Block())
import latentdial.serving, latentdial.client
skip = {"latentdial.serving.runtimes.torch_runtime"}  # GPU-host runtime, imports torch by design
for pkg in (latentdial.serving, latentdial.client):
    for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + "."):
        if m.name not in skip:
            importlib.import_module(m.name)
import latentdial.cli, latentdial.manifest, latentdial.factor_card
print("ok")
"""


def test_serve_extra_does_not_depend_on_torch():
    serve = PYPROJECT["project"]["optional-dependencies"]["serve"]
    core = PYPROJECT["project"]["dependencies"]
    assert not [d for d in serve + core if d.lower().startswith("torch")]


def test_serving_and_client_import_without_torch_or_training_code():
    out = subprocess.run(
        [sys.executable, "-c", _NO_TORCH_IMPORT], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().endswith("ok")


def test_every_package_directory_is_declared_in_pyproject():
    declared = set(PYPROJECT["tool"]["setuptools"]["packages"])
    mapping = PYPROJECT["tool"]["setuptools"]["package-dir"]
    found = set()
    for pkg, directory in mapping.items():
        for init in (ROOT / directory).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / directory)
            found.add(".".join([pkg, *rel.parts]) if rel.parts else pkg)
    # latentdial/ contains the mapped stages only through package-dir, not physically
    assert found - declared == set(), f"add these to [tool.setuptools] packages: {sorted(found - declared)}"


def test_cli_subcommands_resolve_to_modules_with_the_cli_contract():
    import importlib

    from latentdial.cli import COMMANDS

    for module, _help in COMMANDS.values():
        mod = importlib.import_module(module)
        assert callable(getattr(mod, "add_arguments", None)), f"{module} lacks add_arguments"
        assert callable(getattr(mod, "run", None)), f"{module} lacks run"


def test_the_ground_truth_datasets_serving_samples_from_import_without_torch():
    """The page's "sample from the data" (DataPlane.samples) imports training/data lazily; it must stay torch-free."""
    code = _NO_TORCH_IMPORT.split("import latentdial.serving")[0].replace(
        'name.startswith(("latentdial.training", "latentdial.export"))', 'name.startswith("latentdial.export")'
    ) + (
        "import numpy as np\n"
        "from latentdial.training.data import get_dataset\n"
        "x = get_dataset('dsprites').sample_observations(2, np.random.default_rng(0))\n"
        "assert x.shape == (2, 1, 64, 64), x.shape\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().endswith("ok")


# Who may import whom (docs/architecture.md, "Dependencies between stages"). Keys are the importing
# package; values the other packages, or single modules, it may import. Anything else is a violation.
_PACKAGES = ("latentdial.training", "latentdial.export", "latentdial.serving", "latentdial.client", "latentdial.v1")
_ALLOWED = {
    "latentdial.client": {"latentdial", "latentdial.v1"},
    # the page's "sample from the data" renders procedural datasets (numpy only, imported lazily)
    "latentdial.serving": {"latentdial", "latentdial.v1", "latentdial.training.data"},
    "latentdial.export": {"latentdial", "latentdial.v1", "latentdial.training"},
    # evaluation runs the exported graphs on the serving runtimes and edits through a real server
    "latentdial.training": {"latentdial", "latentdial.v1", "latentdial.client", "latentdial.serving.config",
                            "latentdial.serving.embedded", "latentdial.serving.runtimes"},
}


def _package(module: str) -> str:
    return next((p for p in _PACKAGES if module == p or module.startswith(p + ".")), "latentdial")


def _imports_between_stages() -> list[tuple[str, str]]:
    """(importing module, imported module) for every absolute latentdial import across packages."""
    import ast

    mapping = PYPROJECT["tool"]["setuptools"]["package-dir"]
    found = []
    for pkg, directory in mapping.items():
        if pkg == "latentdial":
            files = [f for f in (ROOT / directory).rglob("*.py") if not f.name.endswith(("_pb2.py", "_pb2_grpc.py"))]
        else:
            files = list((ROOT / directory).rglob("*.py"))
        for f in files:
            rel = f.relative_to(ROOT / directory).with_suffix("")
            me = ".".join([pkg, *rel.parts]).removesuffix(".__init__")
            for node in ast.walk(ast.parse(f.read_text())):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                    [node.module] if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 else []
                found += [(me, m) for m in names if m.startswith("latentdial") and _package(m) != _package(me)]
    return found


def test_stages_import_each_other_only_in_the_documented_direction():
    pairs = _imports_between_stages()
    assert any(src.startswith("latentdial.training") and dst.startswith("latentdial.serving") for src, dst in pairs)
    bad = []
    for src, dst in pairs:
        allowed = _ALLOWED.get(_package(src))
        if allowed is None:  # the core (contracts, cli dispatcher) imports no stage at module level
            bad.append((src, dst))
        elif not any(dst == a or dst.startswith(a + ".") for a in allowed if a != "latentdial") and \
                not (_package(dst) == "latentdial" and "latentdial" in allowed):
            bad.append((src, dst))
    assert bad == [], f"imports against the rule in docs/architecture.md: {bad}"
