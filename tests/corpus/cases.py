"""A corpus of models written unlike the samples, each labelled by hand with what a practitioner would say.

The samples under samples/ were written with the rules in mind; these are written the way other people write
models: torch DataLoaders, Hugging Face models built from a config (random weights, nothing downloaded), timm,
torch.compile, custom autograd functions, recurrent nets, their own loss objects, models that compute their
own loss, data memorised inside the probe. Each case says which rules must fire, which must not, and what the
headline (the first root cause) must be. `healthy=True` means no warning or error at all.

Every case builds its objects from a fixed seed, so a verdict cannot flip between runs.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

# The rules that say "the learning rate": either is the right headline for a rate far off.
LR_ADVICE = frozenset({"lr-range", "update-ratio"})


@dataclass
class Case:
    build: object  # () -> dict of auditor.audit keywords
    healthy: bool = False
    must: frozenset = frozenset()
    must_not: frozenset = frozenset()
    headline: str | frozenset | None = None  # the first root cause, or the rules any of which is right
    needs: str | None = None  # an optional package the case imports
    known_miss: str = ""  # a label the auditor still gets wrong, and why: the test expects the miss until it is fixed
    why: str = ""
    extra: dict = field(default_factory=dict)


# --- data, built the ways users build it ---------------------------------------------------------------

def _gen(seed):
    return torch.Generator().manual_seed(seed)


def tabular(n=2048, features=12, classes=4, seed=0, scale=1.0, offset=0.0):
    g = _gen(seed)
    w = torch.randn(features, classes, generator=g)
    x = torch.randn(n, features, generator=g)
    y = (x @ w + 0.3 * torch.randn(n, classes, generator=g)).argmax(1)
    return x * scale + offset, y


def loader(x, y, batch_size=32, seed=0):
    return DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=True, generator=_gen(seed), drop_last=True)


def sequences(n=512, length=24, vocab=32, seed=0):
    """Arithmetic sequences mod vocab: each next token is the previous plus a per-sequence step (learnable)."""
    g = _gen(seed)
    start = torch.randint(0, vocab, (n, 1), generator=g)
    step = torch.randint(1, 4, (n, 1), generator=g)
    return (start + step * torch.arange(length + 1)) % vocab


def lm_batches(seq, batch_size=16, seed=0):
    """(x, y) next-token batches, y = x shifted by one."""
    data = loader(seq[:, :-1], seq[:, 1:], batch_size, seed)
    return data


def images(n=512, classes=10, size=16, seed=0):
    g = _gen(seed)
    proto = torch.randn(classes, 3, size, size, generator=g)
    y = torch.randint(0, classes, (n,), generator=g)
    x = proto[y] + 1.0 * torch.randn(n, 3, size, size, generator=g)
    return x, y


def _seed(s=0):
    torch.manual_seed(s)


# --- healthy recipes ------------------------------------------------------------------------------------

def hf_gpt2():
    import transformers

    _seed()
    config = transformers.GPT2Config(vocab_size=32, n_positions=32, n_embd=64, n_layer=2, n_head=4)
    model = transformers.GPT2LMHeadModel(config)
    seq = sequences()
    batches = [{"input_ids": seq[i:i + 16, :-1], "labels": seq[i:i + 16, :-1]} for i in range(0, 512, 16)]
    return dict(model=model, loader=batches, training_step=lambda m, b: m(**b).loss,
                optimizer=torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.1))


def hf_bert_classifier():
    import transformers

    _seed()
    config = transformers.BertConfig(vocab_size=50, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                     intermediate_size=128, max_position_embeddings=32, num_labels=2)
    model = transformers.BertForSequenceClassification(config)
    g = _gen(1)
    ids = torch.randint(5, 50, (1024, 16), generator=g)
    labels = (ids == 7).any(1).long()  # does token 7 occur?
    batches = [{"input_ids": ids[i:i + 32], "labels": labels[i:i + 32]} for i in range(0, 1024, 32)]
    return dict(model=model, loader=batches, training_step=lambda m, b: m(**b).loss,
                optimizer=torch.optim.AdamW(model.parameters(), lr=3e-4))


def timm_resnet():
    import timm

    _seed()
    model = timm.create_model("resnet10t", num_classes=10, pretrained=False)
    x, y = images()
    return dict(model=model, loader=loader(x, y, 32),
                optimizer=torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4))


def compiled_mlp():
    _seed()
    net = nn.Sequential(nn.Linear(12, 64), nn.GELU(), nn.Linear(64, 64), nn.GELU(), nn.Linear(64, 4))
    # aot_eager: dynamo's tracing and AOT autograd without code generation, so no compiler is needed.
    model = torch.compile(net, backend="aot_eager")
    return dict(model=model, loader=loader(*tabular()), optimizer=torch.optim.Adam(model.parameters(), lr=1e-3))


class _SquarePlus(torch.autograd.Function):
    """A custom activation with its own backward: (x + sqrt(x^2 + 4)) / 2."""

    @staticmethod
    def forward(ctx, x):
        root = torch.sqrt(x * x + 4)
        ctx.save_for_backward(x, root)
        return (x + root) / 2

    @staticmethod
    def backward(ctx, grad):
        x, root = ctx.saved_tensors
        return grad * (1 + x / root) / 2


class CustomFnNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b, self.c = nn.Linear(12, 64), nn.Linear(64, 64), nn.Linear(64, 4)

    def forward(self, x):
        x = _SquarePlus.apply(self.a(x))
        x = _SquarePlus.apply(self.b(x))
        return self.c(x)


def custom_autograd():
    _seed()
    model = CustomFnNet()
    return dict(model=model, loader=loader(*tabular()), optimizer=torch.optim.AdamW(model.parameters(), lr=1e-3))


class LSTMClassifier(nn.Module):
    def __init__(self, vocab=32, hidden=64, classes=3):
        super().__init__()
        self.emb = nn.Embedding(vocab, 32)
        self.lstm = nn.LSTM(32, hidden, batch_first=True)
        self.out = nn.Linear(hidden, classes)

    def forward(self, x):
        h, _ = self.lstm(self.emb(x))
        return self.out(h[:, -1])


def lstm_classifier():
    _seed()
    seq = sequences(1024, 12)
    y = (seq[:, 1] - seq[:, 0]) % 32 - 1  # the step of the sequence: 0, 1 or 2
    model = LSTMClassifier()
    return dict(model=model, loader=loader(seq[:, :-1], y, 32), optimizer=torch.optim.Adam(model.parameters(),
                                                                                           lr=3e-3))


class GRULM(nn.Module):
    def __init__(self, vocab=32):
        super().__init__()
        self.emb, self.gru, self.head = nn.Embedding(vocab, 32), nn.GRU(32, 64, batch_first=True), nn.Linear(64, vocab)

    def forward(self, x):
        return self.head(self.gru(self.emb(x))[0])


def gru_lm():
    _seed()
    model = GRULM()
    return dict(model=model, loader=lm_batches(sequences()), optimizer=torch.optim.AdamW(model.parameters(), lr=3e-3))


class OwnLossModel(nn.Module):
    """Computes its own loss: forward(x, y) returns the scalar."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(12, 64), nn.ReLU(), nn.Linear(64, 4))

    def forward(self, x, y):
        return F.cross_entropy(self.net(x), y)


