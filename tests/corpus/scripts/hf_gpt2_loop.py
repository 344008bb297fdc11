# A tiny GPT-2 from a config, trained with a manual loop on model(**batch).loss, AdamW, linear warm-up/decay.
import torch
from transformers import GPT2Config, GPT2LMHeadModel, get_linear_schedule_with_warmup

torch.manual_seed(0)
cfg = GPT2Config(vocab_size=64, n_positions=64, n_embd=64, n_layer=2, n_head=4)
model = GPT2LMHeadModel(cfg)
start = torch.randint(0, 64, (2048, 1))
step = torch.randint(1, 4, (2048, 1))
data = (start + step * torch.arange(32)) % 64
opt = torch.optim.AdamW(model.parameters(), lr=5e-4, weight_decay=0.01)
total = 5 * (2048 // 32)
sched = get_linear_schedule_with_warmup(opt, num_warmup_steps=20, num_training_steps=total)
model.train()
for epoch in range(5):
    perm = torch.randperm(2048)
    for i in range(0, 2048, 32):
        ids = data[perm[i:i + 32]]
        out = model(input_ids=ids, labels=ids)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad()
    print(epoch, out.loss.item())
