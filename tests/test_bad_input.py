"""Bad input: one line naming the file and what to do, exit code 2, no traceback from the auditor."""

from click.testing import CliRunner

from auditor.cli import cli

LOADER = """
import torch
train_loader = [(torch.randn(8, 4), torch.randint(0, 3, (8,))) for _ in range(4)]
"""
MODEL = "from torch import nn\nmodel = nn.Linear(4, 3)\n"


def _audit(*args):
    result = CliRunner().invoke(cli, [str(a) for a in args] + ["--out", str(args[0].parent / "out")])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    first = result.output.strip().splitlines()[0]
    assert first.startswith("audit: error:"), result.output
    return result.output


def test_missing_file(tmp_path):
    out = _audit(tmp_path / "nope.py")
    assert "nope.py: no such file" in out


def test_model_file_without_model(write):
    out = _audit(write("model.py", "x = 1\n"), "--data", write("loader.py", LOADER))
    assert "model.py: defines neither `model`" in out


def test_exception_in_user_code_shows_user_frames_only(write):
    model = write("model.py", MODEL + "def helper():\n    raise ValueError('bad config')\n"
                  "def build_model():\n    return helper()\ndel model\n")
    out = _audit(model, "--data", write("loader.py", LOADER))
    assert "ValueError" in out and "bad config" in out and "model.py:" in out
    assert "auditor/" not in out


def test_exception_in_forward_points_at_the_user_line(write):
    model = write("model.py", "import torch\nfrom torch import nn\nclass M(nn.Module):\n"
                  "    def __init__(self):\n        super().__init__()\n        self.l = nn.Linear(5, 3)\n"
                  "    def forward(self, x):\n        return self.l(x)\nmodel = M()\n")
    out = _audit(model, "--data", write("loader.py", LOADER))
    assert "model.py:8 in forward" in out and "RuntimeError" in out


def test_empty_loader(write):
    out = _audit(write("model.py", MODEL), "--data", write("loader.py", "train_loader = []\n"))
    assert "loader.py: the loader yielded no batches" in out


def test_unexpected_batch(write):
    loader = write("loader.py", "import torch\ntrain_loader = [{'x': torch.randn(8, 4)}]\n")
    out = _audit(write("model.py", MODEL), "--data", loader)
    assert "a dict" in out and "training_step" in out


def test_loss_not_scalar(write):
    model = write("model.py", MODEL + "import torch.nn.functional as F\n"
                  "def loss_fn(out, y):\n    return F.cross_entropy(out, y, reduction='none')\n")
    out = _audit(model, "--data", write("loader.py", LOADER))
    assert "loss_fn returned a tensor of shape (8,)" in out and ".mean()" in out


def test_targets_out_of_range(write):
    loader = write("loader.py", "import torch\ntrain_loader = [(torch.randn(8, 4), torch.full((8,), 7))]\n")
    out = _audit(write("model.py", MODEL), "--data", loader)
    assert "targets range from 7 to 7" in out and "3 classes" in out


def test_loader_that_is_not_iterable(write):
    out = _audit(write("model.py", MODEL), "--data", write("loader.py", "train_loader = 5\n"))
    assert "expected an iterable of batches" in out


def test_nan_loss_at_step_zero_is_a_finding_not_a_crash(write, tmp_path):
    loader = write("loader.py", "import torch\ntrain_loader = [(torch.full((8, 4), float('nan')), "
                   "torch.zeros(8, dtype=torch.long))] * 3\n")
    result = CliRunner().invoke(cli, [str(write("model.py", MODEL)), "--data", str(loader),
                                      "--out", str(tmp_path / "out")])
    assert result.exit_code == 1, result.output
    assert "loss-nan" in result.output


def test_targets_out_of_range_in_a_later_batch(write):
    # Only the first batch is checked up front on the CPU; a later bad batch must still name the labels. The
    # nine steps before it are kept as a partial report (exit 2).
    loader = write("loader.py", "import torch\ng = torch.Generator().manual_seed(0)\n"
                   "train_loader = [(torch.randn(8, 4, generator=g), torch.randint(0, 3, (8,), generator=g)) "
                   "for _ in range(9)]\ntrain_loader.append((torch.randn(8, 4), torch.full((8,), 5)))\n")
    model = write("model.py", MODEL)
    result = CliRunner().invoke(cli, [str(model), "--data", str(loader), "--out", str(model.parent / "out")])
    assert result.exit_code == 2 and "Traceback" not in result.output
    first = result.output.strip().splitlines()[0]
    assert first.startswith("audit: partial report: stopped by an error at probe step 9")
    assert "targets range from 5 to 5" in first and "3 classes" in first
    assert (model.parent / "out" / "report.json").exists()


def test_out_of_memory_is_one_line_naming_the_phase_and_the_size(tmp_path):
    """A CUDA out-of-memory (raised here on the CPU, as the allocator words it) is a one-line error with the
    phase, the size asked for and what to change; no traceback."""
    from click.testing import CliRunner

    from auditor.cli import cli

    model = tmp_path / "model.py"
    model.write_text(
        "import torch\nfrom torch import nn\n\n"
        "class Big(nn.Module):\n"
        "    def __init__(self):\n        super().__init__()\n        self.lin = nn.Linear(4, 2)\n"
        "    def forward(self, x):\n"
        "        raise torch.OutOfMemoryError('CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total '\n"
        "                                     'capacity of 79.11 GiB of which 1.50 GiB is free.')\n\n"
        "model = Big()\ntrain_loader = [(torch.randn(8, 4), torch.randint(0, 2, (8,)))] * 4\n")
    result = CliRunner().invoke(cli, [str(model), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.output
    assert "out of device memory while running the model" in lines[0] and "asking for 2.00 GiB" in lines[0]
    assert "smaller batch" in lines[0] and "--in-place" in lines[0]
