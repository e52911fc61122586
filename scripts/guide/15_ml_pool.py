# gilscope: title = Training models in parallel with multiprocessing.Pool
# gilscope: lesson = the parent makes the data and forks two workers, then mostly waits; each worker process has a GIL of its own (another pid) that it holds while it trains, and the pool's helper threads in the parent barely touch the parent's GIL
# gilscope: expect = ok
# gilscope: timeout = 60
# gilscope: modes = main, processes
# gilscope: skip-reason = subinterpreters cannot start child processes (an isolated one forbids fork, and in a legacy shared one the forked children fail); in a host thread the pool fails to pickle train(), which it sends by name and looks up in the real __main__ module, not the copy's
"""Train one small model per data partition in a process pool, then combine.

The data are synthetic, made with a fixed seed: y = 2.0*x1 - 3.0*x2 + 0.5
plus a little noise, 4 partitions of 500 samples.  Each partition goes to a
worker process of a multiprocessing.Pool, which fits a linear model by
gradient descent in pure Python: CPU-bound work that threads could not run
in parallel (one GIL), but processes can (one GIL each).  The parent then
averages the four models' weights, as in simple data-parallel training.

Checked: each model and their average are within 0.05 of the true weights.
"""

import multiprocessing
import random
import sys
import time

TRUE_WEIGHTS = (2.0, -3.0)
TRUE_BIAS = 0.5
NOISE = 0.1
PARTITIONS = 4
SAMPLES_PER_PARTITION = 500
EPOCHS = 100
LEARNING_RATE = 0.5
TOLERANCE = 0.05
SEED = 12345


def make_partitions():
    rng = random.Random(SEED)
    partitions = []
    for _ in range(PARTITIONS):
        samples = []
        for _ in range(SAMPLES_PER_PARTITION):
            x = [rng.uniform(-1.0, 1.0) for _ in TRUE_WEIGHTS]
            y = (sum(w * xi for w, xi in zip(TRUE_WEIGHTS, x)) + TRUE_BIAS
                 + rng.gauss(0.0, NOISE))
            samples.append((x, y))
        partitions.append(samples)
    return partitions


def train(samples):
    """Full-batch gradient descent on the mean squared error."""
    weights = [0.0] * len(TRUE_WEIGHTS)
    bias = 0.0
    n = len(samples)
    for _ in range(EPOCHS):
        grad_w = [0.0] * len(weights)
        grad_b = 0.0
        for x, y in samples:
            error = sum(w * xi for w, xi in zip(weights, x)) + bias - y
            for j, xi in enumerate(x):
                grad_w[j] += error * xi
            grad_b += error
        weights = [w - LEARNING_RATE * g / n for w, g in zip(weights, grad_w)]
        bias -= LEARNING_RATE * grad_b / n
    return weights + [bias]


def main():
    partitions = make_partitions()
    start = time.perf_counter()
    with multiprocessing.Pool(processes=2) as pool:
        models = pool.map(train, partitions)
    elapsed = time.perf_counter() - start

    combined = [sum(column) / len(models) for column in zip(*models)]
    truth = list(TRUE_WEIGHTS) + [TRUE_BIAS]
    for i, model in enumerate(models):
        print(f"partition {i}: weights {[round(v, 3) for v in model]}")
    print(f"combined:    weights {[round(v, 3) for v in combined]} "
          f"(true {truth}); trained in {elapsed:.3f}s")
    checks = {f"partition {i}": model for i, model in enumerate(models)}
    checks["combined"] = combined
    for label, model in checks.items():
        worst = max(abs(v - t) for v, t in zip(model, truth))
        if worst > TOLERANCE:
            print(f"15_ml_pool: FAIL: {label} is {worst:.3f} off the true "
                  f"weights (tolerance {TOLERANCE})", file=sys.stderr)
            sys.exit(1)


if __name__ == "__main__":
    main()