def own_loss_model():
    _seed()
    model = OwnLossModel()
    return dict(model=model, loader=loader(*tabular()), training_step=lambda m, b: m(*b),
                optimizer=torch.optim.Adam(model.parameters(), lr=1e-3))


class SmoothedCE(nn.Module):
    """A user's own loss object."""

    def __init__(self, eps=0.1):
        super().__init__()
        self.eps = eps

    def forward(self, logits, target):
        logp = F.log_softmax(logits, -1)
        return (1 - self.eps) * F.nll_loss(logp, target) - self.eps * logp.mean(-1).mean()


def own_loss_object():
    _seed()
    model = nn.Sequential(nn.Linear(12, 64), nn.ReLU(), nn.Linear(64, 4))
    return dict(model=model, loader=loader(*tabular()), loss_fn=SmoothedCE(),
                optimizer=torch.optim.Adam(model.parameters(), lr=1e-3))


def huber_regression():
    _seed()
    g = _gen(3)
    x = torch.randn(2048, 8, generator=g)
    y = torch.sin(x[:, :1]) + x[:, 1:2] * x[:, 2:3]
    model = nn.Sequential(nn.Linear(8, 64), nn.SiLU(), nn.Linear(64, 64), nn.SiLU(), nn.Linear(64, 1))
    return dict(model=model, loader=loader(x, y), loss_fn=nn.HuberLoss(delta=1.0),
                optimizer=torch.optim.AdamW(model.parameters(), lr=1e-3))


