import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data"))
from synthetic import blobs  # noqa: E402

X, Y = blobs()
order = Y.argsort(stable=True)  # sorted by label, as files in per-class folders are listed
X, Y = X[order], Y[order]
train_loader = [(X[i:i + 64], Y[i:i + 64]) for i in range(0, len(Y) - 63, 64)]  # shuffle=False
