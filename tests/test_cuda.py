"""The CUDA paths: the probe where the model lives on a GPU, mixed precision there, a real out-of-memory, and
the GPU benchmark's models. Run where CUDA is present; skipped, with the reason, where it is not (CI)."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import auditor
from auditor.api import audit_setup
from auditor.load import load_files

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA: no GPU on this machine")
ROOT = Path(__file__).resolve().parents[1]


def _on_cuda(sample: str):
    setup = load_files(ROOT / "samples" / sample / "model.py", ROOT / "samples" / sample / "loader.py")
    setup.model.cuda()
    return setup


@pytest.mark.parametrize("amp", [None, "bf16", "fp16"])
def test_a_healthy_model_on_the_gpu_is_probed_there_and_stays_clean(amp):
    report = audit_setup(_on_cuda("healthy_mlp_adamw"), amp=amp, verify_fixes=False)
    assert report.probe.device.startswith("cuda")
    assert np.isfinite(report.evidence.loss).all()
    loud = [(f.rule, f.diagnosis) for f in report.findings if f.severity != "info"]
    assert not loud, loud
    assert isinstance(report.evidence.loss, np.ndarray)  # read back to the host once, at the end


def test_fp16_underflow_is_found_and_its_grad_scaler_fix_verified_on_the_gpu():
    report = audit_setup(_on_cuda("amp_underflow"))
    f = next(f for f in report.findings if f.rule == "amp-underflow")
    assert f.verified["outcome"] == "resolved", f.verified


def test_a_real_cuda_out_of_memory_is_one_line_and_the_memory_is_given_back(tmp_path):
    model = tmp_path / "model.py"
    model.write_text(
        "import torch\nfrom torch import nn\n\n"
        "class Greedy(nn.Module):\n"
        "    def __init__(self):\n        super().__init__()\n        self.lin = nn.Linear(4, 2)\n"
        "    def forward(self, x):\n"
        "        free, total = torch.cuda.mem_get_info()\n"
        "        waste = torch.empty(2 * total, dtype=torch.uint8, device='cuda')  # more than the device has\n"
        "        return self.lin(x) + waste[:1].float()\n\n"
        "model = Greedy().cuda()\n"
        "train_loader = [(torch.randn(8, 4, device='cuda'), torch.randint(0, 2, (8,), device='cuda'))] * 4\n")
    proc = subprocess.run([sys.executable, "-m", "auditor", str(model), "--out", str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    (line,) = [line for line in proc.stderr.splitlines() if "out of device memory" in line]
    assert line.startswith("audit: ") and "--in-place" in line and "GiB free now" in line, line


def test_the_api_leaves_a_gpu_model_where_it_was_and_unchanged():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 32), torch.nn.ReLU(), torch.nn.Linear(32, 3)).cuda()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    data = [(torch.randn(16, 6, device="cuda"), torch.randint(0, 3, (16,), device="cuda")) for _ in range(4)]
    auditor.audit(model, data, steps=20, amp="bf16")
    assert all(p.is_cuda for p in model.parameters())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


@pytest.mark.parametrize("folder", ["resnet50", "gpt2"])
def test_the_gpu_benchmark_models_load_and_probe_on_the_gpu(folder):
    if folder == "gpt2":
        pytest.importorskip("transformers")
    out = subprocess.run([sys.executable, "-c", (
        "import json, sys; sys.path.insert(0, '.');"
        "from auditor.load import load_files; from auditor.probe.run import ProbeOptions, run_probe;"
        f"s = load_files('bench/gpu/{folder}/model.py', 'bench/gpu/{folder}/loader.py');"
        "ev = run_probe(s, ProbeOptions(steps=3, checks=False));"
        "print(json.dumps({'device': ev.probe.device, 'amp': ev.probe.amp, 'loss': [float(x) for x in ev.loss]}))")],
        capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["device"].startswith("cuda") and got["amp"] == "bf16" and np.isfinite(got["loss"]).all()
