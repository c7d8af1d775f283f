"""Your own model (any list of numpy arrays) and training loop, with fl_core's secure aggregation.
The server learns only the weighted mean of the hospitals' updates. Run: python examples/custom_model.py
"""

import numpy as np

from fl_core import ClientUpdate, flatten, make_aggregator, model_digest, unflatten

rng = np.random.default_rng(0)
true_w, true_b = np.array([[1.5], [-2.0], [0.5]]), 0.3
hospitals = []  # private (features, targets) per hospital, of different sizes
for rows in (120, 45, 300, 80):
    x = rng.normal(size=(rows, 3))
    hospitals.append((x, x @ true_w + true_b + 0.1 * rng.normal(size=(rows, 1))))

params = [np.zeros((3, 1)), np.zeros(1)]  # your model: here linear regression; any arrays work
# clip: the starting clip (adaptive), above round 1's largest update coordinate (0.8); 0.5 would clip, biasing the mean
aggregator = make_aggregator("secagg+", num_clients=len(hospitals), clip=2.0)  # or "secagg", "paillier"
# ("plain" takes no clip: it clips nothing, so make_aggregator("plain") alone)


def train_locally(params: list[np.ndarray], x: np.ndarray, y: np.ndarray) -> list[np.ndarray]:
    w, b = (p.copy() for p in params)
    for _ in range(5):  # your training: a few gradient steps on the squared error
        error = x @ w + b - y
        w -= 0.1 * x.T @ error / len(x)
        b -= 0.1 * error.mean(axis=0)
    return [w, b]


for round_ in range(1, 31):
    start, digest = flatten(params), model_digest(params)  # each hospital declares the model it trained from
    updates = [
        ClientUpdate(h, flatten(train_locally(params, x, y)) - start, num_samples=len(x), model_digest=digest)
        for h, (x, y) in enumerate(hospitals)
    ]  # the session binds the round's model: a hospital that trained from another is refused (result.refused)
    result = aggregator.aggregate(updates, rng=np.random.default_rng(round_), model_digest=digest)
    if result.mean is not None:  # None: skipped, too few hospitals left (result.skipped_reason)
        params = unflatten(start + result.mean, params)
print(f"learned w={params[0].ravel().round(3)} b={params[1].round(3)}; true w={true_w.ravel()} b={true_b}")
