import numpy as np
from auditor.rules import batch_mixing, init_loss, init_scale, input_scale, update_ratio, vanishing_gradients

from auditor.engine import Rule, Threshold
from auditor.evidence import (
    best_sweep_loss,
    body_activations,
    depth_profile,
    end_level,
    first_pass,
    first_update_level,
    floor_tolerance,
    fmt,
    fresh_level,
    input_free_loss,
    inputs_blind,
    loss_prefix,
    nanmedian,
    pct,
    profile_ends,
    smooth,
    sweep_new_samples_only,
    update_level,
)
from auditor.report import figures


def _bar(rule, name: str) -> float:
    """Another rule's default threshold: the rules that judge a network unsound are the judges here too."""
    return rule.RULE.thresholds[name].default


def _sound(ev, t) -> bool:
    """A network that cannot learn from its inputs (dead or saturated units, huge inputs, a bad start) also
    sits at the label-frequency loss; only a sound one sitting there points at the labels."""
    p = ev.probe
    if p.initial_loss is None or p.expected_initial_loss is None or not np.isfinite(ev.loss).all():
        return False
    if p.initial_loss - p.expected_initial_loss > _bar(init_loss, "excess_nats"):
        return False
    if first_update_level(ev) > _bar(update_ratio, "first_high"):  # a rate that knocked the network out
        return False
    # Steps that barely move the weights (gradients cleared before step() in a script's loop, a rate far too low)
    # learn nothing from any labels.
    level, moved = update_level(ev)
    if list(ev.matrices()) and (not moved or level < _bar(update_ratio, "low")):
        return False
    for a in ev.activations:
        if nanmedian(a.dead) >= t.broken_units or nanmedian(a.saturated) >= t.broken_units:
            return False
    # The signal's scale across depth, forward (init-scale's bar) and backward (vanishing-gradients' bar).
    stds = [float(a.std[0]) for a in body_activations(ev) if a.std.size and np.isfinite(a.std[0]) and a.std[0] > 0]
    factor = _bar(init_scale, "factor")
    if len(stds) >= 3 and not 1 / factor <= stds[-1] / stds[0] <= factor:
        return False
    _, scale, source = depth_profile(ev)
    scale = scale[np.isfinite(scale) & (scale > 0)]
    if scale.size >= 3 and abs(np.log10(np.divide(*profile_ends(scale, source)))) >= _bar(vanishing_gradients,
                                                                                          "decades"):
        return False
    # A model whose outputs mix the samples of a batch (an LSTM fed (batch, time) without batch_first) learns
    # nothing that carries from one batch to the next either, on labels that do belong to their inputs.
    m = ev.batch_mixing
    if m and m["own"] > 0 and m["others_max"] > _bar(batch_mixing, "leak") * m["own"]:
        return False
    stats = ev.input_stats
    if stats:
        rms = np.sqrt(np.square(stats["mean"]) + np.square(stats["std"]))
        if rms.max() > _bar(input_scale, "max_rms"):
            return False
    return True


def _model_free(signal: dict | None) -> str:
    if not signal:
        return ""
    if signal.get("kind") == "regression":
        return (f" Without any network, a ridge regression on the raw inputs predicts {signal['samples']} samples it "
                f"was not fitted on with a squared error of {fmt(signal['error'])}, against {fmt(signal['baseline'])} "
                "for predicting the targets' mean.")
    return (f" Without any network, a nearest-class-mean classifier on the raw inputs scores {pct(signal['accuracy'])} "
            f"on {signal['samples']} samples it was not fitted on, against {pct(signal['majority'])} for always "
            "naming the commonest class.")


