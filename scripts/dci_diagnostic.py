"""Which factor holds DCI disentanglement down: the importance matrix, and DCI without each factor.

    python scripts/dci_diagnostic.py models/dsprites/5 [--num-train 10000 --num-test 5000]

DCI (Eastwood & Williams 2018) normalises every factor's importance column to sum 1,
so a factor that no dimension carries spreads its column over all of them and lowers
every dimension's disentanglement. This prints the (D, F) importance matrix of the
model's mean representation on procedural data and the disentanglement score
recomputed with each factor's column left out. It is a diagnostic, not a protocol:
the reported metric is always the full one (``latentdial evaluate``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model_dir", type=Path, help="model directory models/<name>/<version>")
    p.add_argument("--num-train", type=int, default=10_000, help="training points (default: the reference 10,000)")
    p.add_argument("--num-test", type=int, default=5_000, help="test points (default: the reference 5,000)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    from latentdial.training.evaluate import onnx_representation_fn, resolve_dataset
    from latentdial.training.metrics.dci import _dci, disentanglement
    from latentdial.training.metrics.utils import sample_points

    fn, manifest = onnx_representation_fn(args.model_dir)
    data = resolve_dataset(manifest.provenance["dataset"])
    points = sample_points(data, fn, np.random.default_rng(args.seed), num_train=args.num_train,
                           num_test=args.num_test)
    scores, importance = _dci(*points)

    names = list(data.factor_names)
    print(f"{manifest.name}/{manifest.version}: DCI disentanglement {scores['disentanglement']:.3f}, "
          f"completeness {scores['completeness']:.3f} ({args.num_train:,} / {args.num_test:,} points)")
    print("importance (rows: latent dims, columns: factors)")
    print("dim  " + " ".join(f"{n[:12]:>12}" for n in names))
    for d, row in enumerate(importance):
        print(f"{d:>3}  " + " ".join(f"{v:>12.2f}" for v in row))
    print("disentanglement without one factor's column:")
    for j, name in enumerate(names):
        keep = [k for k in range(len(names)) if k != j]
        print(f"  without {name:<16} {disentanglement(importance[:, keep]):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
