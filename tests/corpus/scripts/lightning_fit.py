# PyTorch Lightning: a LightningModule and Trainer.fit, validation included.
import lightning as L
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset


class LitClassifier(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(32, 128), nn.BatchNorm1d(128), nn.ReLU(), nn.Dropout(0.1),
                                 nn.Linear(128, 4))

    def training_step(self, batch, batch_idx):
        x, y = batch
        return nn.functional.cross_entropy(self.net(x), y)

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", nn.functional.cross_entropy(self.net(x), y))

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=1e-3)


if __name__ == "__main__":
    L.seed_everything(0)
    x = torch.randn(2048, 32)
    y = (x[:, :4] > 0).long().sum(1).clamp(max=3)
    train = DataLoader(TensorDataset(x[:1792], y[:1792]), batch_size=32, shuffle=True)
    val = DataLoader(TensorDataset(x[1792:], y[1792:]), batch_size=64)
    trainer = L.Trainer(max_epochs=5, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, val_check_interval=20)
    trainer.fit(LitClassifier(), train, val)
