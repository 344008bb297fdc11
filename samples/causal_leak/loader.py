import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data"))
from charlm import CharBatches  # noqa: E402

train_loader = CharBatches(block=16)
