"""MC dropout in a run: refuse a network without dropout before training, optionally score the
validation split with MC dropout during training, and hand the final evaluation its predictor.

Selected by ``+callbacks=mc_dropout`` or, with its defaults, by the ``dropout`` regularizer.
"""

from __future__ import annotations

from typing import Any

import lightning as L

from bench.data.checks import is_int
from bench.errors import ConfigError
from bench.metrics import classification_metrics, regression_metrics
from bench.uncertainty.base import OutputHead
from bench.uncertainty.mc_dropout import KEY, MCDropout, check_stochastic, predict_split


class MCDropoutCallback(L.Callback):
    """``every_n_epochs > 0`` logs ``mc/val/nll`` and ``mc/val/ece`` (regression:
    ``mc/val/nll``, ``mc/val/rmse``) at the end of every n-th validation epoch; 0 leaves
    training alone and only the final evaluation (``predictor()``) samples.

    Under DDP, rank 0 alone computes (every rank would score the same whole split) and logs
    with ``rank_zero_only=True``: without ``sync_dist`` no rank waits for another, so there is
    nothing to deadlock; the price is that only rank 0's callbacks (checkpoint, early stopping)
    can monitor ``mc/val/*``. Validation epochs are counted from the start of the fit.
    """

    def __init__(
        self,
        samples: int = 50,
        every_n_epochs: int = 0,
        memory_mb: float | None = None,
        seed: int = 0,
    ) -> None:
        settings = MCDropout(samples, memory_mb, seed)  # refuses bad samples, memory_mb, seed
        self.samples, self.memory_mb, self.seed = samples, settings.memory_mb, seed
        if not (is_int(every_n_epochs) and every_n_epochs >= 0):
            raise ConfigError(
                f"{KEY}.every_n_epochs must be an integer >= 0 (0 = only after training), "
                f"got {every_n_epochs!r}"
            )
        self.every_n_epochs = every_n_epochs
        self.validation_epochs = 0

    def predictor(self) -> MCDropout:
        """A fresh predictor with this callback's settings (fit it before predicting)."""
        return MCDropout(samples=self.samples, memory_mb=self.memory_mb, seed=self.seed)

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        input_shape = getattr(trainer.datamodule, "input_shape", None)
        if input_shape is None:
            raise RuntimeError("MCDropoutCallback needs a datamodule with an input_shape")
        check_stochastic(pl_module.model, tuple(input_shape))

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.every_n_epochs == 0 or trainer.sanity_checking:
            return
        self.validation_epochs += 1
        if self.validation_epochs % self.every_n_epochs or not trainer.is_global_zero:
            return
        for key, value in validation_metrics(
            self.predictor(), pl_module, trainer.datamodule
        ).items():
            pl_module.log(f"mc/val/{key}", value, rank_zero_only=True)


def validation_metrics(predictor: MCDropout, module: Any, datamodule: Any) -> dict[str, float]:
    """MC-dropout NLL and ECE (regression: NLL and RMSE, original units) on the validation
    split. Without a variance head the aleatoric variance is 1/``noise_precision`` or the
    training MSE of the eval-mode network, as in the final evaluation."""
    precision = (getattr(module, "hparams", None) or {}).get("noise_precision")
    head = OutputHead.for_run(
        module.model, module.task, bool(module.heteroscedastic), datamodule, precision
    )
    predictor.fit([module.model], head)
    prediction, targets = predict_split(predictor, datamodule.eval_dataloader("val"))
    if head.classification:
        metrics = classification_metrics(prediction.probs, targets)
        return {"nll": metrics["nll"], "ece": metrics["ece"]}
    targets = targets.double() * head.target_std + head.target_mean
    metrics = regression_metrics(prediction.mean, prediction.var, targets, prediction.mixture)
    return {"nll": metrics["nll"], "ll": metrics["ll"], "rmse": metrics["rmse"]}