def multilabel_bce():
    _seed()
    g = _gen(4)
    x = torch.randn(2048, 16, generator=g)
    y = (x @ torch.randn(16, 5, generator=g) > 0).float()
    model = nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 5))
    return dict(model=model, loader=loader(x, y), loss_fn=nn.BCEWithLogitsLoss(),
                optimizer=torch.optim.Adam(model.parameters(), lr=1e-3))


def nll_log_softmax():
    _seed()
    model = nn.Sequential(nn.Linear(12, 64), nn.Tanh(), nn.Linear(64, 4), nn.LogSoftmax(dim=1))
    return dict(model=model, loader=loader(*tabular()), loss_fn=F.nll_loss,
                optimizer=torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9))


def conv1d_signal():
    _seed()
    g = _gen(5)
    y = torch.randint(0, 3, (1024,), generator=g)
    t = torch.linspace(0, 1, 64)
    x = torch.sin(2 * math.pi * (y[:, None] + 1) * 3 * t)[:, None] + 0.5 * torch.randn(1024, 1, 64, generator=g)
    model = nn.Sequential(nn.Conv1d(1, 16, 5, padding=2), nn.BatchNorm1d(16), nn.ReLU(),
                          nn.Conv1d(16, 16, 5, padding=2), nn.BatchNorm1d(16), nn.ReLU(),
                          nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(16, 3))
    return dict(model=model, loader=loader(x, y), optimizer=torch.optim.SGD(model.parameters(), lr=0.05,
                                                                            momentum=0.9))


def memorised_small_data():
    """A healthy conv net on 64 images: the probe memorises them (loss near 0) and nothing may call that a
    spike or an explosion."""
    _seed()
    x, y = images(64)
    model = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                          nn.Flatten(), nn.Linear(32, 10))
    return dict(model=model, loader=loader(x, y, 16), optimizer=torch.optim.Adam(model.parameters(), lr=3e-3))


# --- broken setups --------------------------------------------------------------------------------------

def hf_gpt2_huge_init():
    import transformers

    _seed()
    config = transformers.GPT2Config(vocab_size=32, n_positions=32, n_embd=64, n_layer=2, n_head=4,
                                     initializer_range=1.0)
    model = transformers.GPT2LMHeadModel(config)
    seq = sequences()
    batches = [{"input_ids": seq[i:i + 16, :-1], "labels": seq[i:i + 16, :-1]} for i in range(0, 512, 16)]
    return dict(model=model, loader=batches, training_step=lambda m, b: m(**b).loss,
                optimizer=torch.optim.AdamW(model.parameters(), lr=1e-3))


class ReluRNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb, self.rnn, self.head = nn.Embedding(32, 32), nn.RNN(32, 128, nonlinearity="relu"), nn.Linear(128, 32)
        with torch.no_grad():
            self.rnn.weight_hh_l0.normal_(0, 1.5 / math.sqrt(128))  # recurrent gain 1.5

    def forward(self, x):
        return self.head(self.rnn(self.emb(x).transpose(0, 1))[0]).transpose(0, 1)


def exploding_relu_rnn():
    _seed()
    model = ReluRNN()
    return dict(model=model, loader=lm_batches(sequences()), optimizer=torch.optim.SGD(model.parameters(), lr=0.5))


def cnn_lr_too_high():
    _seed()
    x, y = images()
    model = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10))
    return dict(model=model, loader=loader(x, y), optimizer=torch.optim.SGD(model.parameters(), lr=5.0))


class ProbsNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(12, 64), nn.ReLU(), nn.Linear(64, 4))

    def forward(self, x):
        return F.softmax(self.body(x), dim=-1)  # then fed to a cross-entropy below


def softmax_into_own_ce():
    _seed()
    model = ProbsNet()

    class MyCE(nn.Module):
        def forward(self, out, y):
            return nn.functional.cross_entropy(out, y)

    return dict(model=model, loader=loader(*tabular()), loss_fn=MyCE(),
                optimizer=torch.optim.Adam(model.parameters(), lr=1e-3))


def sigmoid_into_bce_logits():
    _seed()
    g = _gen(4)
    x = torch.randn(2048, 16, generator=g)
    y = (x[:, 0] > 0).float()

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.l1, self.l2 = nn.Linear(16, 32), nn.Linear(32, 1)

        def forward(self, x):
            return self.l2(F.relu(self.l1(x))).sigmoid().view(-1)

    model = Net()
    return dict(model=model, loader=loader(x, y), loss_fn=F.binary_cross_entropy_with_logits,
                optimizer=torch.optim.Adam(model.parameters(), lr=1e-3))


def shuffled_labels_dataloader():
    _seed()
    x, y = tabular(seed=7)
    y = y[torch.randperm(len(y), generator=_gen(8))]
    model = nn.Sequential(nn.Linear(12, 128), nn.ReLU(), nn.Linear(128, 4))
    return dict(model=model, loader=loader(x, y), optimizer=torch.optim.Adam(model.parameters(), lr=1e-3))


def same_batch_generator():
    _seed()
    first = next(iter(loader(*tabular())))

    def forever():
        while True:
            yield first

    model = nn.Sequential(nn.Linear(12, 64), nn.ReLU(), nn.Linear(64, 4))
    return dict(model=model, loader=itertools.islice(forever(), 400),
                optimizer=torch.optim.Adam(model.parameters(), lr=1e-3))


class UnmaskedTransformerLM(nn.Module):
    def __init__(self, vocab=32, d=64):
        super().__init__()
        self.emb, self.pos = nn.Embedding(vocab, d), nn.Parameter(torch.zeros(1, 32, d))
        layer = nn.TransformerEncoderLayer(d, 4, 128, dropout=0.0, batch_first=True)
        self.enc = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.head = nn.Linear(d, vocab)

    def forward(self, x):
        h = self.emb(x) + self.pos[:, : x.shape[1]]
        return self.head(self.enc(h))  # the bug: no causal mask


def unmasked_transformer():
    _seed()
    model = UnmaskedTransformerLM()
    return dict(model=model, loader=lm_batches(sequences()), optimizer=torch.optim.AdamW(model.parameters(), lr=1e-3))


def dead_relu_rnn():
    _seed()
    model = GRULM()
    rnn = nn.RNN(32, 64, batch_first=True, nonlinearity="relu")
    with torch.no_grad():
        rnn.bias_ih_l0.fill_(-30.0)
    model.gru = rnn
    return dict(model=model, loader=lm_batches(sequences()), optimizer=torch.optim.AdamW(model.parameters(), lr=1e-3))


def compiled_missing_params():
    _seed()
    body = nn.Sequential(nn.Linear(12, 64), nn.ReLU())
    head = nn.Linear(64, 4)
    model = torch.compile(nn.Sequential(body, head), backend="aot_eager")
    return dict(model=model, loader=loader(*tabular()), optimizer=torch.optim.Adam(head.parameters(), lr=1e-3))


def raw_tabular_features():
    _seed()
    x, y = tabular(seed=9)
    x = x * torch.tensor([1.0, 10, 100, 1000, 1, 5000, 20, 1, 300, 1, 8000, 2]) + 2000  # prices, counts, years
    model = nn.Sequential(nn.Linear(12, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 4))
    return dict(model=model, loader=loader(x, y), optimizer=torch.optim.Adam(model.parameters(), lr=1e-3))


class BigTanh(nn.Module):
    def __init__(self):
        super().__init__()
        self.w1 = nn.Parameter(torch.randn(12, 256) * 2.0)
        self.b1 = nn.Parameter(torch.zeros(256))
        self.w2 = nn.Parameter(torch.randn(256, 4) * 0.05)

    def forward(self, x):
        return torch.tanh(x @ self.w1 + self.b1) @ self.w2


