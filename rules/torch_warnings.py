from auditor.engine import Rule

# Warnings another rule turns into a finding of its own, with its numbers.
COVERED = {"Using a target size": "loss-broadcast"}


class TorchWarnings(Rule):
    id = "torch-warnings"
    summary = "Torch (or a library) warned while your forward or loss ran: the warning, once, with your line."
    why = """
Torch warns about code that runs but probably does not do what was meant: a softmax or log_softmax without
`dim` (which picks dimension 0, the batch, for 1-D and 3-D inputs), shapes that broadcast, deprecated
arguments whose meaning changed. Each warning is printed once to stderr, among the training logs, and is
lost. The audit records the warnings raised while the model and loss ran and reports each once, with the
line of your code that led to it.
"""
    example = """
logp = F.log_softmax(logits)          # (B, T, C): implicit dim=0, normalised over the batch
"""
    use_instead = """
logp = F.log_softmax(logits, dim=-1)
"""
    known_problems = """
Reported as information: a warning is a hint, and the rules that measure its effect (overfit-one-batch,
loss-plateau) say how much it costs. In a model.py audit, warnings raised while the model was built or the data
loaded, before the probe, are not seen; in `audit run` every warning the script raises up to its last observed
step is, kept off stderr like the replay's.
"""
    references = ("Python docs, warnings: the 'default' action shows a warning once per location",)

    def check(self, ev, t):
        shown = [w for w in ev.warnings if not any(w["message"].startswith(k) for k in COVERED)]
        if not shown:
            return
        first = shown[0]
        when = "after the replay, in the experiments" if first["step"] is None else f"at step {first['step']}"
        listing = "\n".join(f"- {w['where']}: {w['category']}: {w['message']}" for w in shown[:8])
        more = f"\n(and {len(shown) - 8} more)" if len(shown) > 8 else ""
        origin = f" (raised in {first['origin']})" if first["origin"] and first["origin"] != first["where"] else ""
        count = "A warning was" if len(shown) == 1 else f"{len(shown)} warnings were"
        yield self.finding(
            "info", f"{count} raised while your " + ("script ran" if ev.loop is not None else "model and loss ran"),
            f"{'F' if len(shown) == 1 else 'The first f'}rom {first['where']}{origin}, {when}: {first['message']}",
            f"Do what each warning asks, at the line it names:\n\n{listing}{more}",
            [w["where"] for w in shown[:4]], warnings=shown)


RULE = TorchWarnings()
