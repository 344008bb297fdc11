"""A fast subset of the zoo sweeps (bench/zoo.py, bench/mutations.py): healthy architectures built from their
libraries with their authors' recipes stay clean, and injected faults are named by their root cause."""

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import mutations  # noqa: E402

import auditor  # noqa: E402


@pytest.mark.parametrize("name", ["gpt2", "bert"])
def test_hugging_face_tiny_configs_are_clean(name):
    if importlib.util.find_spec("transformers") is None:
        pytest.skip("transformers is not installed")
    torch.manual_seed(0)
    report = auditor.audit(**mutations.build(name), seed=0)
    assert not [f.rule for f in report.findings if f.severity != "info"]


@pytest.mark.parametrize("op", ["output_x100", "broadcast_loss", "layer_left_out", "frozen_output", "adam_eps_1",
                                "lr_x100", "labels_shuffled", "labels_shifted"])
def test_injected_fault_is_the_headline(op):
    result = mutations.audit_one("mlp_regression", op, seed=0)
    assert result["applies"] and result["detected"], result
    assert result["right"], result  # its rule expected, or (a rate changed) its advice that rate change


def test_unmutated_model_is_clean():
    assert mutations.audit_one("mlp_regression", "none", seed=0)["fired"] == []


@pytest.mark.parametrize(("model", "op"), [("mobilenet_v3_small", "labels_shuffled"), ("vit", "zero_init")])
def test_injected_fault_on_a_library_architecture_is_the_headline(model, op):
    """MobileNetV3 (torchvision, RMSprop) with its labels shuffled ends its first pass 3.3% above the labels'
    entropy, where a model fitting unrelated labels ends; a ViT (Hugging Face) with every weight zeroed takes
    dict batches, whose inputs cannot be zeroed to compare, and is read from its parameters."""
    needs = "torchvision" if model == "mobilenet_v3_small" else "transformers"
    if importlib.util.find_spec(needs) is None:
        pytest.skip(f"{needs} is not installed")
    result = mutations.audit_one(model, op, seed=0)
    assert result["right"], result  # its rule expected, or (a rate changed) its advice that rate change


def test_a_slow_learner_is_not_read_as_unrelated_labels():
    """torchvision's ShuffleNet-V2 at seed 1 with its SGD recipe learns nothing on the loader's first pass (its
    loss ends there 5% above the labels' entropy, as shuffled labels do), then falls far below it on the next
    passes: a slow learner, not labels unrelated to its inputs (random labels are not fitted that fast)."""
    if importlib.util.find_spec("torchvision") is None:
        pytest.skip("torchvision is not installed")
    result = mutations.audit_one("shufflenet_v2_x0_5", "none", seed=1)
    assert "label-problems" not in result["fired"], result
    # The rule still fires on shuffled labels: test_injected_fault_on_a_library_architecture_is_the_headline.
    # (ShuffleNet's own shuffled-label run headlines label-problems under torch 2.14, loss-plateau under 2.6.)
