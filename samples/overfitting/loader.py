import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data"))
from synthetic import Batches, blobs  # noqa: E402

X, Y = blobs(n=2048, spread=0.25)  # overlapping classes: memorising 16 samples does not generalise
train_loader = [(X[:16], Y[:16])] * 100  # the same 16 samples every step
val_loader = Batches(X[1024:], Y[1024:], batch_size=128)
