"""`AuditCallback` for the Hugging Face `Trainer`: audits at train begin with the Trainer's model, train
dataloader, optimizer and learning-rate scheduler, on copies; writes the report into the output dir, logs the
verdict and key numbers, and stops training with `AuditFailed` when `fail_on` is reached.

    pip install 'training-run-auditor[hf]'

    from auditor.integrations.transformers import AuditCallback
    trainer = Trainer(model=model, args=args, train_dataset=ds)
    trainer.add_callback(AuditCallback(trainer=trainer))   # or callbacks=[AuditCallback()]

Given `trainer=`, the loss is the Trainer's own `compute_loss` (label smoothing, a subclass's override);
without it, the model's own loss (`model(**batch).loss`), which is what compute_loss returns by default.
"""

from __future__ import annotations

from pathlib import Path

try:
    from transformers import TrainerCallback
except ImportError:
    raise ImportError("auditor.integrations.transformers needs transformers: pip install "
                      "'training-run-auditor[hf]'") from None

from ..config import FORMATS
from ..load import UserSetup
from . import common
from .common import AuditFailed

__all__ = ["AuditCallback", "AuditFailed"]


class AuditCallback(TrainerCallback):
    def __init__(self, *, trainer=None, fail_on: str = "error", out: str | Path | None = None, formats=FORMATS,
                 **audit_options):
        common.check_options(fail_on, audit_options)
        self.trainer, self.fail_on, self.out = trainer, fail_on, out
        self.formats, self.options = list(formats), audit_options
        self.report = None

    def on_train_begin(self, args, state, control, model=None, optimizer=None, lr_scheduler=None,
                       train_dataloader=None, **kwargs):
        message = None
        if state.is_world_process_zero:
            message = self._audit(args, state, model, optimizer, lr_scheduler, train_dataloader)
        message = _broadcast(message)
        if message:
            raise AuditFailed(message)
        return control

    def _audit(self, args, state, model, optimizer, lr_scheduler, loader) -> str | None:
        if model is None or loader is None:
            raise AuditFailed("training-run audit could not run: the Trainer passed no model or train dataloader")
        trainer = self.trainer

        def training_step(m, batch):
            if trainer is not None:
                return trainer.compute_loss(m, batch)
            out = m(**batch)
            loss = out["loss"] if isinstance(out, dict) else getattr(out, "loss", None)
            if loss is None:
                raise common.AuditError("the model returned no loss: its batches need `labels`, or pass "
                                        "AuditCallback(trainer=trainer) so the Trainer's compute_loss is used")
            return loss

        setup = UserSetup(model=model, train_loader=loader, training_step=training_step,
                          model_file=type(model).__name__, data_file="the Trainer's train dataloader")
        options = dict(self.options)
        if args.max_grad_norm:
            options.setdefault("clip_grad_norm", float(args.max_grad_norm))
        out = Path(self.out) if self.out is not None else Path(args.output_dir) / "audit"
        scheduler = lr_scheduler if optimizer is not None else None
        report, written = common.guard(lambda: common.run(setup, optimizer, scheduler, out, self.formats, options))
        self.report = report
        metrics = common.key_metrics(report)
        if trainer is not None:
            trainer.log(metrics)
        else:
            state.log_history.append({**metrics, "step": state.global_step})
        return common.failure(report, self.fail_on, written)


def _broadcast(message):
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        box = [message]
        dist.broadcast_object_list(box, src=0)
        return box[0]
    return message
