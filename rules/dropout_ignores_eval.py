from auditor.engine import Rule


class DropoutIgnoresEval(Rule):
    id = "dropout-ignores-eval"
    reads = ("eval_dropout",)
    from_start = True
    summary = ("The forward still drops units in eval mode: F.dropout(x, p) without training=self.training (its "
               "default is True), so validation and predictions are random draws.")
    why = """
`nn.Dropout` follows `model.eval()`; the function `F.dropout(x, p)` does not: its `training` argument defaults
to True, so it drops units whatever mode the model is in unless it is passed `training=self.training`. The
same holds for `F.scaled_dot_product_attention(..., dropout_p=p)`. Training is unaffected, but every
validation pass and every prediction is then a random, degraded draw: the validation loss is noisy and too
high, early stopping and model selection read noise, and the deployed model is not the one trained.
"""
    example = """
def forward(self, x):
    return self.fc2(F.dropout(F.relu(self.fc1(x)), p=0.5))      # on in eval mode too
"""
    use_instead = """
def forward(self, x):
    return self.fc2(F.dropout(F.relu(self.fc1(x)), p=0.5, training=self.training))
    # or: self.drop = nn.Dropout(0.5) in __init__, and self.drop(...) here
"""
    known_problems = ("Monte Carlo dropout (Gal & Ghahramani 2016) keeps dropout on at inference on purpose; pass "
                      "training=True explicitly there and ignore this rule for that model.")
    references = ("PyTorch docs, torch.nn.functional.dropout: 'training: apply dropout if is True. Default: True'",
                  "PyTorch docs, torch.nn.Module.eval")

    def check(self, ev, t):
        sites = (ev.eval_dropout or {}).get("sites") or {}
        if not sites:
            return
        where = ", ".join(f"{site} (p={p:g})" for site, p in sites.items())
        yield self.finding(
            "warning", "Dropout stays on in eval mode",
            f"A forward with the model in eval mode (model.eval(), as validation and inference run it), on a "
            f"copy, still drew dropout masks at {where}: a dropout function called without the module's "
            "training flag, whose default is True. Every validation loss and every prediction is then a random "
            "draw from a thinned network, noisier and worse than the model trained.",
            "Pass the module's own flag, or use an nn.Dropout submodule, which follows model.eval():\n\n"
            "x = F.dropout(x, p=0.5, training=self.training)\n"
            "# attention: F.scaled_dot_product_attention(q, k, v, dropout_p=self.p if self.training else 0.0)",
            [], onset=0, sites=sites)


RULE = DropoutIgnoresEval()
