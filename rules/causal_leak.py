from auditor.engine import Rule, Threshold
from auditor.evidence import fmt
from auditor.report import figures


class CausalLeak(Rule):
    id = "causal-leak"
    from_start = True
    reads = ("causal_leak",)
    summary = "A next-token model whose output at position t sees the inputs after t (attention without its mask)."
    thresholds = {
        "tolerance": Threshold(1e-6, "a future position leaks when its gradient exceeds this fraction of the present "
                               "and past positions' largest", "a causal model gives exactly 0: masked softmax "
                               "weights are exact zeros"),
    }
    why = """
A language model trained on next-token targets must predict token t+1 from tokens up to t. If attention is not
masked (or a convolution is not left-padded, or a bidirectional RNN is used), position t can see token t+1
itself: the loss falls towards zero in a few hundred steps because the model copies, and at generation time,
where the future is not there, it produces garbage. Nothing in the loss curve says so; only the dependence
of each output on later inputs does.
"""
    example = """
y = F.scaled_dot_product_attention(q, k, v)            # no mask: every position sees all others
"""
    use_instead = """
y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
# or: att = att.masked_fill(torch.tril(torch.ones(T, T)) == 0, float('-inf'))
"""
    known_problems = """
Only judged when the batches are next-token batches: targets equal the inputs shifted by one, or `labels`
equal `input_ids` (Hugging Face causal LMs, which shift inside), and when the model embeds its tokens with an
nn.Embedding. Bidirectional encoders trained on other targets are not judged.
"""
    references = ("Vaswani et al., 'Attention Is All You Need', NeurIPS 2017, 3.2.3: masking future positions",
                  "A. Karpathy, nanoGPT model.py: the causal mask / is_causal=True")

    def check(self, ev, t):
        c = ev.causal_leak
        if not c or c["own"] <= 0 or c["future"] <= t.tolerance * c["own"]:
            return
        where = c["modules"]
        alike = c.get("same_code", [])
        more = " ..." if len(alike) > 4 else ""
        also = f" (and probably in {', '.join(alike[:4])}{more}, the same code)" if alike else ""
        in_where = f" The future gets in at {', '.join(where[:4])}{also}." if where else ""
        yield self.finding(
            "error", "The model sees the tokens it must predict",
            f"Trained on next-token targets, the output at position {c['position']} of {c['length']} depends on the "
            f"inputs after it: their gradient reaches {fmt(c['future'])}, against {fmt(c['own'])} for the positions "
            f"up to it (a causal model gives exactly 0).{in_where} The model can copy the next token, so the "
            "training loss falls while nothing is learnt that works at generation time.",
            "Mask the future positions in attention:\n\n"
            "y = F.scaled_dot_product_attention(q, k, v, is_causal=True)\n"
            "# or att = att.masked_fill(torch.tril(torch.ones(T, T, device=att.device)) == 0, float('-inf'))",
            where + alike, future=c["future"], own=c["own"], position=c["position"], length=c["length"])

    def draw(self, ax, ev, finding):
        c = ev.causal_leak
        figures.bars(ax, ["positions <= t", "positions > t"], [max(c["own"], 1e-30), max(c["future"], 1e-30)],
                     f"gradient of output {c['position']} w.r.t. the inputs", log=True, highlight=(1,))


RULE = CausalLeak()
