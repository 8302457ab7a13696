"""Peer: the PyTorch loop a user would write: nn.Sequential, DataLoader(shuffle=True), SGD.

Defaults everywhere (threads included), as a tutorial would leave them. ``LambdaLR`` stepped
per batch gives Keras' inverse-time decay lr / (1 + 1e-6 * t).
"""

REQUIRES = ("torch",)


def main() -> None:
    import time

    import common

    args = common.parse_args("notebook recipe as an idiomatic PyTorch loop")
    common.require(*REQUIRES)
    t0 = time.perf_counter()
    import torch
    from torch import nn
    from torch.utils.data import DataLoader, TensorDataset

    import_s = time.perf_counter() - t0
    d = common.load(args.data)
    torch.manual_seed(d["seed"])
    n = d["n_train"]
    x_all, y_all = torch.from_numpy(d["x_all"]), torch.from_numpy(d["y_all"].astype("int64"))
    train = DataLoader(TensorDataset(x_all[:n], y_all[:n]), batch_size=32, shuffle=True)
    val = DataLoader(TensorDataset(x_all[n:], y_all[n:]), batch_size=1000)
    test = DataLoader(
        TensorDataset(torch.from_numpy(d["x_test"]), torch.from_numpy(d["y_test"].astype("int64"))),
        batch_size=1000,
    )

    layers: list[nn.Module] = []
    for k, b in zip(d["kernels"], d["biases"]):
        lin = nn.Linear(*k.shape)
        with torch.no_grad():  # same start as every peer: Keras' (in, out) kernel, transposed
            lin.weight.copy_(torch.from_numpy(k.T))
            lin.bias.copy_(torch.from_numpy(b))
        layers += [lin, nn.ReLU()]
    model = nn.Sequential(*layers[:-1])  # logits; CrossEntropyLoss applies the softmax
    loss_fn = nn.CrossEntropyLoss()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: 1 / (1 + 1e-6 * t))

    def accuracy(loader) -> float:
        model.eval()
        correct = 0
        with torch.no_grad():
            for xb, yb in loader:
                correct += (model(xb).argmax(1) == yb).sum().item()
        return correct / len(loader.dataset)

    clock = common.EpochClock()
    for _ in range(args.epochs):
        clock.begin()
        model.train()
        for xb, yb in train:
            opt.zero_grad()
            loss = loss_fn(model(xb), yb)
            loss.backward()
            opt.step()
            sched.step()
        val_acc = accuracy(val)
        clock.end()
    common.write(
        args.out,
        epoch_seconds=clock.seconds,
        test_accuracy=accuracy(test),
        val_accuracy=val_acc,
        import_seconds=import_s,
        n_train=n,
        versions={"torch": torch.__version__},
        threads=torch.get_num_threads(),
        note="DataLoader(shuffle=True), default threads",
    )


if __name__ == "__main__":
    main()