def saturated_tanh_params():
    _seed()
    model = BigTanh()
    return dict(model=model, loader=loader(*tabular()), optimizer=torch.optim.SGD(model.parameters(), lr=0.05))


def gru_tiny_lr():
    _seed()
    model = GRULM()
    return dict(model=model, loader=lm_batches(sequences()), optimizer=torch.optim.Adam(model.parameters(), lr=1e-7))


# --- mixed precision and epoch loops, as other people write them ------------------------------------------


def _fp16(build):
    """A case above, trained under fp16 autocast with torch's default GradScaler."""
    def fp16():
        return {**build(), "amp": "fp16"}
    return fp16


def hf_gpt2_bf16():
    return {**hf_gpt2(), "amp": "bf16"}


def price_regression_fp16():
    """House prices in dollars as the regression target, trained in fp16: the squared error's gradient is ~1e5
    at any loss scale, so the GradScaler halves its scale step after step (to 2**-8 in the probe)."""
    _seed()
    g = _gen(3)
    x = torch.randn(2048, 8, generator=g)
    y = (x @ torch.randn(8, 1, generator=g)).squeeze(1) * 4e5 + 1.5e6
    model = nn.Sequential(nn.Linear(8, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 1))

    def loss_fn(pred, target):
        return ((pred.squeeze(-1) - target) ** 2).mean()

    return dict(model=model, loader=loader(x, y), loss_fn=loss_fn, amp="fp16",
                optimizer=torch.optim.Adam(model.parameters(), lr=1e-3))


def _epoch_generator(set_epoch: bool):
    """A DistributedSampler (one replica here) and the training script's epoch loop written as a generator."""
    from torch.utils.data import DistributedSampler

    _seed()
    data = TensorDataset(*tabular(seed=5))
    sampler = DistributedSampler(data, num_replicas=1, rank=0, shuffle=True, seed=1)
    batches = DataLoader(data, batch_size=64, sampler=sampler)  # 32 batches: the probe sees 4 epochs

    def epochs():
        for epoch in itertools.count():
            if set_epoch:
                sampler.set_epoch(epoch)
            yield from batches

    model = nn.Sequential(nn.Linear(12, 64), nn.ReLU(), nn.Linear(64, 4))
    return dict(model=model, loader=epochs(), optimizer=torch.optim.AdamW(model.parameters(), lr=1e-3))


def epoch_generator_without_set_epoch():
    return _epoch_generator(False)


def epoch_generator_with_set_epoch():
    return _epoch_generator(True)


# --- the forms of a loss, and settings that defeat the rate (added with issue 19, labelled before their first run)


def voc_segmentation():
    """A tiny fully-convolutional segmenter with Pascal VOC's convention: 255 marks void pixels (object borders)
    that nn.CrossEntropyLoss(ignore_index=255) skips."""
    _seed()
    g = _gen(11)
    x = torch.randn(256, 3, 16, 16, generator=g)
    y = (x[:, 0] > 0.3).long() + (x[:, 1] > 0.3).long() * 2  # 4 classes from the pixel itself
    border = (x[:, 0] - 0.3).abs() < 0.1
    y[border] = 255
    model = nn.Sequential(nn.Conv2d(3, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
                          nn.Conv2d(32, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.Conv2d(32, 4, 1))
    return dict(model=model, loader=loader(x, y, 16), loss_fn=nn.CrossEntropyLoss(ignore_index=255),
                optimizer=torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-4))


class _Mixup:
    """A collate function that mixes each batch with itself reversed, as timm's Mixup does: one-hot targets
    become class probabilities."""

    def __init__(self, classes, alpha=0.4, seed=0):
        self.classes, self.g = classes, torch.Generator().manual_seed(seed)
        self.beta = torch.distributions.Beta(alpha, alpha)

    def __call__(self, samples):
        x = torch.stack([s[0] for s in samples])
        y = F.one_hot(torch.stack([s[1] for s in samples]), self.classes).float()
        lam = float(self.beta.sample())
        return lam * x + (1 - lam) * x.flip(0), lam * y + (1 - lam) * y.flip(0)


def mixup_cnn():
    _seed()
    x, y = images(1024)
    data = DataLoader(TensorDataset(x, y), batch_size=32, shuffle=True, generator=_gen(2), collate_fn=_Mixup(10),
                      drop_last=True)
    model = nn.Sequential(nn.Conv2d(3, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10))
    return dict(model=model, loader=data, loss_fn=lambda out, soft: F.cross_entropy(out, soft),
                optimizer=torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True))


