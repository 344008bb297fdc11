"""ResNet-50 at full size for the GPU benchmark (bench/README.md): torchvision's, trained the torchvision way
(SGD, momentum 0.9, lr 0.1, weight decay 1e-4) under bf16 autocast, on the GPU when there is one.

Where torchvision is not installed, timm's resnet50 (the same Bottleneck 3-4-6-3 architecture) stands in, so
that the files can be checked on any machine; the benchmark prints which one ran.
"""

import torch

torch.manual_seed(0)
amp = "bf16"

try:
    from torchvision.models import resnet50

    model = resnet50(weights=None)
    SOURCE = "torchvision"
except ImportError:
    import timm

    model = timm.create_model("resnet50", pretrained=False)
    SOURCE = "timm"

if torch.cuda.is_available():
    model = model.cuda()  # the auditor probes the model where it lives


def make_optimizer(params):
    return torch.optim.SGD(params, lr=0.1, momentum=0.9, weight_decay=1e-4)
