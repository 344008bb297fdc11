# Healthy: transfer learning as the torchvision tutorial does it: a backbone frozen (requires_grad=False), a new
# head trained with SGD over model.fc.parameters() only.
import torch
import torchvision
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

torch.manual_seed(0)
model = torchvision.models.resnet18(num_classes=1000)
for p in model.parameters():
    p.requires_grad = False
model.fc = nn.Linear(model.fc.in_features, 4)
proto = torch.randn(4, 3, 64, 64)
y = torch.randint(0, 4, (1200,))
x = proto[y] + torch.randn(1200, 3, 64, 64)
loader = DataLoader(TensorDataset(x, y), batch_size=32, shuffle=True)
optimizer = torch.optim.SGD(model.fc.parameters(), lr=0.001, momentum=0.9)
criterion = nn.CrossEntropyLoss()
for epoch in range(5):
    model.train()
    for inputs, labels in loader:
        optimizer.zero_grad()
        loss = criterion(model(inputs), labels)
        loss.backward()
        optimizer.step()
    print(epoch, loss.item())
