"""ModelCentrality: pick, among trained models, the one most similar on average to the others.

Lin, Thekumparampil, Fanti & Oh, "InfoGAN-CR and ModelCentrality: Self-supervised Model Training
and Selection for Disentangling GANs", ICML 2020, section 5; computed as the authors' code does
(github.com/fjxmlzn/InfoGAN-CR, commit e0537bc: ``*_mc_generate_metric_data.py``,
``*_mc_cross_evaluation.py``, ``main_mc.py`` and ``FactorVAEMetric`` in ``gan/metric.py``).

No labels are used: every model's own generator supplies the "ground truth" its latent factors
are, and the others are scored against it.

- Data of model j (:func:`_groups` draws it): ``num_groups`` groups of ``group_size`` latents
  from j's prior in which one factor dim is held at one drawn value (group g fixes factor
  g mod K_j), decoded to images by j's generator; plus ``num_std`` free draws for the scales.
- s(i, j) (:func:`similarity_matrix`): the FactorVAE metric (Kim & Mnih 2018) of model i's
  representation on model j's data, as the authors compute it: divide i's representation by
  its std over j's free images; in each group the dim of least std votes for the group's factor;
  the score is the fraction of groups whose vote agrees with the majority factor of the voted
  dim (every group is both fitted and scored: no train/test split). Dims whose std over the free
  images is 0 carry nothing and never vote (the authors' code would divide by 0 there).
- Centrality of i (:func:`centrality`): the mean over j != i of (s(i, j) + s(j, i)) / 2; the
  selected model has the largest (:func:`rank`).

What a model is here (:class:`CentralityModel`): a prior sampler, its factor dims, a generator
and a representation. :func:`model_from_run` builds one from a run directory: for
``infogan_cr`` the prior is U[-1, 1], the factors are the ``num_codes`` codes and the
representation is the encoder's mean on those codes (the authors' Q head reads only the codes);
for every VAE objective the prior is N(0, I), every latent dim is a factor and the
representation is the encoder's mean (the authors' FactorVAE selection).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

#: the authors' sizes for InfoGAN-CR on dSprites: 500 groups of 100 images (main_mc_generate_data)
NUM_GROUPS = 500
GROUP_SIZE = 100
#: free images for the scales (the authors: a tenth of dSprites, 73,728; fewer are enough for a std)
NUM_STD = 10_000
CHUNK = 1000


@dataclass
class CentralityModel:
    """One trained model as ModelCentrality sees it.

    sample: (n, rng) -> (n, D) latents from the model's prior.
    factor_dims: the latent dims that are its factors (K of them).
    generate: (n, D) latents -> (n, ...) images (any array shape the representations accept).
    represent: (n, ...) images -> (n, R) representation.
    """

    name: str
    sample: Callable[[int, np.random.Generator], np.ndarray]
    factor_dims: Sequence[int]
    generate: Callable[[np.ndarray], np.ndarray]
    represent: Callable[[np.ndarray], np.ndarray]


def _chunks(total: int, size: int) -> list[int]:
    return [min(size, total - start) for start in range(0, total, size)]


def _groups(model: CentralityModel, num_groups: int, group_size: int, rng: np.random.Generator
            ) -> tuple[np.ndarray, np.ndarray]:
    """Latents (num_groups, group_size, D) with one factor fixed per group, and the factor of each
    group (num_groups,): group g fixes factor g mod K at the value of its first draw."""
    k = len(model.factor_dims)
    labels = np.arange(num_groups) % k
    latents = np.stack([model.sample(group_size, rng) for _ in range(num_groups)])
    for g, f in enumerate(labels):
        dim = model.factor_dims[f]
        latents[g, :, dim] = latents[g, 0, dim]
    return latents, labels


def similarity_matrix(
    models: Sequence[CentralityModel],
    *,
    num_groups: int = NUM_GROUPS,
    group_size: int = GROUP_SIZE,
    num_std: int = NUM_STD,
    seed: int = 0,
) -> np.ndarray:
    """s (M, M): s[i, j] = FactorVAE metric of model i's representation on model j's data.

    Each model's data is generated once and read by every model's representation.
    """
    m = len(models)
    s = np.zeros((m, m))
    for j, source in enumerate(models):
        rng = np.random.default_rng([seed, j])
        # scales: std of every representation over j's free images (one pass, float64 sums)
        moments: list[np.ndarray | None] = [None] * m  # (2, R): sum and sum of squares
        for n in _chunks(num_std, CHUNK):
            images = source.generate(source.sample(n, rng))
            for i, reader in enumerate(models):
                r = np.asarray(reader.represent(images), dtype=np.float64)
                add = np.stack([r.sum(0), (r * r).sum(0)])
                moments[i] = add if moments[i] is None else moments[i] + add
        stds = [np.sqrt(np.maximum(mo[1] / num_std - (mo[0] / num_std) ** 2, 0.0)) for mo in moments]
        latents, labels = _groups(source, num_groups, group_size, rng)
        k = len(source.factor_dims)
        votes = [np.zeros((len(stds[i]), k)) for i in range(m)]
        per_chunk = max(1, CHUNK // group_size)
        for start in range(0, num_groups, per_chunk):
            block = latents[start:start + per_chunk]  # (G, L, D)
            images = source.generate(block.reshape(-1, block.shape[-1]))
            for i, reader in enumerate(models):
                r = np.asarray(reader.represent(images), dtype=np.float64).reshape(len(block), group_size, -1)
                live = stds[i] > 0
                spread = np.where(live, r.std(axis=1) / np.where(live, stds[i], 1.0), np.inf)  # (G, R)
                np.add.at(votes[i], (spread.argmin(axis=1), labels[start:start + len(block)]), 1)
        for i in range(m):
            s[i, j] = votes[i].max(axis=1).sum() / num_groups
    return s


def centrality(similarity: np.ndarray) -> np.ndarray:
    """(M,) ModelCentrality: mean over j != i of the symmetrised similarity (s + s.T) / 2."""
    sym = (similarity + similarity.T) / 2
    m = len(sym)
    if m < 2:
        raise ValueError("ModelCentrality needs at least two models")
    return (sym.sum(axis=1) - np.diag(sym)) / (m - 1)


def rank(names: Sequence[str], similarity: np.ndarray) -> list[tuple[str, float]]:
    """(name, centrality) from the most central (the selected model) down."""
    scores = centrality(similarity)
    order = np.argsort(-scores, kind="stable")
    return [(names[i], float(scores[i])) for i in order]


# -- run directories ------------------------------------------------------------------------
def model_from_run(run_dir: Path, *, batch_size: int = 256) -> CentralityModel:
    """A finished run directory as a :class:`CentralityModel` (see the module docstring)."""
    import torch

    from latentdial.training.run_dir import load_run

    loaded = load_run(Path(run_dir))
    model = loaded.model
    objective = loaded.config.get("objective", {})
    d = model.config.latent_dim
    if objective.get("name") == "infogan_cr":
        codes = int(objective["num_codes"])
        factor_dims: list[int] = list(range(codes))

        def sample(n: int, rng: np.random.Generator) -> np.ndarray:
            return rng.uniform(-1.0, 1.0, size=(n, d)).astype(np.float32)
    else:
        codes = d
        factor_dims = list(range(d))

        def sample(n: int, rng: np.random.Generator) -> np.ndarray:
            return rng.standard_normal((n, d)).astype(np.float32)

    @torch.no_grad()
    def generate(latents: np.ndarray) -> np.ndarray:
        out = [torch.sigmoid(model.decoder(torch.from_numpy(np.ascontiguousarray(latents[i:i + batch_size],
                                                                                  dtype=np.float32)))).numpy()
               for i in range(0, len(latents), batch_size)]
        return np.concatenate(out)

    @torch.no_grad()
    def represent(images: np.ndarray) -> np.ndarray:
        out = [model.encoder(torch.from_numpy(np.ascontiguousarray(images[i:i + batch_size])))[0][:, :codes].numpy()
               for i in range(0, len(images), batch_size)]
        return np.concatenate(out)

    return CentralityModel(Path(run_dir).name, sample, factor_dims, generate, represent)


def finished_runs(paths: Sequence[Path]) -> list[Path]:
    """Every finished run directory (config.json + model.safetensors) at or under ``paths``
    (a sweep's --out holds one per trial), sorted, each once."""
    from latentdial.training.run_dir import CONFIG, WEIGHTS

    found: set[Path] = set()
    for root in map(Path, paths):
        for weights in [root / WEIGHTS, *root.rglob(WEIGHTS)]:
            if weights.is_file() and (weights.parent / CONFIG).is_file():
                found.add(weights.parent)
    return sorted(found)


def centrality_of_runs(run_dirs: Sequence[Path], *, num_groups: int = NUM_GROUPS, group_size: int = GROUP_SIZE,
                       num_std: int = NUM_STD, seed: int = 0) -> dict:
    """ModelCentrality over finished runs: {"runs", "similarity" (M x M), "ranking" [(run, score)]}."""
    run_dirs = [Path(p) for p in run_dirs]
    models = [model_from_run(p) for p in run_dirs]
    names = [str(p) for p in run_dirs]
    for model, name in zip(models, names, strict=True):
        model.name = name
    s = similarity_matrix(models, num_groups=num_groups, group_size=group_size, num_std=num_std, seed=seed)
    return {"runs": names, "similarity": s.tolist(), "ranking": rank(names, s),
            "sizes": {"num_groups": num_groups, "group_size": group_size, "num_std": num_std, "seed": seed}}


def write_result(result: dict, path: Path) -> None:
    Path(path).write_text(json.dumps(result, indent=2) + "\n")
