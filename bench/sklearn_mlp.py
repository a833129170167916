"""Train scikit-learn's MLPClassifier on the fixed MNIST-10k split and time each epoch.

The split is the one every npdec example uses: the first 8,000 images of
examples/data/mnist10k-*-idx*-ubyte.gz for training, the last 2,000 for testing,
grey levels divided by 255, in float64 (or float32 with `--dtype float32`, which
scikit-learn keeps through the whole fit: weights, products and Adam). Each epoch is one call of `partial_fit`,
which makes one shuffled pass of mini-batches with Adam over all 8,000 samples
(62 batches of the batch size and one of the rest, as npdec's epochs), so the
timing covers training only (no data loading, no scoring). Early stopping is off
and `partial_fit` never holds out a validation set.

The L2 weight is given per sample as in npdec's `l2` clause: scikit-learn's
`alpha` divides by the batch size, so it is set to `l2 * batch`.

BLAS and OpenMP run on `--threads` threads (threadpoolctl's limits); the pools
actually used are listed in the output.

Prints one JSON object on standard output, e.g.
{"tool": "scikit-learn", "hidden": 784, "epoch_seconds": [...],
 "median_epoch_seconds": 1.9, "test_accuracy": 0.95, "thread_pools": [...], ...}
"""

import argparse
import gzip
import json
import os
import statistics
import sys
import time

import numpy as np
import sklearn
from sklearn.neural_network import MLPClassifier
from threadpoolctl import threadpool_info, threadpool_limits

TRAIN_SAMPLES = 8000


def read_idx(path):
    """Read a gzipped IDX file of unsigned bytes into an array of its dimensions."""
    with gzip.open(path, "rb") as handle:
        data = handle.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise ValueError(f"{path}: not an IDX file of unsigned bytes")
    rank = data[3]
    dims = [int.from_bytes(data[4 + 4 * k : 8 + 4 * k], "big") for k in range(rank)]
    values = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * rank)
    if values.size != int(np.prod(dims)):
        raise ValueError(f"{path}: {values.size} values for dimensions {dims}")
    return values.reshape(dims)


def main():
    repository = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=os.path.join(repository, "examples", "data"),
                        help="folder holding the MNIST-10k IDX files")
    parser.add_argument("--hidden", type=int, default=784,
                        help="width of the single hidden layer (default 784, the pixel count)")
    parser.add_argument("--epochs", type=int, default=5, help="number of epochs to time")
    parser.add_argument("--batch", type=int, default=128, help="mini-batch size in samples")
    parser.add_argument("--learning-rate", type=float, default=5e-4,
                        help="Adam step size (default 5e-4, as examples/mnist_mlp.npde)")
    parser.add_argument("--l2", type=float, default=1e-4,
                        help="L2 weight per sample (default 1e-4, as examples/mnist_mlp.npde)")
    parser.add_argument("--activation", default="relu",
                        choices=["identity", "logistic", "tanh", "relu"],
                        help="hidden activation (scikit-learn has no swish; default relu)")
    parser.add_argument("--threads", type=int, default=os.cpu_count(),
                        help="threads of the BLAS and OpenMP pools (default: every core)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the weights and shuffling")
    parser.add_argument("--dtype", default="float64", choices=["float64", "float32"],
                        help="floating-point type of the data, and so of the whole fit "
                             "(default float64)")
    args = parser.parse_args()
    if args.epochs < 1:
        parser.error("--epochs must be at least 1")
    if args.threads < 1:
        parser.error("--threads must be at least 1")

    images = read_idx(os.path.join(args.data, "mnist10k-images-idx3-ubyte.gz"))
    labels = read_idx(os.path.join(args.data, "mnist10k-labels-idx1-ubyte.gz"))
    inputs = (images.reshape(images.shape[0], -1).astype(np.float64) / 255.0).astype(args.dtype)
    x_train, y_train = inputs[:TRAIN_SAMPLES], labels[:TRAIN_SAMPLES]
    x_test, y_test = inputs[TRAIN_SAMPLES:], labels[TRAIN_SAMPLES:]

    model = MLPClassifier(
        hidden_layer_sizes=(args.hidden,),
        activation=args.activation,
        solver="adam",
        alpha=args.l2 * args.batch,
        batch_size=args.batch,
        learning_rate_init=args.learning_rate,
        shuffle=True,
        early_stopping=False,
        random_state=args.seed,
    )
    classes = np.arange(10)
    epoch_seconds = []
    with threadpool_limits(limits=args.threads):
        thread_pools = [
            {key: pool.get(key) for key in ("internal_api", "num_threads", "version")}
            for pool in threadpool_info()
        ]
        for _ in range(args.epochs):
            start = time.perf_counter()
            model.partial_fit(x_train, y_train, classes=classes)
            epoch_seconds.append(time.perf_counter() - start)

    result = {
        "tool": "scikit-learn",
        "version": sklearn.__version__,
        "numpy": np.__version__,
        "hidden": args.hidden,
        "activation": args.activation,
        "dtype": str(model.coefs_[0].dtype),
        "batch": args.batch,
        "batches_per_epoch": -(-int(x_train.shape[0]) // args.batch),
        "train_samples": int(x_train.shape[0]),
        "test_samples": int(x_test.shape[0]),
        "epochs": args.epochs,
        "epoch_seconds": epoch_seconds,
        "median_epoch_seconds": statistics.median(epoch_seconds),
        "train_loss": float(model.loss_),
        "test_accuracy": float(model.score(x_test, y_test)),
        "cpu_count": os.cpu_count(),
        "thread_pools": thread_pools,
    }
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
