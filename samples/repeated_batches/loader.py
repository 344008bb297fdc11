import itertools
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data"))
from synthetic import Batches, blobs  # noqa: E402

# The bug: one batch taken outside the loop, then handed out for every step.
batch = next(iter(Batches(*blobs(), batch_size=32)))
train_loader = itertools.repeat(batch, 200)
