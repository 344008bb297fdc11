"""The HTML and PDF reports: every finding with its figure, the panels, escaping, offline, PDF text."""

import json
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest
from click.testing import CliRunner

from auditor.cli import cli
from auditor.engine import load_rules

SAMPLES = Path(__file__).resolve().parents[1] / "samples"
PANELS = {"Loss curve", "Activations at initialisation", "Activations at the end of the probe",
          "Gradients at the activations", "Update-to-data ratio", "Gradient-to-data ratio", "Global gradient norm"}


class _Outline(HTMLParser):
    """Collects findings, their images, panel titles, and every tag that could fetch from the network."""

    def __init__(self):
        super().__init__()
        self.findings, self.panels, self.fetching, self.scripts = [], [], [], 0
        self._in_panel_title = False
        self._figure_class = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        cls = a.get("class") or ""
        if tag == "article" and "finding" in cls:
            self.findings.append({"class": cls, "images": []})
        if tag == "figure":
            self._figure_class = cls
        if tag == "img":
            if self._figure_class == "evidence" and self.findings:
                self.findings[-1]["images"].append(a.get("src", ""))
            if not a.get("src", "").startswith("data:image/"):
                self.fetching.append(a.get("src"))
        if tag in ("link", "iframe") or (tag == "script"):
            self.scripts += tag == "script"
            self.fetching.append(a.get("href") or a.get("src") or tag)
        if tag == "h3" and self._figure_class == "panel":
            self._in_panel_title = True

    def handle_endtag(self, tag):
        if tag == "figure":
            self._figure_class = None
        if tag == "h3":
            self._in_panel_title = False

    def handle_data(self, data):
        if self._in_panel_title:
            self.panels.append(data.strip())


def test_html_has_every_finding_with_its_figure_and_the_panels(audit_sample):
    report = audit_sample("makemore_raw")
    html = report.to_html()
    outline = _Outline()
    outline.feed(html)
    assert len(outline.findings) == len(report.findings) >= 3
    for finding, parsed in zip(report.findings, outline.findings, strict=True):
        assert finding.severity in parsed["class"]
        assert len(parsed["images"]) == 1 and parsed["images"][0].startswith("data:image/png;base64,")
        assert finding.rule in html and finding.title.split(":")[0] in html
    assert set(outline.panels) == PANELS
    assert outline.fetching == [] and outline.scripts == 0  # opens offline, runs nothing
    assert 'id="parameters"' in html and 'id="activations"' in html
    assert "errors" in html and "11,897 parameters" in html
    verified = [f for f in report.findings if f.verified and "after" in f.verified]
    assert len(verified) >= 2  # init-loss and saturated-units: the makemore fixes
    assert html.count('class="proof"') == len(verified) and html.count('<div class="verified ') == len(verified)
    resolved = sum(f.verified["outcome"] == "resolved" for f in verified)
    assert html.count("Fix verified: the finding is gone.</strong> Applied to a copy") == resolved
    assert 'id="causes"' in html and html.index('id="causes"') < html.index('id="findings"')


def test_every_rule_draws_its_own_evidence(audit_sample):
    # A rule that does not override draw() falls back to the loss curve; the ones that read per-layer
    # evidence must draw it, or their finding's figure shows the wrong thing.
    own = {rule_id for rule_id, rule in load_rules().items() if "draw" in type(rule).__dict__}
    assert {"init-loss", "saturated-units", "dead-units", "update-ratio", "grad-data-ratio",
            "vanishing-gradients", "exploding-gradients", "loss-oscillation"} <= own


HOSTILE = "<script>alert(1)</script>"


def test_user_text_is_escaped(tmp_path):
    folder = tmp_path / HOSTILE.replace("/", "")  # a file path with markup in it
    folder.mkdir()
    (folder / "model.py").write_text(f'''
import torch
from torch import nn
torch.manual_seed(0)
model = nn.Sequential()
model.add_module("lin", nn.Linear(8, 64))
with torch.no_grad():
    model.lin.weight.mul_(20)  # saturates the tanh below: a finding that names the layer
model.add_module({HOSTILE!r}, nn.Tanh())
model.add_module("out", nn.Linear(64, 3))
''')
    (folder / "loader.py").write_text("import torch\ng = torch.Generator().manual_seed(0)\n"
                                      "train_loader = [(torch.randn(32, 8, generator=g), "
                                      "torch.randint(0, 3, (32,), generator=g)) for _ in range(10)]\n")
    r = CliRunner().invoke(cli, [str(folder / "model.py"), "--data", str(folder / "loader.py"), "--out",
                                 str(tmp_path / "out"), "--format", "html,json", "--steps", "20"])
    assert r.exit_code == 1, r.output
    data = json.loads((tmp_path / "out" / "report.json").read_text())
    assert any(HOSTILE in f["layers"] for f in data["findings"])  # the hostile name did reach a finding
    html = (tmp_path / "out" / "report.html").read_text()
    assert "<script" not in html.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_pdf_pages_and_text(tmp_path, audit_sample):
    pypdf = pytest.importorskip("pypdf")
    report = audit_sample("makemore_raw")
    report.write(tmp_path, ["pdf"])
    reader = pypdf.PdfReader(tmp_path / "report.pdf")
    text = [page.extract_text() for page in reader.pages]
    # One page for the summary and first finding, one per further finding (no finding is split),
    # then the panels, which start on a page of their own.
    assert len(reader.pages) >= len(report.findings) + 1
    joined = "\n".join(text)
    for f in report.findings:
        assert f.rule in joined
        pages = [i for i, t in enumerate(text) if f.rule in t and "Evidence for" in t]
        assert pages, f"{f.rule}: its finding and figure caption are not on one page"
    first_panel = next(i for i, t in enumerate(text) if "What was measured" in t)
    assert "Findings" not in text[first_panel]
    assert "Training-run audit" in text[0]


def test_missing_pdf_backend_still_writes_the_rest(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "weasyprint", None)  # import weasyprint now raises ImportError
    r = CliRunner().invoke(cli, [str(SAMPLES / "makemore_fixed" / "model.py"), "--data",
                                 str(SAMPLES / "makemore_fixed" / "loader.py"), "--out", str(tmp_path)])
    assert r.exit_code == 0, r.output
    assert {p.name for p in tmp_path.iterdir()} == {"report.json", "report.md", "report.html"}
    assert "report.pdf not written" in r.output and "pip install weasyprint" in r.output


def test_the_loss_curve_draws_the_per_element_expectation_only_on_a_curve_in_its_units():
    """A summed loss (pytorch/examples' VAE) runs in the thousands; ln 2 per element drawn across it is a line at
    a height that means nothing there."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from auditor.evidence import Evidence, ProbeInfo
    from auditor.report import drawing

    info = ProbeInfo(steps=10, steps_run=10, device="cpu", loss_fn="bce", loss_fn_reason="", loss_fn_default=False,
                     optimizer="Adam", optimizer_default=False, seed=0, parameters=1, initial_loss=0.69,
                     expected_initial_loss=0.69)
    ev = Evidence(probe=info, loss=np.linspace(7000, 3000, 10), loss_after=np.full(10, np.nan),
                  grad_norm=np.ones(10), params=[], activations=[])
    drawn = {}
    for start in (7000.0, 0.7):
        info.start_loss = start
        fig, ax = plt.subplots()
        drawing.loss_curve(ax, ev)
        drawn[start] = any(line.get_label().startswith("expected") for line in ax.get_lines())
        plt.close(fig)
    assert drawn == {7000.0: False, 0.7: True}
