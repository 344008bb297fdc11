"""Training scripts written unlike the samples (styles of pytorch/examples, nanoGPT, makemore, Lightning, Hugging
Face, accelerate, torchrun), each labelled before its first audit: healthy (no warning or error), or the loop
bug it has and the root cause the report must lead with. bench/script_corpus.py scores them all;
tests/test_script_corpus.py runs a fast subset."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class ScriptCase:
    file: str
    style: str
    args: tuple[str, ...] = ()
    fires: frozenset[str] = frozenset()  # rules that must fire (warning or error); empty: healthy
    headline: str | None = None  # the root cause the report must lead with
    needs: str | None = None  # an optional package the script imports
    ranks: int = 0  # run under torchrun with this many processes

    @property
    def path(self) -> Path:
        return HERE / self.file

    @property
    def healthy(self) -> bool:
        return not self.fires


def _bug(file: str, style: str, rule: str, **kw) -> ScriptCase:
    return ScriptCase(file, style, fires=frozenset({rule}), headline=rule, **kw)


CASES = {c.file.removesuffix(".py") + ("_" + "_".join(a.strip("-") for a in c.args) if c.args else ""): c
         for c in [
    ScriptCase("mnist_example.py", "pytorch/examples MNIST: argparse, train()/test(), Adadelta, StepLR per epoch"),
    ScriptCase("raw_while_loop.py", "makemore: raw tensors, a while loop, no module, no DataLoader"),
    ScriptCase("gpt_accum.py", "nanoGPT: get_batch(), accumulation, hand-set warm-up/cosine rate, clipping"),
    ScriptCase("char_lstm.py", "an LSTM language model with its hidden state detached between batches"),
    ScriptCase("resnet_argparse.py", "torchvision ResNet-18, the reference SGD recipe, main() under __name__"),
    ScriptCase("gan_two_models.py", "two models and two optimizers in one loop (a GAN)"),
    ScriptCase("accelerate_loop.py", "Hugging Face accelerate: prepare() and accelerator.backward()",
               needs="accelerate"),
    ScriptCase("lightning_fit.py", "Lightning: a LightningModule and Trainer.fit with validation", needs="lightning"),
    ScriptCase("hf_trainer.py", "Hugging Face Trainer.train on a tiny BERT from a config", needs="transformers"),
    ScriptCase("ddp_sampler.py", "torchrun DDP (gloo) with a DistributedSampler and set_epoch", ranks=2),
    ScriptCase("compiled_model.py", "a torch.compile'd model, fused AdamW, OneCycle over the run"),
    ScriptCase("vae_example.py", "pytorch/examples VAE: BCE summed over pixels plus KL, Adam 1e-3, a sigmoid output"),
    ScriptCase("dcgan_example.py", "pytorch/examples DCGAN: two optimizers, nn.BCELoss on a sigmoid, betas 0.5"),
    ScriptCase("noam_transformer.py", "nn.Transformer seq2seq, Noam warm-up per batch, label smoothing, ignore_index"),
    ScriptCase("tabular_posweight.py", "imbalanced tabular data, BCEWithLogitsLoss(pos_weight), ReduceLROnPlateau"),
    ScriptCase("triplet_embed.py", "metric learning: in-batch hard triplets, TripletMarginLoss on normalised embeddings"),
    ScriptCase("distill.py", "knowledge distillation: a teacher trained first, then KL at T=4 plus cross-entropy"),
    ScriptCase("gcn_fullbatch.py", "a GCN written by hand, trained full-batch on its graph (no DataLoader)"),
    ScriptCase("seg_poly.py", "DeepLab-style segmentation: ignore_index=255 borders, a poly schedule per iteration"),
    ScriptCase("pinn_lbfgs.py", "a physics-informed net: autograd.grad residuals, Adam then L-BFGS with a closure"),
    ScriptCase("hf_gpt2_loop.py", "a tiny GPT-2 in a manual loop on model(**batch).loss, linear warm-up/decay",
               needs="transformers"),
    ScriptCase("cutmix_soft.py", "CutMix and label smoothing as soft targets into F.cross_entropy, SGD nesterov"),
    ScriptCase("multitask.py", "a shared trunk with a classification and a regression head, losses summed"),
    ScriptCase("ctc_speech.py", "a CTC acoustic model: conv, BiGRU, log_softmax, nn.CTCLoss in (T, N, C)"),
    ScriptCase("sam_optimizer.py", "SAM as davda54/sam: an optimizer class with first_step/second_step, SGD inside"),
    ScriptCase("word2vec_sparse.py", "skip-gram, negative sampling, sparse embeddings (one at zero) under SparseAdam"),
    ScriptCase("wgan_gp.py", "WGAN-GP: five critic steps per generator step, a gradient penalty (create_graph)"),
    ScriptCase("lora_finetune.py", "LoRA adapters by hand (B at zero) on a frozen backbone trained first, AdamW"),
    ScriptCase("onecycle_ckpt.py", "weight_norm parametrizations, activation checkpointing, OneCycleLR per batch"),
    ScriptCase("ddpm_tiny.py", "a denoising diffusion model: noise prediction at random timesteps, an EMA copy"),
    ScriptCase("frozen_backbone.py", "torchvision transfer learning: a frozen ResNet-18, SGD over model.fc only"),
    ScriptCase("byol.py", "BYOL: an EMA target network under no_grad in train mode, a predictor, 2 - 2 cos"),
    ScriptCase("swa.py", "stochastic weight averaging: AveragedModel, SWALR after a cosine start, update_bn"),
    ScriptCase("reinforce_bandit.py", "REINFORCE on a contextual bandit: a policy-gradient loss, not a supervised one"),
    _bug("ddp_sampler.py", "torchrun DDP without sampler.set_epoch", "rank-same-batches", args=("--no-set-epoch",),
         ranks=2),
    _bug("ddp_sampler.py", "torchrun without a DistributedSampler: every rank shuffles alike", "rank-same-batches",
         args=("--no-sampler",), ranks=2),
    _bug("ddp_sampler.py", "torchrun with the model never wrapped in DDP: each rank trains its own", "rank-drift",
         args=("--no-ddp",), ranks=2),
    _bug("eval_left_on.py", "a Trainer class whose evaluate() leaves the model in eval mode", "train-in-eval-mode"),
    _bug("accumulate_forgot_zero.py", "accumulation that steps every 4 batches and never zeroes",
         "missing-zero-grad"),
    _bug("cosine_per_batch.py", "CosineAnnealingLR(T_max=epochs) stepped per batch", "lr-schedule"),
    _bug("amp_clip_value.py", "bf16 autocast and a GradScaler, clip_grad_value_ before unscale_",
         "clip-before-unscale"),
    _bug("gan_two_models.py", "a GAN whose generator is rebuilt after its optimizer was made", "stale-optimizer",
         args=("--rebuild-g",)),
    _bug("rebuilt_for_finetune.py", "the model rebuilt from a state dict after the optimizer", "stale-optimizer"),
    _bug("validate_inference_mode.py", "validation under inference_mode without model.eval()",
         "eval-in-train-mode"),
    _bug("model_zero_grad_misplaced.py", "model.zero_grad() between backward and step", "grads-zeroed-before-step"),
    _bug("step_in_log.py", "optimizer.step() inside the logging `if`: nine batches in ten cleared unused",
         "grads-zeroed-before-step"),
    _bug("warmup_unbounded.py", "LambdaLR(lambda step: step / warmup): a warm-up without its cap", "lr-schedule"),
    _bug("step_before_backward.py", "zero_grad, step, then backward: each step applies cleared gradients",
         "grads-zeroed-before-step"),
    _bug("dropout_keep.py", "a TensorFlow 1 port: keep_prob=0.9 written as nn.Dropout(0.9)", "dropout-rate"),
    _bug("raw_pixels.py", "uint8 images only cast to float: 0..255 into a CNN under SGD", "input-scale"),
    _bug("unscaled_target.py", "house prices left in dollars under Adam: the output never reaches them",
         "target-scale"),
    _bug("sorted_noshuffle.py", "a dataset stored class by class, loaded with shuffle=False", "label-problems"),
    _bug("double_sigmoid.py", "torch.sigmoid(model(x)) in the loop, fed to nn.BCEWithLogitsLoss", "output-not-logits"),
    _bug("tiny_clip.py", "a CNN trainer whose clip threshold lost a decimal: utils.clip_grad_norm_(p, 1e-2)",
         "clip-too-tight"),
    _bug("functional_dropout.py", "F.dropout(x, p=0.5) in forward without training=self.training",
         "dropout-ignores-eval"),
    _bug("sum_reduction.py", "CrossEntropyLoss(reduction='sum') over batches of 256 under SGD 0.05",
         "loss-reduction-sum"),
    _bug("half_adam.py", "model.half() under Adam's default eps, 0 in float16", "half-precision-weights"),
    _bug("detached_loss.py", "the loss rebuilt from .item() as torch.tensor(value, requires_grad=True)",
         "weights-not-updating"),
    _bug("plateau_per_batch.py", "ReduceLROnPlateau(patience=5) stepped on every batch's training loss",
         "lr-schedule"),
    _bug("unscaled_sgd.py", "counts in the thousands under SGD: the first step saturates the tanh layer",
         "target-scale"),
]}
