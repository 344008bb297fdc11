"""GPT-2 124M (Hugging Face transformers, built from its default config: nothing downloaded) for the GPU
benchmark, trained as nanoGPT trains it: AdamW, lr 6e-4, betas (0.9, 0.95), weight decay 0.1, bf16 autocast."""

import torch
import transformers

torch.manual_seed(0)
amp = "bf16"

model = transformers.GPT2LMHeadModel(transformers.GPT2Config())  # 124M parameters, context 1024
if torch.cuda.is_available():
    model = model.cuda()


def make_optimizer(params):
    return torch.optim.AdamW(params, lr=6e-4, betas=(0.9, 0.95), weight_decay=0.1)


def training_step(model, batch):
    return model(input_ids=batch, labels=batch).loss
