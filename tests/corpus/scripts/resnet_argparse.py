# torchvision ResNet-18 from scratch with the reference recipe (SGD momentum 0.9, wd 1e-4, cosine per epoch, the
# rate 0.1 per 256 images scaled linearly with the batch as Goyal et al. 2017 do), argparse and a main() guarded
# by __name__, channels_last, a val() between eval() and train().
import argparse

import torch
import torchvision


def parse_args(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--epochs", type=int, default=90)
    p.add_argument("--lr", type=float, default=None, help="default: 0.1 x batch-size / 256")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--workers", type=int, default=0)
    return p.parse_args(argv)


def val(model, loader, criterion):
    model.eval()
    with torch.inference_mode():
        total = sum(criterion(model(x), y).item() for x, y in loader)
    return total / len(loader)


def main(args):
    torch.manual_seed(0)
    images = torch.randn(1024, 3, 32, 32)
    labels = torch.randint(0, 10, (1024,))
    images += labels.view(-1, 1, 1, 1).float() * 0.1
    ds = torch.utils.data.TensorDataset(images, labels)
    train_ds, val_ds = torch.utils.data.random_split(ds, [896, 128])
    train_loader = torch.utils.data.DataLoader(train_ds, batch_size=args.batch_size, shuffle=True,
                                               num_workers=args.workers, drop_last=True)
    val_loader = torch.utils.data.DataLoader(val_ds, batch_size=64)
    model = torchvision.models.resnet18(num_classes=10).to(memory_format=torch.channels_last)
    criterion = torch.nn.CrossEntropyLoss(label_smoothing=0.1)
    lr = args.lr if args.lr is not None else 0.1 * args.batch_size / 256
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=1e-4)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=args.epochs)
    for epoch in range(args.epochs):
        model.train()
        for x, y in train_loader:
            loss = criterion(model(x.to(memory_format=torch.channels_last)), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        print(epoch, val(model, val_loader, criterion))
        scheduler.step()


if __name__ == "__main__":
    main(parse_args())
