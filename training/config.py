"""The training config: a typed dataclass loaded from TOML with ``--set key=value`` overrides.

A config file (``configs/*.toml``)::

    steps = 300000
    [dataset]
    name = "dsprites"
    [model]
    latent_dim = 10
    [objective]
    name = "beta_vae"
    beta = 4.0
    [optimizer]
    lr = 1e-4

Overrides use dotted keys and TOML literals (``--set objective.beta=8 --set steps=2000
--set dataset.name=color_dsprites``); a bare word that is not a TOML literal is a string.
Values are checked against the field types, and unknown keys are rejected with the list
of valid ones. Defaults follow disentanglement_lib (Adam lr 1e-4, batch 64, 10 latents).
"""

from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from latentdial.training.augment import AugmentConfig
from latentdial.training.model import ModelConfig
from latentdial.training.objectives import ObjectiveConfig, get_objective


class ConfigError(ValueError):
    """A config file or override is malformed; the message says what to change."""


@dataclass
class OptimizerConfig:
    """Adam, as in disentanglement_lib (lr 1e-4, default betas), with an optional cooldown.

    cooldown_steps: the last ``cooldown_steps`` steps of the run decay the lr linearly from
        ``lr`` to ``lr_final`` (the decay phase of a warmup-stable-decay schedule: Hägele et
        al. 2024, "Scaling Laws and Compute-Optimal Training Beyond Fixed Training
        Durations"); 0 keeps ``lr`` throughout, as disentanglement_lib does. Because the
        cooldown hangs off the run's end, a run can be resumed with a longer ``steps`` and
        a cooldown that starts at or after its checkpoint (:meth:`agrees_before`).
    """

    lr: float = 1e-4
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    cooldown_steps: int = 0
    lr_final: float = 0.0

    def __post_init__(self) -> None:
        if self.lr <= 0 or self.lr_final < 0 or self.lr_final > self.lr:
            raise ConfigError(f"optimizer: need 0 <= lr_final <= lr and lr > 0, got lr {self.lr}, "
                              f"lr_final {self.lr_final}")
        if self.cooldown_steps < 0:
            raise ConfigError(f"optimizer.cooldown_steps must be >= 0, got {self.cooldown_steps}")

    def cooldown_start(self, steps: int) -> int:
        """The first step whose lr is below ``lr`` in a run of ``steps`` steps (``steps`` if none)."""
        return max(0, steps - self.cooldown_steps) if self.cooldown_steps else steps

    def lr_at(self, step: int, steps: int) -> float:
        """The lr of optimisation step ``step`` (0-based) of a run of ``steps`` steps."""
        start = self.cooldown_start(steps)
        if step < start:
            return self.lr
        done = min(1.0, (step - start + 1) / max(1, steps - start))
        return self.lr + (self.lr_final - self.lr) * done

    def describe(self) -> str:
        """"Adam lr 0.0005[, decaying linearly to 0 over the last 36,000 steps]" for reports."""
        cooldown = (f", decaying linearly to {self.lr_final:.4g} over the last {self.cooldown_steps:,} steps"
                    if self.cooldown_steps else "")
        return f"Adam lr {self.lr:.4g}{cooldown}"

    def agrees_before(self, other: OptimizerConfig, step: int, steps: int, other_steps: int) -> bool:
        """Do this config (run of ``steps``) and ``other`` (run of ``other_steps``) give the same
        Adam and the same lr at every step before ``step``? Then a checkpoint at ``step`` of one
        resumes bit for bit as the other."""
        same_adam = (self.lr, self.beta1, self.beta2, self.eps) == (other.lr, other.beta1, other.beta2, other.eps)
        if not same_adam:
            return False
        if self.cooldown_start(steps) >= step and other.cooldown_start(other_steps) >= step:
            return True  # both still at lr for every step taken so far
        return all(self.lr_at(s, steps) == other.lr_at(s, other_steps) for s in range(step))


