"""Root causes: the graph from counterfactuals, onsets and mechanisms, and the verdict on each verified fix."""

import numpy as np

from auditor.causes import LR_HIGH, LR_LOW, MECHANISMS, link
from auditor.engine import Finding, load_rules
from auditor.verify import _outcome


def _f(rule, severity="warning", onset=None, advice=None):
    return Finding(rule, severity, rule, "", "", onset=onset, advice=advice)


def test_counterfactual_links_what_a_fix_removed():
    lr, dead, plateau = _f("lr-range", onset=0, advice=LR_HIGH), _f("dead-units", "error", 12), _f("loss-plateau")
    roots = link([dead, plateau, lr], removed_by={"lr-range": {"dead-units", "loss-plateau"}})
    assert roots == ["lr-range"]
    assert set(lr.explains) == {"dead-units", "loss-plateau"}
    assert dead.explained_by == ["lr-range"] and dead.because["lr-range"].startswith("counterfactual")


def test_a_finding_that_began_before_its_supposed_cause_is_not_its_consequence():
    # dead-units -> input-independence is a known mechanism, but here the units died after step 40 while the
    # exploding gradients began at step 50: the explosion cannot have killed them.
    dead, burst = _f("dead-units", onset=40), _f("exploding-gradients", "error", onset=50)
    link([dead, burst])
    assert "exploding-gradients" not in dead.explained_by


def test_a_verified_fix_that_left_a_finding_overrides_the_mechanism():
    init, sat = _f("init-loss", "error", 0), _f("saturated-units", "error", 8)  # the mechanism's own case
    roots = link([init, sat], removed_by={"init-loss": set()}, stayed_after={"init-loss": {"saturated-units"}})
    assert sorted(roots) == ["init-loss", "saturated-units"] and not sat.explained_by


def test_a_mechanism_through_the_updates_cannot_explain_what_was_there_at_initialisation():
    # makemore's lesson: the tanh layer saturated at step 0 stays saturated once the initial loss is fixed,
    # so without a verified fix the two are still two roots; saturation that sets in after the first
    # confidently wrong updates is the initial loss's doing.
    init, sat = _f("init-loss", "error", 0), _f("saturated-units", "error", 0)
    assert sorted(link([init, sat])) == ["init-loss", "saturated-units"]
    init, later = _f("init-loss", "error", 0), _f("saturated-units", "error", 6)
    assert link([init, later]) == ["init-loss"] and later.explained_by == ["init-loss"]


def test_opposite_learning_rate_advice_is_never_two_roots():
    high, low = _f("lr-range", onset=0, advice=LR_HIGH), _f("update-ratio", advice=LR_LOW)
    roots = link([low, high])
    assert len(roots) == 1
    assert roots[0] == "lr-range"  # the earlier onset decides
    assert low.explained_by == ["lr-range"]


def test_an_explosion_explains_the_symptoms_that_follow_it():
    burst = _f("exploding-gradients", "error", onset=1)
    symptoms = [_f("update-ratio", advice=LR_LOW), _f("loss-plateau", advice=LR_LOW), _f("dead-units", "error", 3),
                _f("loss-hockey-stick")]
    roots = link([*symptoms, burst])
    assert roots == ["exploding-gradients"]
    assert all(s.explained_by for s in symptoms)


def test_no_cycles_and_every_finding_is_reachable_from_a_root():
    rules = sorted(load_rules())
    findings = [_f(r, onset=i % 3) for i, r in enumerate(rules)]
    roots = link(findings)
    by_rule = {f.rule: f for f in findings}

    def visit(node, path):
        assert node not in path, f"cycle through {node}"
        seen.add(node)
        for child in by_rule[node].explains:
            visit(child, path | {node})

    seen = set()
    for root in roots:
        visit(root, frozenset())
    assert seen == set(rules)


def test_mechanisms_name_real_rules_and_sources():
    rules = set(load_rules()) | {LR_HIGH, LR_LOW}
    for m in MECHANISMS:
        assert m.source and m.how
        assert m.cause in rules or m.cause in {"repeated-batches", "causal-leak"}, m.cause
        for effect in m.effects:
            assert effect in rules or effect in {"repeated-batches", "causal-leak"}, effect


class _Rule:
    metric_goal = "lower"


class _Target:
    metric_goal = -3.0


def _ev(loss):
    class E:
        pass

    e = E()
    e.loss = np.asarray(loss, dtype=float)
    return e


