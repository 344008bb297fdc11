import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data"))
from synthetic import blobs  # noqa: E402

# Full batch: the whole (small) dataset every step, so no batch noise hides the cycle.
train_loader = [blobs(n=512)] * 100
