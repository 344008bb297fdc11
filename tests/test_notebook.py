"""Issue 21: in a notebook the report returned by auditor.audit() shows itself inline: the same HTML as
report.html, figures included, in a frame that keeps its page styles off the notebook's."""

import html
import importlib.util
import re

import pytest

CELLS = [
    """import torch
from torch import nn
import auditor

torch.manual_seed(0)
x = torch.randn(512, 20)
y = (x[:, :5].sum(1) > 0).long() + 2 * (x[:, 5:10].sum(1) > 0).long()
loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=32, shuffle=True)
model = nn.Sequential(nn.Linear(20, 64), nn.Tanh(), nn.Linear(64, 4))
with torch.no_grad():
    model[2].weight.mul_(30)   # a loss at init far above ln 4: a finding to show
report = auditor.audit(model=model, loader=loader, steps=30, verify_fixes=False)""",
    "report",
]


@pytest.mark.skipif(not all(importlib.util.find_spec(m) for m in ("nbclient", "nbformat", "ipykernel")),
                    reason="nbclient, nbformat and ipykernel are test extras")
def test_a_notebook_shows_the_report_inline(tmp_path):
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in CELLS]
    # "python3" is ipykernel's own spec: this interpreter, the test environment, where auditor is installed.
    client = NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    outputs = nb.cells[1].outputs
    shown = [o for o in outputs if o.get("output_type") == "execute_result"]
    assert shown, outputs
    frame = shown[0]["data"]["text/html"]
    assert frame.startswith("<iframe srcdoc=")
    page = html.unescape(re.search(r'srcdoc="([^"]*)"', frame).group(1))
    assert "Training-run audit" in page and "init-loss" in page
    assert page.count("data:image/png;base64,") >= 5  # the figures travel with it
    assert "<style>" not in frame.split("srcdoc=")[0]  # nothing outside the frame restyles the notebook
