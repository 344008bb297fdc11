import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data"))
from synthetic import Batches, images  # noqa: E402

X, Y = images(n=1024)
X = ((X - X.min()) / (X.max() - X.min()) * 255).round()  # as decoded from PNG files: 0..255
train_loader = Batches(X, Y, batch_size=32)
