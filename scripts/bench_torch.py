"""The workload of `mlp bench` in PyTorch, for scripts/bench_peers.sh: the report's MLP1 or MLP2
(ReLU, softmax cross-entropy), SGD lr 0.01, momentum 0.9, weight decay 5e-4, batch 100, f32, inputs
(p - 128) / 255, weights N(0, 0.01^2), zero biases, a fresh shuffle every epoch.

Prints one line: seconds per training epoch (evaluation excluded), the test accuracy after the last epoch.

Usage: python3 scripts/bench_torch.py {mlp1,mlp2} EPOCHS THREADS DATA_DIR
"""

import gzip
import struct
import sys
import time

import numpy as np
import torch


def read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = struct.unpack(">" + "I" * ndim, data[4 : 4 + 4 * ndim])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def load(data_dir, split):
    images = read_idx(f"{data_dir}/{split}-images-idx3-ubyte.gz")
    labels = read_idx(f"{data_dir}/{split}-labels-idx1-ubyte.gz")
    x = (images.reshape(len(images), -1).astype(np.float32) - 128.0) / 255.0
    return torch.from_numpy(x), torch.from_numpy(labels.astype(np.int64))


def network(name):
    widths = {"mlp1": [784, 256, 10], "mlp2": [784, 500, 256, 10]}[name]
    layers = []
    for i, (inp, out) in enumerate(zip(widths, widths[1:])):
        linear = torch.nn.Linear(inp, out)
        torch.nn.init.normal_(linear.weight, 0.0, 0.01)
        torch.nn.init.zeros_(linear.bias)
        layers.append(linear)
        if i + 2 < len(widths):
            layers.append(torch.nn.ReLU())
    return torch.nn.Sequential(*layers)


def main():
    name, epochs, threads, data_dir = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    torch.set_num_threads(threads)
    torch.manual_seed(2019)
    x_train, y_train = load(data_dir, "train")
    x_test, y_test = load(data_dir, "t10k")
    model = network(name)
    loss_fn = torch.nn.CrossEntropyLoss()
    sgd = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    train_seconds = 0.0
    for _ in range(epochs):
        start = time.perf_counter()
        order = torch.randperm(len(x_train))
        for i in range(0, len(x_train), 100):
            batch = order[i : i + 100]
            sgd.zero_grad(set_to_none=False)
            loss = loss_fn(model(x_train[batch]), y_train[batch])
            loss.backward()
            sgd.step()
        train_seconds += time.perf_counter() - start
    with torch.no_grad():
        accuracy = (model(x_test).argmax(1) == y_test).float().mean().item()
    print(f"{train_seconds / epochs:.4f} {accuracy:.4f}")


if __name__ == "__main__":
    main()
