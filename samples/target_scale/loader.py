import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data"))
from synthetic import Batches, regression  # noqa: E402

X, Y = regression()
Y = 300_000 + 100_000 * Y  # a price in dollars, as read from the CSV: never standardised
train_loader = Batches(X, Y, batch_size=64)
