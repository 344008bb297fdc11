from auditor.engine import Rule, Threshold
from auditor.report import figures


class BatchNormSmallBatch(Rule):
    id = "batchnorm-small-batch"
    from_start = True
    summary = "BatchNorm trained with batches too small for stable batch statistics."
    thresholds = {
        "min_batch": Threshold(16, "warn when BatchNorm trains on batches smaller than this",
                               "Wu & He 2018 (Group Normalization), fig. 1: ResNet-50's ImageNet error with BN "
                               "rises steeply below 16 images per GPU and is 10 points worse at 2"),
    }
    why = """
In training, BatchNorm normalises with the mean and variance of the current batch. With a few samples these
estimates are noisy, so every sample's output depends on which others share its batch, and the running
averages used at evaluation differ from what training saw: validation accuracy drops and fluctuates.
"""
    example = """
loader = DataLoader(dataset, batch_size=4)      # with nn.BatchNorm2d in the model
"""
    use_instead = """
nn.GroupNorm(num_groups=32, num_channels=c)     # independent of the batch size; or LayerNorm
# or a larger batch (gradient accumulation does not help BatchNorm's statistics)
"""
    references = ("Y. Wu, K. He, 'Group Normalization', ECCV 2018",
                  "S. Ioffe, 'Batch Renormalization', NeurIPS 2017")

    def check(self, ev, t):
        if not ev.structure or not ev.probe.batch_size:
            return
        bns = [c.name for c in ev.structure.calls if "BatchNorm" in c.type and c.training]
        if not bns or ev.probe.batch_size >= t.min_batch:
            return
        yield self.finding(
            "warning", f"BatchNorm with batches of {ev.probe.batch_size}",
            f"{len(bns)} BatchNorm layer(s) ({', '.join(bns[:4])}{' ...' if len(bns) > 4 else ''}) normalise "
            f"with statistics of {ev.probe.batch_size} samples per batch, fewer than {int(t.min_batch)}: noisy "
            "in training and unlike the running averages used in evaluation.",
            "Use a normalisation that does not depend on the batch, or larger batches:\n\n"
            "nn.GroupNorm(num_groups=8, num_channels=c)   # in place of nn.BatchNorm2d(c)",
            bns, batch_size=ev.probe.batch_size, batchnorm_layers=bns)

    def draw(self, ax, ev, finding):
        figures.bars(ax, ["your batch", "smallest stable (Wu & He 2018)"],
                     [ev.probe.batch_size, self.thresholds["min_batch"].default], "samples per BatchNorm batch",
                     highlight=["your batch"])


RULE = BatchNormSmallBatch()
