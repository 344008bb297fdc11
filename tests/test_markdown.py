"""Markdown as GitHub renders it (cmarkgfm is GitHub's own renderer, GFM extensions on): tables are tables,
and strings from the user's code never become markup, raw HTML or an @-mention."""

import json
import re

import cmarkgfm
import pytest
from cmarkgfm.cmark import Options

from auditor import audit
from auditor import diff as differ
from auditor.report import markdown

HOSTILE = "x|<img src=x onerror=alert(1)>@admin*"


def render(text: str) -> str:
    # Unsafe: raw HTML passes through, as GitHub's sanitiser would let <details> and <sub> through; anything
    # from the user that reached the output as a tag would show here.
    return cmarkgfm.github_flavored_markdown_to_html(text, options=Options.CMARK_OPT_UNSAFE)


def _text_outside_code(html: str) -> str:
    return re.sub(r"<code>.*?</code>|<pre>.*?</pre>", "", html, flags=re.S)


@pytest.fixture(scope="module")
def hostile_report():
    import torch
    from torch import nn

    torch.manual_seed(0)
    model = nn.Sequential()
    model.add_module("hidden", nn.Linear(8, 16))
    model.add_module("act", nn.Tanh())
    model.add_module(HOSTILE, nn.Linear(16, 5))
    with torch.no_grad():
        model.get_submodule(HOSTILE).weight.mul_(40)  # loss at init far above ln 5: init-loss names this layer
    data = [(torch.randn(32, 8), torch.randint(0, 5, (32,))) for _ in range(8)]
    return audit(model, data, steps=20, verify_fixes=False)


def test_report_md_renders_tables_and_keeps_user_strings_inert(hostile_report):
    assert any(HOSTILE in " ".join(f.layers) for f in hostile_report.findings)
    html = render(hostile_report.to_markdown())
    assert "<table>" in html
    assert "<img" not in html and "onerror=alert" not in _text_outside_code(html).replace("&lt;", "")
    assert not re.search(r"(^|\W)@admin", _text_outside_code(html))
    for row in re.findall(r"<tr>(.*?)</tr>", html, flags=re.S):
        cells = row.count("<td") + row.count("<th")
        assert cells in (2, 4), row  # the summary table has 2 columns, the findings table 4


def test_diff_md_renders_and_keeps_user_strings_inert(hostile_report):
    data = json.loads(json.dumps(hostile_report.to_dict()))
    clean = json.loads(json.dumps(hostile_report.to_dict()))
    clean["findings"], clean["root_causes"] = [], []
    html = render(differ.to_markdown(differ.compare(clean, data)))
    assert "<table>" in html and "<details>" in html and "<img" not in html
    assert not re.search(r"(^|\W)@admin", _text_outside_code(html))
    for row in re.findall(r"<tr>(.*?)</tr>", html, flags=re.S):
        assert row.count("<td") + row.count("<th") in (3, 5, 6), row


@pytest.mark.parametrize("s", ["a|b", "`tick`", "``x`", "<b>x</b>", "@team", "[link](http://x)", "*em*"])
def test_text_and_code_are_literal(s):
    for rendered in (render(f"| h |\n|---|\n| {markdown.text(s)} |"), render(f"| h |\n|---|\n| {markdown.code(s)} |")):
        assert rendered.count("<td>") == 1
        assert "<b>x" not in rendered and "<em>" not in rendered
        # A bare URL may be autolinked (GFM does that to any text, showing the URL itself); a hidden target may not.
        assert "[link]" in s and "[link]" in rendered or "[link]" not in s


def test_fit_keeps_a_comment_under_githubs_limit():
    body = "\n\n".join(["## head", "| a |\n|---|\n| 1 |"]
                       + [f"<details>\n<summary>{i}</summary>\n\n{'x' * 3000}\n\n</details>" for i in range(40)])
    out = markdown.fit(body, markdown.GITHUB_COMMENT_LIMIT, more="https://example.org/run/1")
    assert len(body) > markdown.GITHUB_COMMENT_LIMIT >= len(out)
    assert out.count("<details>") == out.count("</details>") > 0
    assert "https://example.org/run/1" in out and "left out" in out
    assert markdown.fit("short") == "short"


def test_call_site_names_are_not_mail_links():
    html = render(markdown.text("tanh@model.py:26 is saturated"))
    assert "mailto:" not in html and "model.py:26" in html