@dataclass
class TrainConfig:
    """Everything a training run needs; ``to_dict`` is what config.json stores."""

    dataset: dict[str, Any] = field(default_factory=lambda: {"name": "dsprites"})
    model: ModelConfig = field(default_factory=ModelConfig)
    objective_name: str = "beta_vae"
    objective: ObjectiveConfig = field(default_factory=lambda: get_objective("beta_vae").Config())
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    batch_size: int = 64
    steps: int = 300_000
    seed: int = 0
    log_every: int = 100
    checkpoint_every: int = 5000
    keep_checkpoints: int = 3
    evaluate: bool = True
    device: str = "cpu"
    num_threads: int = 0  # torch intra-op threads; 0 = all cores / local world size
    time_limit_s: float = 0.0  # stop at a checkpoint once training has run this long; 0 = no limit
    cuda_graph: bool = True  # on one CUDA device, replay graph-safe steps from a CUDA graph
    # start from these weights instead of random ones: a run directory or an exported model
    # version (models/<name>/<version>); the architecture must match (run_dir.initial_weights)
    init_from: str = ""
    # weight-name prefixes (e.g. "encoder.mean") that keep their fresh initialisation instead of
    # init_from's: the heads to replace when the source model has another latent_dim
    init_skip: list[str] = field(default_factory=list)
    augment: AugmentConfig = field(default_factory=AugmentConfig)  # the encoder's input views

    def __post_init__(self) -> None:
        for name in ("batch_size", "steps", "log_every", "checkpoint_every", "keep_checkpoints"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if "name" not in self.dataset:
            raise ConfigError('[dataset] needs a name, e.g. name = "dsprites"')
        if self.init_skip and not self.init_from:
            raise ConfigError("init_skip names weights to leave out of init_from, but init_from is not set")
        if not (self.device == "cpu" or self.device.startswith("cuda")):
            raise ConfigError(f"device must be 'cpu' or 'cuda[:N]', got {self.device!r}")

    def to_dict(self) -> dict[str, Any]:
        top = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        top.pop("objective_name")
        top["dataset"] = dict(self.dataset)
        top["model"] = self.model.to_dict()
        top["objective"] = {"name": self.objective_name, **self.objective.to_dict()}
        top["optimizer"] = dataclasses.asdict(self.optimizer)
        top["augment"] = self.augment.to_dict()
        return top

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> TrainConfig:
        """Build and type-check a config from a nested dict (a parsed TOML file)."""
        raw = dict(raw)
        top_fields = {f.name: f for f in dataclasses.fields(cls) if f.name != "objective_name"}
        _reject_unknown("top level", raw, top_fields)
        kwargs: dict[str, Any] = {}
        hints = typing.get_type_hints(cls)
        for name, value in raw.items():
            if name in ("dataset", "model", "objective", "optimizer", "augment"):
                continue
            kwargs[name] = _coerce(name, value, hints[name])
        dataset = raw.get("dataset", {"name": "dsprites"})
        if not isinstance(dataset, dict):
            raise ConfigError(f"[dataset] must be a table, got {dataset!r}")
        kwargs["dataset"] = dict(dataset)
        kwargs["model"] = _dataclass_from("model", ModelConfig, raw.get("model", {}))
        kwargs["optimizer"] = _dataclass_from("optimizer", OptimizerConfig, raw.get("optimizer", {}))
        kwargs["augment"] = _dataclass_from("augment", AugmentConfig, raw.get("augment", {}))
        objective = dict(raw.get("objective", {}))
        name = objective.pop("name", "beta_vae")
        try:
            obj_cls = get_objective(str(name))
        except ValueError as e:
            raise ConfigError(f"objective.name: {e}") from None
        kwargs["objective_name"] = obj_cls.name
        kwargs["objective"] = _dataclass_from(f"objective {obj_cls.name!r}", obj_cls.Config, objective)
        return cls(**kwargs)


def _reject_unknown(where: str, raw: dict[str, Any], valid: typing.Iterable[str]) -> None:
    valid = sorted(valid)
    unknown = sorted(set(raw) - set(valid))
    if unknown:
        raise ConfigError(f"unknown key(s) {unknown} in {where}; valid keys: {', '.join(valid)}")


def _dataclass_from(where: str, cls: type, raw: Any) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(f"[{where}] must be a table, got {raw!r}")
    fields_ = {f.name for f in dataclasses.fields(cls)}
    _reject_unknown(f"[{where}]", raw, fields_)
    hints = typing.get_type_hints(cls)
    values = {k: _coerce(f"{where}.{k}", v, hints[k]) for k, v in raw.items()}
    try:
        return cls(**values)
    except ConfigError:
        raise
    except ValueError as e:  # a table's own check (e.g. AugmentConfig's ranges)
        raise ConfigError(str(e)) from None


def _coerce(key: str, value: Any, typ: Any) -> Any:
    """Check ``value`` against the annotation ``typ``; ints widen to floats."""
    origin = typing.get_origin(typ)
    if origin in (typing.Union, types.UnionType):
        for option in typing.get_args(typ):
            try:
                return _coerce(key, value, option)
            except ConfigError:
                continue
        raise ConfigError(f"{key}: {value!r} is not a {typ}")
    if typ is type(None):
        if value is None:
            return None
        raise ConfigError(f"{key}: expected None, got {value!r}")
    if typ is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if typ is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if typ is bool and isinstance(value, bool):
        return value
    if typ is str and isinstance(value, str):
        return value
    if origin is dict and isinstance(value, dict):
        return value
    if origin is list and isinstance(value, list):
        (item,) = typing.get_args(typ)
        return [_coerce(f"{key}[{i}]", v, item) for i, v in enumerate(value)]
    name = getattr(typ, "__name__", str(typ))
    raise ConfigError(f"{key}: expected {name}, got {value!r} ({type(value).__name__})")


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"objective.beta=8"`` -> (["objective", "beta"], 8). Values are TOML literals, else strings."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like key=value, e.g. objective.beta=8")
    key, raw = text.split("=", 1)
    path = [p.strip() for p in key.strip().split(".")]
    if not all(path):
        raise ConfigError(f"override {text!r} has an empty key part")
    return path, parse_literal(raw)


def parse_literal(raw: str) -> Any:
    """The value of one ``key=value`` on a command line: a TOML literal (``8``, ``true``,
    ``[100, 1000]``, ``"x"``), else the text itself, stripped (``adam`` -> ``"adam"``)."""
    try:
        return tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        return raw.strip()


def apply_overrides(raw: dict[str, Any], overrides: typing.Sequence[str]) -> dict[str, Any]:
    """Return a copy of the nested dict ``raw`` with each ``key=value`` applied."""
    out: dict[str, Any] = {k: (dict(v) if isinstance(v, dict) else v) for k, v in raw.items()}
    for text in overrides:
        path, value = parse_override(text)
        node = out
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"override {text!r}: {part!r} is a value, not a table")
            node = child
        node[path[-1]] = value
    return out


def load_config(path: Path | str | None, overrides: typing.Sequence[str] = ()) -> TrainConfig:
    """Read a TOML config (or the defaults when ``path`` is None) and apply overrides."""
    raw = read_toml(path, "config file", "configs/ for examples") if path is not None else {}
    return TrainConfig.from_dict(apply_overrides(raw, overrides))


def read_toml(path: Path | str, what: str, see: str) -> dict[str, Any]:
    """Parse a TOML file, or raise ConfigError naming ``what`` it is and where to ``see`` examples."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{what} {path} does not exist; see {see}")
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path} is not valid TOML: {e}") from e
