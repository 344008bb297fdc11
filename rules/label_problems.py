import numpy as np

from auditor.engine import Rule, Threshold
from auditor.evidence import pct
from auditor.report import figures


class LabelProblems(Rule):
    id = "label-problems"
    from_start = True
    summary = "Targets that collapse to one class per batch (an unshuffled loader), or severe class imbalance."
    thresholds = {
        "batch_majority": Threshold(0.9, "warn when a batch's most common class is at least this share, in most "
                                    "batches, while several classes exist", "a shuffled batch of 32 from even "
                                    "two balanced classes is >=90% one class with probability < 1e-5"),
        "imbalance": Threshold(0.9, "warn when one class is this share of all targets seen",
                               "Buda et al. 2018: imbalance at this level hurts CNN training markedly"),
    }
    why = """
A loader that is not shuffled, over a dataset sorted by class, serves batches of a single class: every step
pulls the whole network towards that class, the loss swings as classes change, and BatchNorm statistics are
per-class. Severe imbalance lets a model score well by always predicting the majority class.
"""
    example = """
DataLoader(dataset_sorted_by_label, batch_size=32)               # shuffle=False
"""
    use_instead = """
DataLoader(dataset, batch_size=32, shuffle=True)
# imbalance: a WeightedRandomSampler, or F.cross_entropy(..., weight=class_weights)
"""
    references = ("M. Buda, A. Maki, M. Mazurowski, 'A systematic study of the class imbalance problem in "
                  "convolutional neural networks', Neural Networks 2018",)

    def check(self, ev, t):
        if len(ev.labels) < 3:
            return
        counts = np.array([c for _, c in ev.labels], dtype=float)
        totals = counts.sum(1)
        counts, totals = counts[totals > 0], totals[totals > 0]
        if not totals.size:
            return
        majority = counts.max(1) / totals
        overall = counts.sum(0)
        present = int((overall > 0).sum())
        if present >= 2 and np.median(majority) >= t.batch_majority:
            yield self.finding(
                "warning", "Each batch holds (almost) one class: the loader is not shuffled",
                f"In {int((majority >= t.batch_majority).sum())} of {majority.size} batches seen, one class makes up "
                f"{pct(t.batch_majority)} or more of the targets (median {pct(float(np.median(majority)))}), "
                f"although {present} classes occur overall.",
                "Shuffle the training data:\n\nDataLoader(dataset, batch_size=32, shuffle=True)",
                [], batch_majority=majority.tolist(), classes_present=present)
        share = overall.max() / overall.sum()
        if share >= t.imbalance and present >= 2:
            yield self.finding(
                "warning", "Severe class imbalance",
                f"Class {int(overall.argmax())} is {pct(float(share))} of all targets seen: always predicting it "
                "scores well, so accuracy and loss say little.",
                "Re-weight the loss or re-sample:\n\n"
                "weights = 1 / counts.clamp(min=1); F.cross_entropy(logits, y, weight=weights / weights.sum())",
                [], share=float(share), counts=overall.astype(int).tolist())

    def draw(self, ax, ev, finding):
        if "batch_majority" in finding.evidence:
            values = finding.evidence["batch_majority"]
            figures.bars(ax, [str(s) for s, _ in ev.labels][: len(values)], values, "share of the commonest class",
                         guide=self.thresholds["batch_majority"].default, guide_label="threshold")
            ax.set_xlabel("probe step of the batch")
        else:
            counts = finding.evidence["counts"]
            figures.bars(ax, [str(i) for i in range(len(counts))], [max(c, 0.5) for c in counts],
                         "targets seen per class", log=True)


RULE = LabelProblems()
