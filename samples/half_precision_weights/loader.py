import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data"))
from synthetic import Batches, blobs  # noqa: E402

train_loader = Batches(*blobs(), batch_size=64)
