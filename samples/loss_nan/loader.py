import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data"))
from synthetic import Batches, blobs  # noqa: E402

X, Y = blobs()
X[::7, 3] = float("nan")  # a feature with missing values, read as NaN
train_loader = Batches(X, Y, batch_size=32)
