"""Fault: gradients clipped while still multiplied by the GradScaler's scale (AMP recipe without unscale_)."""
import torch
from torch import nn

device = "cuda" if torch.cuda.is_available() else "cpu"
torch.manual_seed(0)
X = torch.randn(4096, 32, device=device)
Y = (X @ torch.randn(32, 8, device=device)).argmax(1)
model = nn.Sequential(nn.Linear(32, 128), nn.GELU(), nn.Linear(128, 8)).to(device)
opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
scaler = torch.amp.GradScaler(device)
dtype = torch.float16 if device == "cuda" else torch.bfloat16
for _step in range(500):
    idx = torch.randint(0, len(X), (64,), device=device)
    opt.zero_grad(set_to_none=True)
    with torch.autocast(device_type=device, dtype=dtype):
        loss = nn.functional.cross_entropy(model(X[idx]), Y[idx])
    scaler.scale(loss).backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    scaler.step(opt)
    scaler.update()
