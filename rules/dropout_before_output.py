from auditor.engine import Rule
from auditor.report import figures


class DropoutBeforeOutput(Rule):
    id = "dropout-before-output"
    from_start = True
    summary = "Dropout right before the output layer of a regression model: noisy predictions, biased variance."
    why = """
Dropout zeroes inputs of the next layer at random and scales the rest by 1/(1-p). Feeding the output layer
directly, that noise lands on the prediction itself: in regression (mean-squared error) the model is trained
to fit noisy outputs, and at evaluation, without dropout, the output's variance differs from training's (the
"variance shift" of Li et al. 2019). Classifiers tolerate it (VGG and AlexNet do it), since
the argmax survives the noise; the rule reports those as info.
"""
    example = """
self.head = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Dropout(0.5), nn.Linear(64, 1))   # MSE
"""
    use_instead = """
self.head = nn.Sequential(nn.Linear(64, 64), nn.Dropout(0.5), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(),
                          nn.Linear(64, 1))   # dropout earlier, a clean layer before the output
"""
    references = ("N. Srivastava et al., 'Dropout: A Simple Way to Prevent Neural Networks from Overfitting', "
                  "JMLR 2014",
                  "X. Li et al., 'Understanding the Disharmony between Dropout and Batch Normalization by Variance "
                  "Shift', CVPR 2019 (the train/test variance shift dropout causes)")

    def check(self, ev, t):
        s = ev.structure
        if not s or not s.calls:
            return
        calls = {c.name: c for c in s.calls}
        out = s.output_producer or next((c.name for c in reversed(s.calls) if c.type == "Linear"), None)
        drops = [a for a, b in s.edges if b == out and calls[a].dropout_p and calls[a].training]
        if not drops:
            return
        p = calls[drops[0]].dropout_p
        regression = ev.probe.loss_fn == "mse"
        yield self.finding(
            "warning" if regression else "info", "Dropout feeds the output layer directly",
            f"{drops[0]} (p={p}) feeds {out}, the layer that produces the output"
            + (": with a mean-squared-error loss, its noise lands on the predictions themselves." if regression
               else "; common in classifiers, harmless to the argmax, but it adds noise to the logits."),
            "Move dropout before an earlier layer, or lower p:\n\n"
            "nn.Sequential(..., nn.Dropout(p), nn.Linear(h, h), nn.ReLU(), nn.Linear(h, n_out))",
            [drops[0], out], p=p, output_layer=out)

    def draw(self, ax, ev, finding):
        figures.chain(ax, [(c.name, c.type + (f"(p={c.dropout_p})" if c.dropout_p else "")) for c in
                           ev.structure.calls], highlight=finding.layers[:1])


RULE = DropoutBeforeOutput()
