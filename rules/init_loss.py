from auditor.engine import FixPlan, Rule, Threshold
from auditor.evidence import fmt
from auditor.report import figures


class InitLoss(Rule):
    id = "init-loss"
    from_start = True
    summary = "Loss at initialisation far above what an untrained model should score (-ln(1/C) for C classes)."
    thresholds = {
        "excess_nats": Threshold(0.5, "warn when the initial cross-entropy exceeds -ln(1/C) by this many nats",
                                 "measured: healthy samples start within 0.25 nats of -ln(1/C); BERT with its "
                                 "classifier x100 starts 0.76 nats (1.69x) above ln 3"),
        "warn_ratio": Threshold(1.5, "... and is at least this many times -ln(1/C)",
                                "measured: Hugging Face T5 from a tiny config starts 1.03 nats (1.25x) above ln 64 "
                                "at two seeds of three and trains normally; the lecture's bad init is 8x"),
        "error_ratio": Threshold(3.0, "error when the initial loss is this many times -ln(1/C)",
                                 "makemore lecture: 27 against 3.29 (x8) is the canonical bad init"),
        "mse_ratio": Threshold(4.0, "for MSE, warn when the initial loss exceeds mean(target^2) by this factor",
                               "an output whose scale is sqrt(3) times the targets' before any training"),
    }
    why = """
At initialisation the network knows nothing, so it should spread its probability evenly over the C classes
and score -ln(1/C). A much larger loss means the logits are large and confidently wrong: the first
hundreds or thousands of steps are spent shrinking the output layer instead of learning (the "hockey
stick" loss curve), and large logits also saturate the softmax, so gradients are noisy.
"""
    example = """
W2 = torch.randn(n_hidden, vocab_size)      # logits with std ~ sqrt(n_hidden)
b2 = torch.randn(vocab_size)
"""
    use_instead = """
W2 = torch.randn(n_hidden, vocab_size) * 0.01   # near-zero logits: uniform probabilities at init
b2 = torch.zeros(vocab_size)
# or, for an nn.Linear head:
with torch.no_grad():
    model.head.weight.mul_(0.01)
    model.head.bias.zero_()
"""
    known_problems = """
Judged whenever the loss the code computes is one of torch's: cross-entropy and NLL (-ln(1/C)), binary
cross-entropy (ln 2), MSE, L1 and Huber (the loss of a zero output), however it is handed over (the default,
a loss object, a custom class, a training_step, a Hugging Face model's own loss). A loss written from
scratch (no torch functional loss inside) is not judged.
"""
    references = ("A. Karpathy, makemore part 3 'Activations & Gradients, BatchNorm' (2022): fixing the initial loss",
                  "Glorot & Bengio, 'Understanding the difficulty of training deep feedforward networks', AISTATS 2010")

    def check(self, ev, t):
        from auditor.probe.lossspy import CLASSIFICATION  # `audit rules` runs without torch
        p = ev.probe
        loss, expected = p.initial_loss, p.expected_initial_loss
        if expected is None or loss is None or not (loss == loss) or expected <= 0:
            return
        mats = ev.matrices()
        if not mats:
            return
        head, bias = _output_layer(ev, mats)
        logits = f" The logits have std {fmt(p.logits_std)} where near 0 is expected." if p.logits_std else ""
        if p.num_classes or p.loss_fn in CLASSIFICATION:
            if loss - expected < t.excess_nats or loss < t.warn_ratio * expected:
                return
            ratio = loss / expected
            severity = "error" if ratio >= t.error_ratio else "warning"
            even = (f"(-ln(1/{p.num_classes})) of a model that spreads its bets evenly over {p.num_classes} "
                    "classes" if p.num_classes else "(ln 2) of a model that says 0.5 for every binary label")
            diagnosis = (f"The loss before any update is {fmt(loss)}, {fmt(ratio)}x the {fmt(expected)} "
                         f"{even}.{logits} The model starts confidently wrong.")
        else:
            ratio = loss / expected
            if ratio < t.mse_ratio:
                return
            severity = "warning"
            diagnosis = (f"The loss ({p.loss_fn}) before any update is {fmt(loss)}, {fmt(ratio)}x the "
                         f"{fmt(expected)} of an output near zero ({p.expected_initial_loss_reason}). The output "
                         "starts far too large.")
        zero_bias = f"\n    model.get_parameter({bias!r}).zero_()" if bias else ""
        fix = ("Scale the last layer down at initialisation and zero its bias, so the first predictions are "
               f"near-uniform:\n\nwith torch.no_grad():\n    model.get_parameter({head.name!r}).mul_(0.01)"
               f"{zero_bias}")
        yield self.finding(severity, "Loss at initialisation is far too high", diagnosis, fix, [head.name],
                           initial_loss=loss, expected_initial_loss=expected, ratio=ratio,
                           logits_std=p.logits_std, initial_losses=ev.initial_losses, bias=bias)

    def draw(self, ax, ev, finding):
        figures.initial_loss(ax, ev)

    metric = "loss at initialisation"

    def plan_fix(self, ev, finding):
        head, bias = finding.layers[0], finding.evidence.get("bias")

        edits = ((head, "scale", 0.01),) + (((bias, "fill", 0.0),) if bias else ())
        return FixPlan(f"{head} x 0.01" + (f", {bias} = 0" if bias else ""), param_edits=edits)

    def measure(self, ev, finding):
        return ev.probe.initial_loss


def _output_layer(ev, mats):
    """The output layer's weight and bias: read off the module that produced the output when the probe saw it
    (a head tied to the input embedding has only the embedding's name), else the last matrix in forward order."""
    named = getattr(ev.structure, "output_params", None) or []
    by_name = {p.name: p for p in ev.params}
    weights = [by_name[n] for n in named if n in by_name and len(by_name[n].shape) >= 2]
    if weights:
        biases = [n for n in named if n in by_name and len(by_name[n].shape) == 1]
        return weights[0], biases[0] if biases else None
    head = mats[-1]
    after = [q for q in sorted(ev.params, key=lambda q: q.order) if q.order > head.order and len(q.shape) == 1]
    return head, after[0].name if after else None


RULE = InitLoss()
