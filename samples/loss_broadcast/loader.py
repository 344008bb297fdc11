import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data"))
from synthetic import Batches, regression  # noqa: E402

X, Y = regression()
train_loader = Batches(X, Y.squeeze(1), batch_size=64)  # targets of shape (B,), the output is (B, 1)