def weighted_imbalanced():
    """Three classes at 80/15/5 with inverse-frequency class weights and label smoothing."""
    _seed()
    g = _gen(12)
    x = torch.randn(2048, 10, generator=g)
    score = x[:, 0] + 0.5 * x[:, 1]
    y = torch.where(score > 1.6, 2, torch.where(score > 0.9, 1, 0))
    freq = torch.bincount(y, minlength=3).float() / y.numel()
    model = nn.Sequential(nn.Linear(10, 64), nn.ReLU(), nn.Linear(64, 3))
    return dict(model=model, loader=loader(x, y, 64),
                loss_fn=nn.CrossEntropyLoss(weight=1 / (3 * freq), label_smoothing=0.05),
                optimizer=torch.optim.AdamW(model.parameters(), lr=2e-3))


def rare_positive_bce():
    """One label in ten is positive; BCEWithLogitsLoss(pos_weight=9) balances them."""
    _seed()
    g = _gen(13)
    x = torch.randn(2048, 16, generator=g)
    y = ((x[:, :1] + 0.3 * x[:, 1:2]) > 1.28).float()
    model = nn.Sequential(nn.Linear(16, 32), nn.Tanh(), nn.Linear(32, 1))
    return dict(model=model, loader=loader(x, y, 64), loss_fn=nn.BCEWithLogitsLoss(pos_weight=torch.tensor([9.0])),
                optimizer=torch.optim.Adam(model.parameters(), lr=3e-3))


def multilabel_tags():
    """Twenty tags, about two present per sample, BCEWithLogitsLoss over the lot; dropout before the head."""
    _seed()
    g = _gen(21)
    x = torch.randn(4096, 50, generator=g)
    p = torch.sigmoid(3 * (x @ torch.randn(50, 20, generator=g) / 7.0 - 2.2))
    y = (torch.rand(4096, 20, generator=g) < p).float()
    model = nn.Sequential(nn.Linear(50, 256), nn.ReLU(), nn.Dropout(0.2), nn.Linear(256, 20))
    return dict(model=model, loader=loader(x, y, 64), loss_fn=nn.BCEWithLogitsLoss(),
                optimizer=torch.optim.Adam(model.parameters(), lr=1e-3))


class _MeanVar(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(8, 128), nn.SiLU(), nn.Linear(128, 128), nn.SiLU())
        self.mu, self.logvar = nn.Linear(128, 1), nn.Linear(128, 1)

    def forward(self, x):
        h = self.body(x)
        return torch.cat([self.mu(h), self.logvar(h)], 1)


def gaussian_nll_regression():
    """Heteroscedastic regression: a mean and a log-variance, GaussianNLLLoss, whose value goes below zero."""
    _seed()
    g = _gen(22)
    x = torch.randn(4096, 8, generator=g)
    y = torch.sin(2 * x[:, :1]) + 0.5 * x[:, 1:2] + (0.05 + 0.3 * x[:, :1].abs()) * torch.randn(4096, 1, generator=g)
    model, nll = _MeanVar(), nn.GaussianNLLLoss()
    return dict(model=model, loader=loader(x, y, 128), loss_fn=lambda out, t: nll(out[:, :1], t, out[:, 1:].exp()),
                optimizer=torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4))


def lstm_time_major_by_mistake():
    """Batches of (batch, time, features) fed to an nn.LSTM built without batch_first: it reads the batch as
    time, so each sample's output mixes the others'."""
    _seed()
    g = _gen(14)
    x = torch.randn(1024, 20, 8, generator=g)
    y = (x[:, :, 0].sum(1) > 0).long()

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = nn.LSTM(8, 32)
            self.fc = nn.Linear(32, 2)

        def forward(self, seq):
            out, _ = self.rnn(seq)
            return self.fc(out[:, -1])

    model = Net()
    return dict(model=model, loader=loader(x, y, 32), optimizer=torch.optim.Adam(model.parameters(), lr=3e-3))