class LabelProblems(Rule):
    id = "label-problems"
    from_start = True
    reads = ("lr_range", "overfit")  # the unrelated-labels test needs both experiments
    summary = ("Labels unrelated to their inputs (shuffled apart), one class per batch (an unshuffled loader), or "
               "severe class imbalance.")
    thresholds = {
        "batch_majority": Threshold(0.9, "warn when a batch's most common class is at least this share, in most "
                                    "batches, while several classes exist", "a shuffled batch of 32 from even "
                                    "two balanced classes is >=90% one class with probability < 1e-5"),
        "imbalance": Threshold(0.9, "warn when one class is this share of all targets seen",
                               "Buda et al. 2018: imbalance at this level hurts CNN training markedly"),
        "prior_margin": Threshold(0.97, "labels look unrelated to their inputs when neither the probe's end loss "
                                  "nor the LR range test's best gets below this fraction of the label-frequency "
                                  "entropy (for mean squared error, the targets' variance)",
                                  "Zhang et al. 2017: on shuffled labels nothing generalises; measured: healthy "
                                  "samples end 5-90% below it"),
        "noise_z": Threshold(2.0, "... or within this many standard errors of the batch-to-batch spread of that "
                             "floor, where that is wider (regression targets: one batch's variance varies)",
                             "2 standard errors of a median (1.25 sigma / sqrt(n)), sigma the median deviation of the "
                             "floor over batches; measured: a batch of 64 standardised targets varies 0.16-0.19 "
                             "about the variance; shuffled targets' best sweep median sat 0.13 below it, a model "
                             "learning through dropout 0.15 below it on the loader's first pass (3 let it fire)"),
        "above": Threshold(0.1, "... and the end loss, or else (where the raw inputs do not beat the commonest "
                           "class) the LR range test's best, no more than this fraction above that floor: a model "
                           "fitting labels unrelated to its inputs ends a little above their entropy, its confident "
                           "guesses wrong; far above it at every rate, something else (an initialisation, a rate) "
                           "keeps it there",
                           "measured: shuffled labels on MobileNetV3 from scratch end 3.3% above the floor on the "
                           "loader's first pass under torch 2.14, 5.05% under torch 2.6 (tests/test_zoo.py); twice "
                           "the larger. The ResNet-18 recipe (SGD 0.1 per 256, batches of 16) ends 41-58% above "
                           "it, its range test's best on new samples 2-5% above"),
        "blind_z": Threshold(2.0, "the raw inputs show no sign of carrying their labels when the nearest-class-mean "
                             "classifier scores at most the commonest class's share and at most this many standard "
                             "errors above what its own guesses would score by chance (for MSE: when a ridge "
                             "regression's gain over the targets' mean is within this many standard errors of none); "
                             "then the range test is read on samples its copy had not trained on, and the end loss "
                             "may sit far above the floor",
                             "a one-sided test at about 2.3% false alarms; measured: on a 90/10 pair of Gaussians real "
                             "labels score 87.8% against a chance of 74.9% (19 standard errors above), shuffled ones "
                             "55% against 58%"),
        "inputs_help": Threshold(0.1, "... and zeroing the inputs raises the trained model's loss by less than this "
                                 "fraction", "measured: +3% on the shuffled-labels sample, +25% to +120% on the "
                                 "healthy ones"),
        "broken_units": Threshold(0.5, "... and no layer has this share of dead or saturated units (then the network, "
                                  "not the labels, explains the stuck loss)", "dead-units' error bar"),
        "learnt": Threshold(0.8, "... and where the replay went round the loader, the whole run's end loss (its last "
                            "fifth, on batches seen before) stays above this fraction of that floor: a model that "
                            "ends far below it learnt from its inputs, only slower than one pass",
                            "Zhang et al. 2017: random labels are fitted far more slowly than real ones; measured: "
                            "shuffled or shifted labels on BERT, ViT, ResNet-18, MobileNetV3, the regression MLP and "
                            "two samples end at 0.95-1.02 of the floor after 100 steps, a healthy ShuffleNet-V2 that "
                            "learnt nothing on its first pass (seed 1) at 0.44"),
        "inputs_predict": Threshold(1e-3, "... and the raw inputs do not predict their labels: a nearest-class-mean "
                                    "classifier on them, scored on samples it was not fitted on, beats the "
                                    "commonest class's share with a one-sided binomial p below this (then the "
                                    "labels belong to their inputs and the model is slow, not blind)",
                                    "a significance level, one false veto in a thousand on unrelated labels; "
                                    "measured on 128 synthetic images: true labels 100% at p < 1e-100, shuffled "
                                    "or shifted 5-13% against a commonest share of 13-16%, p 0.64-0.99; VGG-11 "
                                    "without BatchNorm at 0.01 per 256, which learns nothing in 100 steps, was "
                                    "taken for unrelated labels before this"),
        "memorised": Threshold(0.2, "... while the one-batch experiment memorises (best loss below this fraction "
                               "of its start)", "measured: 0.1% on the shuffled-labels sample; plain cross-entropy "
                               "memorises 8 samples to under 1%"),
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
    known_problems = """
The unrelated-labels check reads the loader's first pass and the run's end: a long probe (--steps in the
thousands) over a small dataset can memorise even random labels, and a model that ends far below the
label-frequency loss is then taken as one that learnt. Keep the probe to a few passes over the data.
"""
    references = ("C. Zhang et al., 'Understanding deep learning requires rethinking generalization', ICLR 2017",
                  "M. Buda, A. Maki, M. Mazurowski, 'A systematic study of the class imbalance problem in "
                  "convolutional neural networks', Neural Networks 2018",)

    def check(self, ev, t):
        yield from self._unrelated(ev, t)
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

    def _unrelated(self, ev, t):
        """The model memorises one batch, yet nothing carries over to the next: neither the probe nor any rate
        of the LR range test beats the loss of predicting the label frequencies. Labels shuffled apart from
        their inputs, or inputs that carry no information about them."""
        floor, swept, o = input_free_loss(ev), best_sweep_loss(ev, t.blind_z), ev.overfit
        if floor is None or floor[0] <= 0 or swept is None or not o or loss_prefix(ev).size < 20:
            return
        prior, what, _ = floor
        memorised = np.nanmin(o["losses"]) <= t.memorised * o["losses"][0]
        end, steps = fresh_level(ev)
        # At the input-free floor, not above it: a loss stuck far above it is another problem (an
        # initialisation or a rate that has not even learnt the label frequencies), unless the inputs show no
        # sign of carrying their labels and the range test's rates reach the floor and none goes below it: then
        # your rate explains only the excess (a model that memorises labels unrelated to its inputs guesses
        # wrong with confidence on the next batch).
        tolerance = floor_tolerance(floor, t.prior_margin, t.noise_z, steps)
        swept_tolerance = floor_tolerance(floor, t.prior_margin, t.noise_z, 5)  # a median of 5
        at_prior = end - prior >= -tolerance and (
            end - prior <= max(tolerance, t.above * prior)
            or (inputs_blind(ev, t.blind_z) and swept - prior <= max(swept_tolerance, t.above * prior)))
        swept_below = swept < prior - swept_tolerance
        z = ev.zeroed_inputs
        # Zeroed on batches the model trained on; after a second pass over the loader that measures what it
        # memorised of them as much as what it learnt, and the fresh level above decides instead.
        # A model that got below the floor on batches it had not seen yet learnt something from its inputs.
        first, repeated = first_pass(ev)
        # The lowest of the pass's running medians is judged as the lowest of that many draws: at noise_z for one
        # median, a pass of 64 noisy steps dips that far below the floor by chance (regression targets shifted
        # by one sample: 0.795 against a bar of 0.822, at a floor of 1.0 it never left).
        from scipy.stats import norm  # here: `audit rules` loads this module without scipy

        windows = max(1, int(np.isfinite(first).sum()) // 5)
        z_lowest = float(norm.isf(norm.sf(t.noise_z) / windows))
        if np.nanmin(smooth(first, 5)) < prior - floor_tolerance(floor, t.prior_margin, z_lowest, 5):
            return
        if repeated and end_level(ev) < t.learnt * prior:
            return  # learnt later on: slow, not blind to its inputs (random labels are not fitted this fast)
        inputs_help = bool(z) and not repeated and np.mean(z["zeroed"]) > (1 + t.inputs_help) * np.mean(z["real"])
        signal = ev.label_signal
        if signal and signal["p"] < t.inputs_predict:
            return  # the inputs carry their labels: a slow model, not labels drawn apart from their inputs
        if not memorised or not at_prior or swept_below or inputs_help or not _sound(ev, t):
            return
        yield self.finding(
            "error", "The labels do not depend on the inputs",
            f"The model memorises a single batch of {o['samples']} samples (loss {fmt(o['losses'][0])} -> "
            f"{fmt(float(np.nanmin(o['losses'])))}), but across batches the loss ends at {fmt(end)} and no rate of the "
            f"LR range test gets it below {fmt(swept)}"
            f"{' on samples it had not trained on yet' if sweep_new_samples_only(ev, t.blind_z) else ''}: no better "
            f"than {fmt(prior)}, {what}, which a model that "
            "ignores its input scores. Nothing learnt on one batch carries to the next: the labels are not those "
            f"of their inputs.{_model_free(signal)} No learning rate fixes this.",
            "Check that inputs and labels are paired: shuffle them together, never separately, and index both with "
            "the same permutation:\n\n"
            "perm = torch.randperm(len(X))\nX, y = X[perm], y[perm]          # not X[perm], y[torch.randperm(len(y))]",
            [], prior_entropy=prior, prior_what=what, end_loss=end, sweep_best=swept,
            sole_fix=f"Fix label-problems first: below {fmt(prior)}, {what}, a loss on labels unrelated to their "
                     "inputs falls only as the model memorises the samples it has seen, so a change that lowers it "
                     "hides the cause; no change of the model or the rate removes it.")

    def draw(self, ax, ev, finding):
        if "prior_entropy" in finding.evidence:
            figures.loss_curve(ax, ev, expected=False)
            ax.axhline(finding.evidence["prior_entropy"], color="C3", ls="--", lw=1.2,
                       label=finding.evidence.get("prior_what", "the entropy of the label frequencies"))
            ax.legend(fontsize=7)
            return
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