def test_outcome_words():
    flat, better = _ev([1.0] * 20), _ev([0.5] * 20)
    assert _outcome(_Rule(), 10.0, 1.0, True, flat, flat)["outcome"] == "resolved"
    assert _outcome(_Rule(), 10.0, 5.0, False, flat, flat)["outcome"] == "improved"
    assert _outcome(_Rule(), 10.0, 9.8, False, flat, flat)["outcome"] == "no effect"
    # The case that opened issue 11: clipping "verified" while the end loss went 0.00223 -> 0.0143.
    assert _outcome(_Rule(), 0.00223, 0.0143, None, _ev([0.00223] * 20), _ev([0.0143] * 20))["outcome"] == "worse"
    # A finding that goes while training gets worse is not resolved.
    assert _outcome(_Rule(), 10.0, 1.0, True, better, flat)["outcome"] == "worse"
    # A target metric: -1 -> -2.9 moves towards -3.
    assert _outcome(_Target(), -1.0, -2.9, False, flat, flat)["outcome"] == "improved"
    # A fix that stops training (a rate turned down to nothing) removes the finding by not training: worse, even
    # where it began about as low as the original ended.
    learns, stuck = _ev(np.linspace(2.0, 1.0, 20)), _ev([1.3] * 20)  # ends at 1.26 against 1.3
    stopped = _outcome(_Rule(), 10.0, 1.0, True, learns, stuck)
    assert stopped["outcome"] == "worse" and "stopped" in stopped["after_reason"]
    assert _outcome(_Rule(), 10.0, 1.0, True, learns, _ev(np.linspace(1.5, 0.8, 20)))["outcome"] == "resolved"
    assert _outcome(_Rule(), 10.0, 1.0, True, flat, flat)["outcome"] == "resolved"  # it did not learn before either
    # ... unless the finding said the rate was too low to learn: gone from a copy that learns nothing, where the
    # original learnt nothing either (VGG-19 without BatchNorm: update-ratio's rate, 59x its recipe's, took the steps
    # over the rule's bar and the loss stayed at ln 10), the rule's test passed and its promise did not.
    still = _outcome(_Rule(), 10.0, 1.0, True, flat, flat, learns=True)
    assert still["outcome"] == "improved" and "does not learn there either" in still["after_reason"], still
    assert _outcome(_Rule(), 10.0, 9.5, True, flat, flat, learns=True)["outcome"] == "no effect"
    assert _outcome(_Rule(), 10.0, 1.0, True, flat, _ev(np.linspace(1.0, 0.5, 20)), learns=True)["outcome"] == \
        "resolved"
    nan = _outcome(_Rule(), 10.0, None, False, flat, _ev([1.0, np.nan]))
    assert nan["outcome"] == "worse" and "non-finite" in nan["after_reason"]


def test_samples_lead_with_their_cause(audit_sample):
    raw = audit_sample("makemore_raw")
    assert raw.root_causes == ["init-loss", "saturated-units"]
    hockey = next(f for f in raw.findings if f.rule == "loss-hockey-stick")
    assert hockey.explained_by == ["init-loss"]
    scale = audit_sample("input_scale")
    assert scale.root_causes[0] == "input-scale"
    assert {"dead-units", "init-loss"} <= {f.rule for f in scale.findings if "input-scale" in f.explained_by}
    data = scale.to_dict()
    assert data["root_causes"] == scale.root_causes and data["findings"][0]["rule"] == "input-scale"


def test_a_fix_that_left_training_worse_or_its_own_finding_alone_removes_nothing():
    """What a fix removed counts for the root causes only where it left training no worse: a fix that stops
    training makes every dynamics finding go away by not training. Nor where it did nothing for its own finding:
    on the loss_oscillation sample (SGD at 16) a warm-up over half the probe left the rise as it was and thinned
    out the overshooting steps, and took the headline from the overshoot."""
    from auditor.verify import Counterfactuals, record

    class R:
        reads = ()

    findings = [_f("lr-range"), _f("grad-spikes")]
    before, after = _ev(np.linspace(2.0, 1.0, 20)), _ev([1.0] * 20)
    for e in (before, after):
        e.probe = type("P", (), {"steps_run": 20})()
    for outcome, credited in (("resolved", {"grad-spikes"}), ("improved", {"grad-spikes"}), ("worse", set()),
                              ("no effect", set())):
        findings[0].verified = {"outcome": outcome}
        result = Counterfactuals()
        record(result, findings[0], findings, {"lr-range": R(), "grad-spikes": R()}, before, after, set())
        assert result.removed_by["lr-range"] == credited


def test_information_explains_no_fault():
    """An info finding (dead units in a squeeze-excitation gate, off by design) is no cause of a warning: with
    labels shuffled on a MobileNetV3, 'dead units' headlined the plateau that the labels made."""
    info = _f("dead-units", "info", onset=0)
    plateau = _f("loss-plateau", "warning", onset=10)
    roots = link([info, plateau])
    assert roots[0] == "loss-plateau" and not plateau.explained_by
    assert link([_f("dead-units", "warning", onset=0), _f("loss-plateau", "warning", onset=10)])[0] == "dead-units"
    info, plateau = _f("saturated-units", "info", onset=0), _f("loss-plateau", "warning", onset=10)
    assert link([info, plateau], removed_by={"saturated-units": {"loss-plateau"}})[0] == "loss-plateau"
    assert not plateau.explained_by  # not even through a counterfactual


