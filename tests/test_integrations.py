"""The trainer callbacks with the real packages: a healthy fit goes on, a broken model's fit is stopped before
its first optimizer step with a message naming the failing rules, and a report lands in the trainer's dir.
Also `audit model.py` on a model.py that defines only a LightningModule."""

import json

import pytest
import torch
from click.testing import CliRunner
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from auditor.cli import cli

pl = pytest.importorskip("lightning.pytorch")
transformers = pytest.importorskip("transformers")

from auditor.integrations import lightning as audit_pl  # noqa: E402
from auditor.integrations import transformers as audit_hf  # noqa: E402


def _data(n=1024, d=16, classes=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g)
    y = (x @ torch.randn(d, classes, generator=g)).argmax(1)  # learnable labels
    return TensorDataset(x, y)


class Classifier(pl.LightningModule):
    def __init__(self, out_scale: float = 1.0, lr: float = 1e-3):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 4))
        with torch.no_grad():
            self.net[2].weight.mul_(out_scale)
        self.lr = lr

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = nn.functional.cross_entropy(self.net(x), y)
        self.log("train_loss", loss)
        return loss

    def configure_optimizers(self):
        opt = torch.optim.AdamW(self.parameters(), lr=self.lr)
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1000)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def _trainer(tmp_path, callback, steps=3):
    return pl.Trainer(max_steps=steps, accelerator="cpu", devices=1, callbacks=[callback], enable_progress_bar=False,
                      enable_checkpointing=False, enable_model_summary=False, default_root_dir=tmp_path,
                      logger=pl.loggers.CSVLogger(tmp_path, name="run"), num_sanity_val_steps=0)


def test_lightning_healthy_fit_goes_on(tmp_path):
    torch.manual_seed(0)
    model = Classifier()
    callback = audit_pl.AuditCallback(formats=["json", "md"])
    trainer = _trainer(tmp_path, callback)
    trainer.fit(model, DataLoader(_data(), batch_size=32, shuffle=True))
    assert trainer.global_step == 3
    assert callback.report is not None and callback.report.passed("error"), [
        f.rule for f in callback.report.findings]
    report = json.loads((tmp_path / "run" / "version_0" / "audit" / "report.json").read_text())
    assert report["probe"]["optimizer"].startswith("AdamW")
    assert "StepLR" in " ".join(report["probe"]["notes"])  # the step-interval scheduler was stepped
    metrics = (tmp_path / "run" / "version_0" / "metrics.csv").read_text()
    assert "audit/errors" in metrics and "audit/initial_loss" in metrics


def test_lightning_broken_fit_is_stopped_before_its_first_step(tmp_path):
    torch.manual_seed(0)
    model = Classifier(out_scale=60.0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trainer = _trainer(tmp_path, audit_pl.AuditCallback(formats=["json"], verify_fixes=False))
    with pytest.raises(audit_pl.AuditFailed, match="init-loss"):
        trainer.fit(model, DataLoader(_data(), batch_size=32, shuffle=True))
    assert trainer.global_step == 0
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # the probe trained a copy
    assert (tmp_path / "run" / "version_0" / "audit" / "report.json").exists()


def test_lightning_callback_rejects_unknown_keywords():
    with pytest.raises(TypeError, match="stpes"):
        audit_pl.AuditCallback(stpes=10)
    with pytest.raises(ValueError, match="fail_on"):
        audit_pl.AuditCallback(fail_on="sometimes")


def _bert(out_scale=1.0):
    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=50, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                     intermediate_size=128, max_position_embeddings=32, num_labels=2)
    model = transformers.BertForSequenceClassification(config)
    with torch.no_grad():
        model.classifier.weight.mul_(out_scale)
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(5, 50, (1024, 16), generator=g)
    labels = (ids == 7).any(1).long()
    data = [{"input_ids": ids[i], "labels": labels[i]} for i in range(len(ids))]
    return model, data


def _hf_trainer(tmp_path, model, data, callback=None, steps=3):
    args = transformers.TrainingArguments(output_dir=str(tmp_path / "hf"), max_steps=steps,
                                          per_device_train_batch_size=32, learning_rate=3e-4, report_to=[],
                                          use_cpu=True, save_strategy="no", logging_steps=1, disable_tqdm=True)
    trainer = transformers.Trainer(model=model, args=args, train_dataset=data)
    trainer.add_callback(callback or audit_hf.AuditCallback(trainer=trainer, formats=["json", "md"]))
    return trainer


def test_hf_healthy_training_goes_on(tmp_path):
    model, data = _bert()
    trainer = _hf_trainer(tmp_path, model, data)
    trainer.train()
    assert trainer.state.global_step == 3
    callback = next(c for c in trainer.callback_handler.callbacks if isinstance(c, audit_hf.AuditCallback))
    assert callback.report.passed("error"), [f.rule for f in callback.report.findings]
    report = json.loads((tmp_path / "hf" / "audit" / "report.json").read_text())
    assert report["probe"]["optimizer"].startswith("AdamW") and report["probe"]["loss_fn"] == "cross_entropy"
    assert any("audit/errors" in entry for entry in trainer.state.log_history)


def test_hf_broken_training_is_stopped_before_its_first_step(tmp_path):
    model, data = _bert(out_scale=200.0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trainer = _hf_trainer(tmp_path, model, data, audit_hf.AuditCallback(formats=["json"], verify_fixes=False))
    with pytest.raises(audit_hf.AuditFailed, match="init-loss"):
        trainer.train()
    assert trainer.state.global_step == 0
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


LIGHTNING_MODEL = '''
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
import lightning.pytorch as pl


class Net(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 4))
        with torch.no_grad():
            self.net[2].weight.mul_(SCALE)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return {"loss": nn.functional.cross_entropy(self.net(x), y)}

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.05, momentum=0.9)

    def train_dataloader(self):
        g = torch.Generator().manual_seed(0)
        x = torch.randn(1024, 16, generator=g)
        y = (x @ torch.randn(16, 4, generator=g)).argmax(1)
        return DataLoader(TensorDataset(x, y), batch_size=32, shuffle=True)


torch.manual_seed(0)
model = Net()
'''


@pytest.mark.parametrize("scale, code, rule", [(1.0, 0, None), (60.0, 1, "init-loss")])
def test_audit_a_model_py_that_defines_a_lightning_module(tmp_path, scale, code, rule):
    path = tmp_path / "model.py"
    path.write_text(LIGHTNING_MODEL.replace("SCALE", str(scale)))
    result = CliRunner().invoke(cli, [str(path), "--out", str(tmp_path / "out"), "--format", "json"],
                                catch_exceptions=False)
    assert result.exit_code == code, result.output
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["probe"]["optimizer"].startswith("SGD")
    assert report["probe"]["data_file"].endswith("train_dataloader()")
    assert (rule is None) == (rule not in {f["rule"] for f in report["findings"]})
