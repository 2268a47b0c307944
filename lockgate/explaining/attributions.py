"""Integrated gradients, checked for completeness.

For an example x, a baseline b and the model's explained output f, the
attribution of input i is (x_i - b_i) times the average of df/dx_i along the
straight path from b to x (Sundararajan, Taly and Yan, 2017). The
attributions of an example sum to f(x) - f(b) exactly when the path integral
is exact, so the sum's error measures how well the integral was computed:
steps are doubled (the trapezoid rule, reusing every gradient already taken)
until the error is within `tolerance` of |f(x) - f(b)| on at least `share` of
the examples, and the steps used are recorded.

The path's gradients are the only backend-specific part (Keras 3 has no
backend-neutral gradient): TensorFlow's tape, JAX's vjp or PyTorch's autograd.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

# Below this, f(x) - f(b) is float32 noise: an example whose output does not
# move along the path is complete when its attributions sum to (nearly) zero.
ABSOLUTE_FLOOR = 1e-5


@dataclass(frozen=True)
class Attributions:
    """Integrated gradients of a batch of examples, and how complete they are."""

    values: np.ndarray  # (n, *input shape): each input's share of f(x) - f(b)
    explained_output: np.ndarray  # (n,) int: the output explained (the predicted class, or 0)
    output_at_input: np.ndarray  # (n,) f(x)
    output_at_baseline: np.ndarray  # (n,) f(b)
    steps: int  # trapezoid intervals along the path
    completeness_error: np.ndarray  # (n,) |sum of attributions - (f(x) - f(b))|
    tolerance: float  # allowed error, relative to |f(x) - f(b)|

    @property
    def within_tolerance(self) -> np.ndarray:
        allowed = np.maximum(self.tolerance * np.abs(self.output_at_input - self.output_at_baseline), ABSOLUTE_FLOOR)
        return self.completeness_error <= allowed

    @property
    def complete_share(self) -> float:
        """Share of examples whose attributions sum to f(x) - f(b) within tolerance."""
        return float(self.within_tolerance.mean()) if len(self.values) else 1.0

    def relative_errors(self) -> np.ndarray:
        gap = np.abs(self.output_at_input - self.output_at_baseline)
        return self.completeness_error / np.maximum(gap, ABSOLUTE_FLOOR)


def gradient_function(call: Callable[[Any], Any]) -> Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """(x, explained output index per row) -> (the explained outputs, their
    gradients with respect to x), with the running Keras backend's autodiff."""
    import keras  # deferred: Keras takes seconds to import; only explaining a model needs it

    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf  # deferred: only the TensorFlow backend differentiates with it

        @tf.function(reduce_retracing=True)
        def tf_gradients(x, index):
            with tf.GradientTape() as tape:
                tape.watch(x)
                picked = tf.gather(call(x), index, axis=1, batch_dims=1)
            return picked, tape.gradient(picked, x)

        def run(x: np.ndarray, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            picked, grads = tf_gradients(tf.constant(x, tf.float32), tf.constant(index, tf.int32))
            return picked.numpy(), grads.numpy()

        return run
    if backend == "jax":
        import jax  # deferred: only the JAX backend differentiates with it
        import jax.numpy as jnp

        def picked_sum(x, index):
            picked = jnp.take_along_axis(call(x), index[:, None], axis=1)[:, 0]
            return picked.sum(), picked

        jax_gradients = jax.jit(jax.grad(picked_sum, has_aux=True))

        def run_jax(x: np.ndarray, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            grads, picked = jax_gradients(jnp.asarray(x, jnp.float32), jnp.asarray(index))
            return np.asarray(picked), np.asarray(grads)

        return run_jax
    if backend == "torch":
        import torch  # deferred: only the PyTorch backend differentiates with it

        def run_torch(x: np.ndarray, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            tensor = torch.tensor(x, dtype=torch.float32, requires_grad=True)
            picked = torch.gather(call(tensor), 1, torch.as_tensor(index, dtype=torch.int64)[:, None])[:, 0]
            (grads,) = torch.autograd.grad(picked.sum(), tensor)
            return picked.detach().cpu().numpy(), grads.detach().cpu().numpy()

        return run_torch
    raise ValueError(f"integrated gradients need a differentiating Keras backend, not {backend!r}")


def integrated_gradients(
    gradients: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]],
    x: np.ndarray,
    baseline: np.ndarray,
    explained_output: np.ndarray,
    tolerance: float = 0.01,
    share: float = 0.99,
    start_steps: int = 16,
    max_steps: int = 1024,
) -> Attributions:
    """Attributions of `x` against `baseline` (same shape, or one example that
    broadcasts), doubling the path's steps until completeness holds on
    `share` of the examples or `max_steps` is reached (then the record says
    how complete they are)."""
    x = np.asarray(x, dtype="float32")
    baseline = np.broadcast_to(np.asarray(baseline, dtype="float32"), x.shape)
    index = np.asarray(explained_output, dtype="int32")
    difference = x - baseline

    def at(alpha: float) -> tuple[np.ndarray, np.ndarray]:
        return gradients(baseline + np.float32(alpha) * difference, index)

    start_out, start_grad = at(0.0)
    end_out, end_grad = at(1.0)
    # The trapezoid sum over `steps` intervals: half of each end, every interior point.
    summed = (start_grad.astype("float64") + end_grad) / 2.0
    steps = max(1, start_steps)
    for k in range(1, steps):
        summed += at(k / steps)[1]
    while True:
        values = (difference * (summed / steps)).astype("float32")
        error = np.abs(values.reshape(len(x), -1).sum(axis=1, dtype="float64") - (end_out - start_out))
        result = Attributions(values, index, end_out, start_out, steps, error, tolerance)
        if result.complete_share >= share or steps * 2 > max_steps:
            return result
        for k in range(1, 2 * steps, 2):  # the midpoints: doubling reuses every gradient taken
            summed += at(k / (2 * steps))[1]
        steps *= 2
