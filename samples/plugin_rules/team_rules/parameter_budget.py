from auditor.engine import Rule, Threshold


class ParameterBudget(Rule):
    id = "team-parameter-budget"
    from_start = True
    summary = "The model is larger than the team's budget for this job."
    thresholds = {
        "max_millions": Threshold(100.0, "most parameters allowed, in millions",
                                  "the team's GPU budget: a 100M model trains in a night on one of our cards"),
    }
    why = """
Our nightly jobs are sized for models up to the budget: a larger one overruns the reservation and is killed
before it finishes, which wastes the night.
"""
    use_instead = """
Shrink the model, or ask for a bigger reservation and raise the budget:
    [tool.auditor.rules.team-parameter-budget]
    max_millions = 350
"""
    references = ("Team handbook, 'Sizing a nightly job'",)

    def check(self, ev, t):
        millions = ev.probe.parameters / 1e6
        if millions > t.max_millions:
            yield self.finding(
                "warning", "Model is over the team's parameter budget",
                f"The model has {millions:.3g}M trainable and frozen parameters, over the budget of "
                f"{t.max_millions:g}M.",
                "Shrink the model (fewer layers or a narrower width), or raise max_millions with a bigger "
                "reservation.", millions=millions, budget=t.max_millions)


RULE = ParameterBudget()
