"""`AuditCallback` for PyTorch Lightning: audits the LightningModule at the start of training, through its own
`training_step` and `configure_optimizers`, on the trainer's train dataloader, on a copy; writes the report
into the trainer's log dir, logs the verdict and key numbers to the trainer's loggers, and stops the fit with
`AuditFailed` when `fail_on` is reached.

    pip install 'training-run-auditor[lightning]'

    from auditor.integrations.lightning import AuditCallback
    trainer = L.Trainer(callbacks=[AuditCallback(fail_on="error")])
"""

from __future__ import annotations

from pathlib import Path

try:
    import lightning.pytorch as pl
except ImportError:  # the older package name
    try:
        import pytorch_lightning as pl
    except ImportError:
        raise ImportError("auditor.integrations.lightning needs Lightning: pip install "
                          "'training-run-auditor[lightning]'") from None

from ..config import FORMATS
from ..lightning_module import setup_from_module
from . import common
from .common import AuditFailed

__all__ = ["AuditCallback", "AuditFailed"]


class AuditCallback(pl.Callback):
    def __init__(self, *, fail_on: str = "error", out: str | Path | None = None, formats=FORMATS, **audit_options):
        common.check_options(fail_on, audit_options)
        self.fail_on, self.out, self.formats, self.options = fail_on, out, list(formats), audit_options
        self.report = None  # the Report, once the audit has run

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # on_train_start, not on_fit_start: the trainer's train dataloader exists from here on, and no
        # optimizer step has been taken yet.
        message = None
        if trainer.is_global_zero:
            message = self._audit(trainer, pl_module)
        message = trainer.strategy.broadcast(message, src=0)  # every rank stops, or none
        if message:
            raise AuditFailed(message)

    def _audit(self, trainer, pl_module) -> str | None:
        loader = trainer.train_dataloader
        if loader is None:
            raise AuditFailed("training-run audit could not run: the trainer has no train dataloader")
        setup = common.guard(lambda: setup_from_module(pl_module, loader, source=type(pl_module).__name__))
        clip = trainer.gradient_clip_val if trainer.gradient_clip_algorithm in (None, "norm") else None
        options = dict(self.options)
        if clip:
            options.setdefault("clip_grad_norm", float(clip))
        out = Path(self.out) if self.out is not None else Path(trainer.log_dir or trainer.default_root_dir) / "audit"
        was_training = pl_module.training
        try:
            with _detached(pl_module):
                report, written = common.guard(lambda: common.run(setup, None, None, out, self.formats, options))
        finally:
            pl_module.train(was_training)
        self.report = report
        metrics = common.key_metrics(report)
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=trainer.global_step)
        pl.utilities.rank_zero_info(f"training-run audit: {report.verdict}; report in {out}")
        return common.failure(report, self.fail_on, written)


class _detached:
    """The probe copies the module: without this the copy would drag the whole Trainer (and its data) along."""

    def __init__(self, module):
        self.module = module

    def __enter__(self):
        self.trainer = self.module.__dict__.get("_trainer")
        self.module._trainer = None

    def __exit__(self, *exc):
        self.module._trainer = self.trainer
        return False
