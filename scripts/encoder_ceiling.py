"""How well can the encoder read new images from N labelled ones alone? The few-label ceiling.

    python scripts/encoder_ceiling.py --labels 1000 --steps 3000 [--views] [--threads 2]

Trains only the conv64 encoder of the semi-supervised dSprites recipe on the supervised loss of
N labelled images (no decoder, no unlabelled images), optionally with the label-aware views of
the few-label recipe (``configs/few_labels/dsprites.toml``: shift, quarter turns, mirrors, the
orientation turning and the place moving with the image). At four points it reads 3,000 fresh renders: each factor's named dims
snapped to the nearest code, judged against the truth with the attribute reader's edit
tolerances (``EDIT_TOLERANCE``). It is what the labels alone can teach; a model whose encoder
reads worse inside the VAE loses to reconstruction what the labels taught
(``scripts/readback_split.py``'s "encoder" column measures that on an exported model).
A diagnostic: the published few-label figures are ``latentdial evaluate-edits``'.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

#: The recipe whose label-aware views ``--views`` takes (objective.views, views_angle, views_position).
RECIPE = Path(__file__).resolve().parents[1] / "configs" / "few_labels" / "dsprites.toml"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--labels", type=int, default=1000, help="labelled images (default 1000)")
    p.add_argument("--steps", type=int, default=3000, help="steps of 64 labelled images (default 3000)")
    p.add_argument("--views", action="store_true", help="also train on label-aware views of them")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    import torch

    from latentdial.training.config import load_config
    from latentdial.training.data import get_dataset
    from latentdial.training.edit_success import reading_of
    from latentdial.training.model import ModelConfig, build_model
    from latentdial.training.objectives import SemiSupervisedConfig, SemiSupervisedVAE
    from latentdial.training.objectives.base import Inputs
    from latentdial.training.reader import EDIT_TOLERANCE, agreement

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    data = get_dataset("dsprites")
    names = tuple(data.factor_names)
    config = SemiSupervisedConfig()
    if args.views:
        recipe = load_config(RECIPE).objective
        config = SemiSupervisedConfig(views=recipe.views, views_angle=recipe.views_angle,
                                      views_position=recipe.views_position)
    objective = SemiSupervisedVAE(build_model(ModelConfig(latent_dim=6)), config)
    objective.attach_dataset(data)
    encoder = objective.model.encoder
    factors, images = data.sample(args.labels, np.random.default_rng([args.seed, 1]))
    pool_x, pool_y = torch.from_numpy(images).float(), torch.from_numpy(factors)
    test_y, test_x = data.sample(3000, np.random.default_rng([args.seed, 2]))
    optimizer = torch.optim.Adam(encoder.parameters(), lr=5e-4)

    def read() -> dict[str, float]:
        with torch.no_grad():
            mean = torch.cat([encoder(torch.from_numpy(test_x[i:i + 500]).float())[0] for i in range(0, 3000, 500)])
        index = test_y.copy()
        for code in objective.codes:
            u = mean[:, code.dims[0]:code.dims[-1] + 1]
            index[:, code.column] = torch.cdist(u, torch.from_numpy(code.table)).argmin(dim=1).numpy()
        agrees = agreement(names, reading_of(names, index), test_y, EDIT_TOLERANCE)
        return {**{n: round(float(agrees[:, f].mean()), 3) for f, n in enumerate(names)},
                "all": round(float(agrees.all(axis=1).mean()), 3)}

    print(f"{args.labels} labelled dSprites images, {'with' if args.views else 'without'} views, seed {args.seed}")
    start = time.perf_counter()
    for step in range(1, args.steps + 1):
        rows = torch.randint(args.labels, (64,))
        x, y = pool_x[rows], pool_y[rows]
        loss, _ = objective.supervised(encoder(x)[0], Inputs(images=x, labels=y))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % max(1, args.steps // 4) == 0 or step == args.steps:
            print(f"step {step:>6}  {time.perf_counter() - start:6.0f} s  read right, within tolerance: {read()}",
                  flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
