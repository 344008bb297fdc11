from auditor.engine import Rule, Threshold
from auditor.evidence import fmt
from auditor.report import figures


class BatchMixing(Rule):
    id = "batch-mixing"
    reads = ("batch_mixing",)
    from_start = True
    summary = "One sample's output depends on other samples of the batch (view used as transpose, batch_first)."
    thresholds = {
        "leak": Threshold(1e-4, "error when another sample's input gets a gradient above this fraction of the "
                          "sample's own", "exactly 0 when samples are independent; float noise is far below"),
    }
    why = """
Samples of a batch must not see each other: a `view`/`reshape` used where a `transpose`/`permute` was meant,
or an RNN given (batch, time, features) with `batch_first=False`, silently mixes them. The model still trains,
on a scrambled task, and at inference (batch of one) it behaves differently. The probe takes the gradient of
the last sample's output with respect to the whole input batch, in eval mode so that BatchNorm (which mixes
the batch legitimately in training) uses running statistics: any gradient on another sample is a leak.
"""
    example = """
self.rnn = nn.LSTM(n_in, n_hidden)               # batch_first=False ...
out, _ = self.rnn(x)                             # ... but x is (batch, time, features)
"""
    use_instead = """
self.rnn = nn.LSTM(n_in, n_hidden, batch_first=True)
x = x.permute(0, 2, 1)                           # not x.view(B, C, T) to swap axes
"""
    known_problems = """
Token inputs are checked at the first nn.Embedding's output; models that index a raw parameter (C[x]) or use
training_step are not checked.
"""
    references = ("A. Karpathy, 'A Recipe for Training Neural Networks' (2019): 'use backprop to chart "
                  "dependencies'",)

    def check(self, ev, t):
        m = ev.batch_mixing
        if not m or m["own"] <= 0 or m["others_max"] <= t.leak * m["own"]:
            return
        yield self.finding(
            "error", "Samples in a batch leak into each other",
            f"The last sample's output has a gradient with respect to {m['leaking']} of the other "
            f"{m['batch'] - 1} samples' inputs (largest {fmt(m['others_max'])}, against {fmt(m['own'])} on its "
            "own input), in eval mode. Each sample's prediction depends on the rest of the batch.",
            "Find the reshape that crosses the batch axis; swap axes with permute/transpose, and tell RNNs the "
            "layout:\n\nnn.LSTM(n_in, n_hidden, batch_first=True)\nx = x.transpose(1, 2)   # not x.view(...)",
            [], **m)

    def draw(self, ax, ev, finding):
        m = finding.evidence
        figures.bars(ax, ["own input", "largest other sample"], [m["own"], max(m["others_max"], 1e-30)],
                     "max |d output_last / d input|", log=True, highlight=["largest other sample"])


RULE = BatchMixing()
