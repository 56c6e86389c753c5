"""Stage ``train-cooldown``: the CUDA-graph training step under an lr cooldown, and the lr it read.

The default model's recipe (configs/shipped/dsprites.toml) trains for ``steps`` steps with a
cooldown over the last ``cooldown`` of them, on CUDA with ``cuda_graph = true``: the captured
Adam step reads its lr from a device tensor that the trainer refills every step. After each
step the lr the update *used* is recovered from the parameters and Adam's state
(:func:`adam_lr_read`) and compared with the schedule (``OptimizerConfig.lr_at``); a graph that
replayed a stale lr (the one at capture) fails here. Also recorded: whether the step really
ran from a captured graph, steps per second, and the lr tensor's value.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from record import StageRecord, require_cuda

REPO = Path(__file__).resolve().parents[2]
RECIPE = REPO / "configs" / "shipped" / "dsprites.toml"
#: |lr read - lr scheduled| allowed, as a fraction of the peak lr (float32 rounding of small updates)
LR_TOLERANCE = 0.02


def adam_lr_read(before: Any, after: Any, state: dict[str, Any], beta1: float, beta2: float,
                 eps: float) -> float:
    """The lr of the Adam step that took ``before`` to ``after``, from the optimizer's state after it.

    torch's Adam (weight decay 0) moves a parameter by ``lr * m_hat / (sqrt(v_hat) + eps)``; the
    median of ``(before - after) / (m_hat / (sqrt(v_hat) + eps))`` over elements whose update is
    not tiny recovers ``lr``.
    """
    import torch

    step = float(state["step"])
    m_hat = state["exp_avg"].double() / (1 - beta1 ** step)
    denom = state["exp_avg_sq"].double().sqrt() / (1 - beta2 ** step) ** 0.5 + eps
    unit = (m_hat / denom).flatten()
    delta = (before.double() - after.double()).flatten()
    keep = unit.abs() > 0.1 * unit.abs().max()
    return float(torch.median(delta[keep] / unit[keep]))


def probe_parameter(optimizer: Any) -> Any:
    """The largest parameter Adam updates (most elements for the median)."""
    params = [p for g in optimizer.param_groups for p in g["params"]]
    return max(params, key=lambda p: p.numel())


def run(rec: StageRecord, steps: int, cooldown: int, device: str, run_dir: Path,
        batch_size: int | None = None) -> None:
    """Train ``steps`` steps of the recipe (``batch_size``: the recipe's unless given) and check every lr."""
    from latentdial.training.config import load_config
    from latentdial.training.trainer import Trainer

    batch = [f"batch_size={batch_size}"] if batch_size else []
    cfg = load_config(RECIPE, [f"steps={steps}", f"optimizer.cooldown_steps={cooldown}", f"device={device}",
                               "cuda_graph=true", "num_threads=2", f"log_every={max(1, steps // 10)}",
                               f"checkpoint_every={10 * steps}", "evaluate=false", *batch])
    opt = cfg.optimizer
    schedule = [opt.lr_at(s, steps) for s in range(steps)]
    rec.figure(recipe=RECIPE.name, steps=steps, cooldown_steps=cooldown, lr=opt.lr, lr_final=opt.lr_final,
               cooldown_start=opt.cooldown_start(steps), device=device)
    if device.startswith("cuda"):
        require_cuda()
    import torch

    trainer = Trainer(cfg, run_dir)
    if device.startswith("cuda") and trainer.graphed is None:
        rec.fail("the trainer did not build a CUDA-graph step for this recipe")
    p = probe_parameter(trainer.optimizer)
    state_of = trainer.optimizer.state
    worst, worst_step, samples = 0.0, -1, []
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    t0 = time.perf_counter()
    for batch in trainer.stream.iterate(0, steps):
        step = trainer.step
        before = p.detach().clone()
        trainer.train_step(batch, logs=(step + 1) % cfg.log_every == 0)
        sync()
        read = adam_lr_read(before, p.detach(), state_of[p], opt.beta1, opt.beta2, opt.eps)
        tensor_lr = float(trainer.optimizer.param_groups[0]["lr"])
        err = abs(read - schedule[step]) / opt.lr
        if err > worst:
            worst, worst_step = err, step
        if step in (0, opt.cooldown_start(steps), steps - cooldown // 2, steps - 1) or err > LR_TOLERANCE:
            samples.append({"step": step, "scheduled": schedule[step], "lr_tensor": tensor_lr, "read": read})
        if abs(tensor_lr - schedule[step]) > 1e-6 * opt.lr:
            rec.fail(f"step {step}: the lr tensor holds {tensor_lr:.3e}, the schedule {schedule[step]:.3e}")
    seconds = time.perf_counter() - t0
    graphed = trainer.graphed is not None and trainer.graphed.captured
    rec.figure(steps_per_s=round(steps / seconds, 1), cuda_graph_replayed=graphed,
               capture_failure=getattr(trainer.graphed, "failed", None),
               worst_lr_error_of_peak=round(worst, 5), worst_step=worst_step, lr_samples=samples)
    if device.startswith("cuda") and not graphed:
        rec.fail("the training step never ran from a captured CUDA graph")
    if worst > LR_TOLERANCE:
        rec.fail(f"step {worst_step}: the update used an lr {worst:.1%} of the peak away from the schedule")