def test_dead_units_in_part_of_a_layer_do_not_explain_steps_too_small_to_learn():
    """VGG-11 at its recipe's rate at batch 16: 43% of one layer dead (a warning) and a plateau whose steps are
    10^-4.3 of the weights (the rate too low). The live units carry the gradient: the rate's finding is its own
    root. Most of a layer dead (an error), or a plateau that does not blame the rate, stays dead units' doing."""
    dead, plateau = _f("dead-units", "warning", onset=0), _f("loss-plateau", onset=10, advice=LR_LOW)
    link([dead, plateau])
    assert not plateau.explained_by
    dead, plateau = _f("dead-units", "error", onset=0), _f("loss-plateau", onset=10, advice=LR_LOW)
    link([dead, plateau])
    assert plateau.explained_by == ["dead-units"]
    dead, plateau = _f("dead-units", "warning", onset=0), _f("loss-plateau", onset=10)
    link([dead, plateau])
    assert plateau.explained_by == ["dead-units"]


def test_of_two_findings_that_advise_the_same_rate_change_the_earlier_is_the_cause():
    """A CNN at SGD 5: steps that rewrite the weights from step 0 (update-ratio) kill ReLUs by step 13
    (dead-units, killed during training). Lowering the rate, dead-units' verified fix, removes both; that says
    nothing about which came first, time does. Without a shared advice the counterfactual keeps its direction."""
    steps, dead = _f("update-ratio", onset=0, advice=LR_HIGH), _f("dead-units", onset=13, advice=LR_HIGH)
    plateau = _f("loss-plateau", onset=20)
    roots = link([dead, steps, plateau], removed_by={"dead-units": {"update-ratio", "loss-plateau"}})
    assert roots == ["update-ratio"] and dead.explained_by == ["update-ratio"]
    assert "dead-units" in plateau.explained_by
    steps, dead = _f("update-ratio", onset=0, advice=LR_HIGH), _f("dead-units", onset=13)
    assert link([dead, steps], removed_by={"dead-units": {"update-ratio"}}) == ["dead-units"]


def test_a_consequence_never_advises_the_opposite_rate_to_its_cause():
    """VGG-13-BN at its recipe's rate: units killed by steps too large (dead-units, the rate too high) leave the
    later steps tiny (update-ratio, the rate too low). Shown under the root, the consequence's own advice would
    contradict it; it says so instead, whether the link came from the mechanism table, a counterfactual or the
    rule that two opposite roots are one. Advice in the same direction keeps its fix."""
    for removed_by in (None, {"dead-units": {"update-ratio"}}):
        dead, low = _f("dead-units", "error", 13, advice=LR_HIGH), _f("update-ratio", advice=LR_LOW)
        assert link([low, dead], removed_by=removed_by) == ["dead-units"]
        assert low.fix_moot and "too low" in low.fix_moot and "dead-units" in low.fix_moot and dead.fix_moot is None
    init, dead, low = _f("init-loss", "error", 0), _f("dead-units", "error", 5, LR_HIGH), _f("update-ratio",
                                                                                           advice=LR_LOW)
    link([init, dead, low], removed_by={"init-loss": {"dead-units", "update-ratio"}})
    assert low.fix_moot and "dead-units" in low.fix_moot  # an ancestor below the root counts too
    steps, dead = _f("update-ratio", onset=0, advice=LR_HIGH), _f("dead-units", onset=13, advice=LR_HIGH)
    link([dead, steps], removed_by={"dead-units": {"update-ratio"}})
    assert steps.fix_moot is None and dead.fix_moot is None


def test_an_unshuffled_loader_explains_the_jumps_at_each_switch_of_class():
    """A dataset stored class by class, loaded with shuffle=False: at step 10 the batches switched from class 0
    to class 1 and the loss jumped from 0.0004 to 19.5. That was headlined "Gradients exploded at step 10",
    the unshuffled loader second. Labels shuffled apart from their inputs explain no explosion."""
    burst, diverge = _f("exploding-gradients", "error", onset=10), _f("loss-divergence", "error")
    unshuffled = Finding("label-problems", "warning", "t", "", "", onset=0, evidence={"batch_majority": [1.0] * 9})
    assert link([burst, diverge, unshuffled])[0] == "label-problems"
    assert "label-problems" in burst.explained_by
    burst, shuffled = _f("exploding-gradients", "error", onset=10), _f("label-problems", onset=0)
    link([burst, shuffled])
    assert "label-problems" not in burst.explained_by
