"""The model zoo: architectures people train, each built from scratch with its authors' recipe.

Every entry builds (model, loader, optimizer factory, optional training_step) from a seed. Nothing is
downloaded: torchvision and timm models are built with random weights, Hugging Face models from tiny
configs. The data is synthetic and learnable (class prototypes plus noise for images, arithmetic sequences
for tokens), so a healthy recipe must show learning within the probe.

Recipes follow the authors' published training settings, with the learning rate scaled linearly to the
probe's batch where the authors state one for a larger batch (Goyal et al. 2017):
- SGD family (torchvision references for ResNet, DenseNet, ...): momentum 0.9, lr 0.1 per 256, wd 1e-4; AlexNet and
  VGG without BatchNorm at 0.01 per 256 (the references' note on them); SqueezeNet at its authors' 0.04 per 512,
  wd 2e-4;
- MobileNetV3 (torchvision references): RMSprop, lr 0.064 per 1024 (x 4 GPUs x 128), eps 0.0316, wd 1e-5;
- ViT, Swin, ConvNeXt, MaxViT and Hugging Face transformers: AdamW, lr 1e-3, wd 0.05, with no warmup, at the
  probe's batch of 16: what a user reaches for first (the recipe issue 19's sweep used). The authors' own
  1e-3..3e-3 is for batches of 1024-4096 after 5-20 epochs of warmup, linearly ~1.6e-5..5e-5 at 16; torchvision's
  Swin-V2-T does not train at the flat 1e-3 (its loss spikes to 8 and ends at ln 10), and the audit says so.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch.utils.data import DataLoader, TensorDataset

BATCH = 16
CLASSES = 10
# Architectures built from patches or attention: their recipe is AdamW's, their input 64x64.
TRANSFORMER = r"(vit|swin|maxvit|deit|beit|levit|pvt|poolformer|efficientformer|mobilevit|edgenext|coat|cait|" \
    r"crossvit|xcit|twins|tnt|mixer|resmlp|gmlp|convmixer)"


@dataclass
class Entry:
    name: str
    source: str  # torchvision | timm | hf
    family: str
    build: Callable[[], dict]  # () -> auditor.audit keywords, built after the caller seeds torch
    heavy: bool = False  # hundreds of millions of parameters: left out of the default sweep on a CPU


# --- data -----------------------------------------------------------------------------------------------


def images(size: int, n: int = 512, classes: int = CLASSES, channels: int = 3):
    g = torch.Generator().manual_seed(1234)  # the task is fixed; the seed varies the model and the order
    proto = torch.randn(classes, channels, size, size, generator=g)
    y = torch.randint(0, classes, (n,), generator=g)
    x = proto[y] + torch.randn(n, channels, size, size, generator=g)
    return DataLoader(TensorDataset(x, y), batch_size=BATCH, shuffle=True, drop_last=True)


def sequences(n: int = 512, length: int = 32, vocab: int = 64):
    g = torch.Generator().manual_seed(1234)
    start = torch.randint(0, vocab, (n, 1), generator=g)
    step = torch.randint(1, 4, (n, 1), generator=g)
    # The class is read off the first token, where BERT-style poolers look: learnable within the probe.
    return (start + step * torch.arange(length)) % vocab, start.squeeze(1) % 3


# --- recipes --------------------------------------------------------------------------------------------


def sgd(lr_per_256: float = 0.1, wd: float = 1e-4):
    return lambda params: torch.optim.SGD(params, lr=lr_per_256 * BATCH / 256, momentum=0.9, weight_decay=wd)


def adamw(lr: float = 1e-3, wd: float = 0.05):
    return lambda params: torch.optim.AdamW(params, lr=lr, weight_decay=wd)


def rmsprop_mobilenet():
    return lambda params: torch.optim.RMSprop(params, lr=0.064 * BATCH / 512, alpha=0.9, eps=0.0316,
                                              weight_decay=1e-5, momentum=0.9)


def _vision_recipe(name: str):
    if name == "alexnet" or re.fullmatch(r"vgg\d+", name):
        # torchvision's references: without BatchNorm "the default initial learning rate 0.1 is too high", 0.01.
        return sgd(0.01), "SGD 0.000625 (0.01 per 256), momentum 0.9, wd 1e-4"
    if name.startswith("squeezenet"):
        # The SqueezeNet authors' solver (DeepScale/SqueezeNet): base_lr 0.04 for batches of 512, wd 2e-4.
        return sgd(0.02, 2e-4), "SGD 0.00125 (0.04 per 512), momentum 0.9, wd 2e-4"
    if re.match(TRANSFORMER, name) or name.startswith("convnext"):
        return adamw(), "AdamW 1e-3, wd 0.05"
    if name.startswith("mobilenet_v3") or name.startswith("mobilenetv3"):
        return rmsprop_mobilenet(), "RMSprop 2e-3, eps 0.0316"
    return sgd(), "SGD 0.00625 (0.1 per 256), momentum 0.9, wd 1e-4"


# --- torchvision ----------------------------------------------------------------------------------------

# Models whose smallest variant stands for the family in the default sweep; the rest run with --all.
# Convolutional nets at 32x32 (CIFAR's size: every torchvision convnet pools adaptively); transformers at 64x64,
# so that a 16-pixel patch still leaves a 4x4 grid; Inception at 80, over its 75-pixel minimum.
# AlexNet's three max-pools need more than 32; ViT-H/14's patches need a multiple of 14 (56: a 4x4 grid, as the
# 16-pixel patches at 64).
TV_SIZE = {"inception_v3": 80, "alexnet": 64, "vit_h_14": 56}


def _size(name: str) -> int:
    return TV_SIZE.get(name, 64 if re.match(TRANSFORMER, name) else 32)
TV_KW = {"inception_v3": {"aux_logits": False, "init_weights": True},
         "googlenet": {"aux_logits": False, "init_weights": True}}
TV_HEAVY = {"vit_h_14", "vit_l_16", "vit_l_32", "regnet_y_128gf", "regnet_y_32gf", "regnet_x_32gf",
            "regnet_y_16gf", "regnet_x_16gf", "efficientnet_b7", "efficientnet_b6", "efficientnet_v2_l",
            "resnext101_64x4d", "resnext101_32x8d", "wide_resnet101_2", "convnext_large", "swin_v2_b", "swin_b",
            "vgg19_bn", "vgg19", "densenet161"}


# MaxViT-T partitions every stage into 7x7 windows, sized for 224 pixels (stages of 56, 28, 14 and 7: the last
# one global). At 64 pixels the stages are 16, 8, 4 and 2, so the window scales with them: 7 * 64 / 224 = 2 keeps
# the last stage's attention global. maxvit_t() fixes partition_size, so the class is built directly.
MAXVIT_PARTITION = 2


def _maxvit_t(**kw):
    from torchvision.models.maxvit import MaxVit

    return MaxVit(stem_channels=64, block_channels=[64, 128, 256, 512], block_layers=[2, 2, 5, 2], head_dim=32,
                  stochastic_depth_prob=0.2, **kw)


def _tv_family(name: str) -> str:
    return re.sub(r"(_?\d.*|_(tiny|small|large|base|t|s|b|l|h)$)", "", name) or name


def torchvision_entries() -> list[Entry]:
    import torchvision

    out = []
    for name in torchvision.models.list_models(module=torchvision.models):
        size = _size(name)
        kw = dict(TV_KW.get(name, {}), num_classes=CLASSES)
        if name.startswith("vit_"):
            kw["image_size"] = size
        if name.startswith("maxvit"):
            kw["input_size"] = (size, size)
        if name == "maxvit_t":
            kw["partition_size"] = MAXVIT_PARTITION  # built from its class: see _maxvit_t
        make_opt, recipe = _vision_recipe(name)

        def build(name=name, kw=kw, size=size, make_opt=make_opt):
            model = _maxvit_t(**kw) if name == "maxvit_t" else torchvision.models.get_model(name, weights=None, **kw)
            return dict(model=model, loader=images(size), make_optimizer=make_opt)

        out.append(Entry(name, "torchvision", _tv_family(name), build, heavy=name in TV_HEAVY))
        out[-1].recipe = recipe
    return out


# --- timm -----------------------------------------------------------------------------------------------

TIMM = ["resnet18d", "efficientnet_b0", "mobilenetv3_small_100", "vit_tiny_patch16_224", "deit_tiny_patch16_224",
        "convnext_atto", "regnetx_002", "regnety_002", "densenet121", "dla34", "ghostnet_100", "mixnet_s",
        "rexnet_100", "res2net50_14w_8s", "resnest14d", "cspresnet50", "poolformer_s12", "mobilevit_xxs",
        "lcnet_050", "fbnetc_100", "edgenext_xx_small", "pvt_v2_b0", "repvgg_a0", "nf_resnet26", "tinynet_e",
        "efficientformerv2_s0", "coat_lite_tiny", "xcit_nano_12_p16_224", "mixer_s32_224", "convmixer_768_32"]

def timm_entries() -> list[Entry]:
    out = []
    for name in TIMM:
        make_opt, recipe = _vision_recipe(name)

        def build(name=name, make_opt=make_opt):
            import timm

            kw = {"num_classes": CLASSES}
            size = _size(name)
            try:
                model = timm.create_model(name, pretrained=False, img_size=size, **kw)
            except TypeError:  # convolutional models take any size and no img_size
                model = timm.create_model(name, pretrained=False, **kw)
            return dict(model=model, loader=images(size), make_optimizer=make_opt)

        # timm shares some names with torchvision (efficientnet_b0, densenet121): its entries carry a prefix.
        out.append(Entry(f"timm/{name}", "timm", re.split(r"[_\d]", name)[0], build,
                         heavy=name == "convmixer_768_32"))
        out[-1].recipe = recipe
    return out


# --- Hugging Face ---------------------------------------------------------------------------------------

TINY = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128)
VOCAB = 64


def _lm_loader():
    tokens, _ = sequences()
    return [{"input_ids": tokens[i:i + BATCH], "labels": tokens[i:i + BATCH]} for i in range(0, 512, BATCH)]


def _cls_loader():
    tokens, label = sequences()
    return [{"input_ids": tokens[i:i + BATCH], "labels": label[i:i + BATCH]} for i in range(0, 512, BATCH)]


def _seq2seq_loader():
    tokens, _ = sequences()
    return [{"input_ids": tokens[i:i + BATCH, :16].contiguous(), "labels": tokens[i:i + BATCH, 16:].contiguous()}
            for i in range(0, 512, BATCH)]


def _image_loader(size=32, channels=3):
    return [{"pixel_values": x, "labels": y} for x, y in images(size, channels=channels)]


def _audio_loader():
    g = torch.Generator().manual_seed(1234)
    t = torch.arange(1600) / 16000
    freq = torch.tensor([220.0, 440.0, 660.0, 880.0])
    y = torch.randint(0, 4, (512,), generator=g)
    x = torch.sin(2 * torch.pi * freq[y, None] * t) + 0.3 * torch.randn(512, 1600, generator=g)
    return [{"input_values": x[i:i + BATCH], "labels": y[i:i + BATCH]} for i in range(0, 512, BATCH)]


def hf_step(model, batch):
    return model(**batch).loss


HF = {
    # decoder-only
    "gpt2": ("GPT2Config", "GPT2LMHeadModel", dict(n_embd=64, n_layer=2, n_head=4, vocab_size=VOCAB, n_positions=64),
             _lm_loader),
    "llama": ("LlamaConfig", "LlamaForCausalLM", dict(TINY, vocab_size=VOCAB, num_key_value_heads=2), _lm_loader),
    "mistral": ("MistralConfig", "MistralForCausalLM", dict(TINY, vocab_size=VOCAB, num_key_value_heads=2),
                _lm_loader),
    "qwen2": ("Qwen2Config", "Qwen2ForCausalLM", dict(TINY, vocab_size=VOCAB, num_key_value_heads=2), _lm_loader),
    "gpt_neox": ("GPTNeoXConfig", "GPTNeoXForCausalLM", dict(TINY, vocab_size=VOCAB), _lm_loader),
    "opt": ("OPTConfig", "OPTForCausalLM", dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                                ffn_dim=128, word_embed_proj_dim=64, vocab_size=VOCAB),
            _lm_loader),
    "phi": ("PhiConfig", "PhiForCausalLM", dict(TINY, vocab_size=VOCAB), _lm_loader),
    # encoder
    "bert": ("BertConfig", "BertForSequenceClassification", dict(TINY, vocab_size=VOCAB, num_labels=3),
             _cls_loader),
    "roberta": ("RobertaConfig", "RobertaForSequenceClassification",
                dict(TINY, vocab_size=VOCAB, num_labels=3, max_position_embeddings=40), _cls_loader),
    "distilbert": ("DistilBertConfig", "DistilBertForSequenceClassification",
                   dict(dim=64, n_layers=2, n_heads=4, hidden_dim=128, vocab_size=VOCAB, num_labels=3),
                   _cls_loader),
    "electra": ("ElectraConfig", "ElectraForSequenceClassification",
                dict(TINY, embedding_size=64, vocab_size=VOCAB, num_labels=3), _cls_loader),
    "albert": ("AlbertConfig", "AlbertForSequenceClassification",
               dict(TINY, embedding_size=32, vocab_size=VOCAB, num_labels=3), _cls_loader),
    # encoder-decoder
    "t5": ("T5Config", "T5ForConditionalGeneration",
           dict(d_model=64, d_ff=128, num_layers=2, num_heads=4, d_kv=16, vocab_size=VOCAB, decoder_start_token_id=0),
           _seq2seq_loader),
    "bart": ("BartConfig", "BartForConditionalGeneration",
             dict(d_model=64, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
                  decoder_attention_heads=4, encoder_ffn_dim=128, decoder_ffn_dim=128, vocab_size=VOCAB,
                  max_position_embeddings=64, decoder_start_token_id=2), _seq2seq_loader),
    # vision
    "vit": ("ViTConfig", "ViTForImageClassification", dict(TINY, image_size=32, patch_size=8, num_labels=CLASSES),
            _image_loader),
    "convnext": ("ConvNextConfig", "ConvNextForImageClassification",
                 dict(hidden_sizes=[16, 32, 64, 128], depths=[1, 1, 1, 1], num_labels=CLASSES), _image_loader),
    # audio
    "wav2vec2": ("Wav2Vec2Config", "Wav2Vec2ForSequenceClassification",
                 dict(TINY, conv_dim=(32, 32, 32), conv_stride=(5, 4, 4), conv_kernel=(10, 4, 4),
                      num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4, num_labels=4,
                      use_weighted_layer_sum=False), _audio_loader),
}


def hf_entries() -> list[Entry]:
    out = []
    for name, (config_cls, model_cls, kw, make_loader) in HF.items():
        def build(config_cls=config_cls, model_cls=model_cls, kw=kw, make_loader=make_loader):
            import transformers

            config = getattr(transformers, config_cls)(**kw)
            model = getattr(transformers, model_cls)(config)
            return dict(model=model, loader=make_loader(), training_step=hf_step, make_optimizer=adamw(1e-3, 0.01))

        out.append(Entry(name, "hf", name, build))
        out[-1].recipe = "AdamW 1e-3, wd 0.01"
    return out


def entries(sources=("torchvision", "timm", "hf")) -> list[Entry]:
    found = []
    for source, make in (("torchvision", torchvision_entries), ("timm", timm_entries), ("hf", hf_entries)):
        if source in sources:
            found += make()
    return found


# One model of each torchvision family, its smallest: the default sweep on a CPU (--all runs every model).
TV_REPS = ["alexnet", "convnext_tiny", "densenet121", "efficientnet_b0", "efficientnet_v2_s", "googlenet",
           "inception_v3", "maxvit_t", "mnasnet0_5", "mobilenet_v2", "mobilenet_v3_small", "regnet_x_400mf",
           "regnet_y_400mf", "resnet18", "resnext50_32x4d", "shufflenet_v2_x0_5", "squeezenet1_0", "swin_t",
           "swin_v2_t", "vgg11", "vgg11_bn", "vit_b_32", "wide_resnet50_2"]


def representatives(all_entries: list[Entry]) -> list[Entry]:
    return [e for e in all_entries if e.source != "torchvision" or e.name in TV_REPS]