def adam_eps_one_cnn():
    """A sound conv net whose Adam was given eps=1.0 (a TensorFlow-style epsilon pasted into torch)."""
    _seed()
    x, y = images()
    model = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(16, 32, 3, padding=1),
                          nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10))
    return dict(model=model, loader=loader(x, y, 32), optimizer=torch.optim.Adam(model.parameters(), lr=1e-3,
                                                                                   eps=1.0))


def huber_broadcast():
    """A price-per-area regression: the model returns (B, 1), the dataset (B,), the loss is Huber."""
    _seed()
    g = _gen(15)
    x = torch.randn(2048, 6, generator=g)
    y = torch.tanh(x @ torch.randn(6, generator=g) / 2)
    model = nn.Sequential(nn.Linear(6, 48), nn.SiLU(), nn.Linear(48, 48), nn.SiLU(), nn.Linear(48, 1))
    return dict(model=model, loader=loader(x, y, 32), loss_fn=lambda pred, t: F.huber_loss(pred, t, delta=0.5),
                optimizer=torch.optim.Adam(model.parameters(), lr=1e-3))


CASES: dict[str, Case] = {
    # healthy: no warning, no error
    "hf_gpt2": Case(hf_gpt2, healthy=True, needs="transformers"),
    "hf_bert_classifier": Case(hf_bert_classifier, healthy=True, needs="transformers"),
    "timm_resnet10t": Case(timm_resnet, healthy=True, needs="timm"),
    "compiled_mlp": Case(compiled_mlp, healthy=True),
    "custom_autograd": Case(custom_autograd, healthy=True),
    "lstm_classifier": Case(lstm_classifier, healthy=True),
    "gru_lm": Case(gru_lm, healthy=True),
    "own_loss_model": Case(own_loss_model, healthy=True),
    "own_loss_object": Case(own_loss_object, healthy=True),
    "huber_regression": Case(huber_regression, healthy=True),
    "multilabel_bce": Case(multilabel_bce, healthy=True),
    "nll_log_softmax": Case(nll_log_softmax, healthy=True),
    "conv1d_signal": Case(conv1d_signal, healthy=True),
    "memorised_small_data": Case(memorised_small_data, must_not=frozenset({"grad-spikes", "exploding-gradients",
                                                                          "loss-nan"}),
                                 why="64 images memorised inside the probe: loss near 0 is not a spike"),
    # broken: what must fire, what must not, and the headline
    # initializer_range=1.0 makes every weight 50x too large: the initial loss is far too high and the tanh inside
    # GPT-2's GELU saturates in every block. Both point at the initialisation and either is a right headline;
    # neither fix alone repairs it (the counterfactual keeps them apart).
    "hf_gpt2_huge_init": Case(hf_gpt2_huge_init, must=frozenset({"init-loss", "saturated-units"}),
                              headline=frozenset({"init-loss", "saturated-units"}), needs="transformers"),
    "exploding_relu_rnn": Case(exploding_relu_rnn, must=frozenset({"exploding-gradients"}),
                               headline="exploding-gradients",
                               why="recurrent gain 1.5, SGD 0.5: the norm jumps 100x at one step, then NaN"),
    "cnn_lr_too_high": Case(cnn_lr_too_high, headline=LR_ADVICE, must_not=frozenset({"overfit-one-batch"}),
                            why="SGD lr 5: the rate is the cause; dead units and input-independence follow"),
    "softmax_into_own_ce": Case(softmax_into_own_ce, must=frozenset({"output-not-logits"}),
                                headline="output-not-logits"),
    "sigmoid_into_bce_logits": Case(sigmoid_into_bce_logits, must=frozenset({"output-not-logits"}),
                                    headline="output-not-logits"),
    "shuffled_labels_dataloader": Case(shuffled_labels_dataloader, must=frozenset({"label-problems"}),
                                       headline="label-problems", must_not=LR_ADVICE),
    "same_batch_generator": Case(same_batch_generator, must=frozenset({"repeated-batches"}),
                                 headline="repeated-batches", must_not=frozenset({"grad-spikes"})),
    "unmasked_transformer": Case(unmasked_transformer, must=frozenset({"causal-leak"}), headline="causal-leak"),
    "dead_relu_rnn": Case(dead_relu_rnn, must=frozenset({"dead-units"}), headline="dead-units"),
    "compiled_missing_params": Case(compiled_missing_params, must=frozenset({"weights-not-updating"}),
                                    headline="weights-not-updating"),
    "raw_tabular_features": Case(raw_tabular_features, must=frozenset({"input-scale"}), headline="input-scale"),
    "saturated_tanh_params": Case(saturated_tanh_params, must=frozenset({"saturated-units"}),
                                  headline="saturated-units"),
    "gru_tiny_lr": Case(gru_tiny_lr, headline=LR_ADVICE, must=frozenset({"lr-range"})),
    # mixed precision: healthy models stay clean in fp16 and bf16; a target in dollars collapses the fp16 scale.
    "own_loss_object_fp16": Case(_fp16(own_loss_object), healthy=True),
    "conv1d_signal_fp16": Case(_fp16(conv1d_signal), healthy=True),
    "multilabel_bce_fp16": Case(_fp16(multilabel_bce), healthy=True),
    "hf_gpt2_bf16": Case(hf_gpt2_bf16, healthy=True, needs="transformers"),
    # The unscaled target makes the gradients huge in float32 as well: either is a right headline.
    "price_regression_fp16": Case(price_regression_fp16, must=frozenset({"amp-overflow"}),
                                  headline=frozenset({"amp-overflow", "exploding-gradients"}),
                                  why="GradScaler scale 2**16 -> 2**-8 on a squared error in dollars",
                                  known_miss="headline input-independence: in bf16 (the overflow's verified fix) the "
                                  "model still learns only the target's mean, so input-independence stands as a root "
                                  "of its own; amp-overflow led only while an LR re-probe whose loss blew up counted "
                                  "as removing it (no longer evidence, 2026-12-04); no rule yet reads an unscaled "
                                  "regression target"),
    # epoch loops: a generator that forgets set_epoch repeats one order; the same loop with it is clean.
    "epoch_generator_without_set_epoch": Case(epoch_generator_without_set_epoch,
                                              must=frozenset({"rank-same-batches"}), headline="rank-same-batches"),
    "epoch_generator_with_set_epoch": Case(epoch_generator_with_set_epoch, healthy=True),
    # every form of a loss, and settings that defeat the rate (issue 19)
    "voc_segmentation": Case(voc_segmentation, healthy=True, why="ignore_index=255 on void pixels"),
    "mixup_cnn": Case(mixup_cnn, healthy=True, why="soft targets from a mixup collate function"),
    "weighted_imbalanced": Case(weighted_imbalanced, healthy=True, why="class weights and label smoothing"),
    "rare_positive_bce": Case(rare_positive_bce, healthy=True, why="BCE with pos_weight 9"),
    "multilabel_tags": Case(multilabel_tags, healthy=True, why="20 tags, BCEWithLogitsLoss"),
    "gaussian_nll_regression": Case(gaussian_nll_regression, healthy=True, why="a loss that goes below zero"),
    "lstm_time_major_by_mistake": Case(lstm_time_major_by_mistake, must=frozenset({"batch-mixing"}),
                                       headline="batch-mixing", why="an LSTM without batch_first"),
    "adam_eps_one_cnn": Case(adam_eps_one_cnn, must=frozenset({"optimizer-config"}), headline="optimizer-config",
                             why="Adam eps=1.0; with eps fixed the net still learns slowly in 100 steps, and its "
                                 "inputs, which predict their labels, keep that from reading as unrelated labels"),
    "huber_broadcast": Case(huber_broadcast, must=frozenset({"loss-broadcast"}), headline="loss-broadcast",
                            why="(B, 1) against (B,) in a Huber loss"),
}
