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
    completeness_error: np.ndarray  # (n,) |sum of attributions - (f(x) - f(b))|
    tolerance: float  # allowed error, relative to |f(x) - f(b)|
    example_steps: np.ndarray  # (n,) the trapezoid intervals each example's path was summed over

    @property
    def steps(self) -> int:
        """The most intervals any example needed."""
        return int(self.example_steps.max(initial=0))

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


def gradient_function(
    call: Callable[[Any, Any], Any],
) -> Callable[[np.ndarray, np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """(x, explained output index per row, context per row) -> (the explained
    outputs, their gradients with respect to x), with the running Keras
    backend's autodiff. `call(x, context)` is the model from x on; context
    is what stays fixed along the path (a text's token ids), or (n, 0)."""
    import keras  # deferred: Keras takes seconds to import; only explaining a model needs it

    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf  # deferred: only the TensorFlow backend differentiates with it

        @tf.function(reduce_retracing=True)
        def tf_gradients(x, index, context):
            with tf.GradientTape() as tape:
                tape.watch(x)
                picked = tf.gather(call(x, context), index, axis=1, batch_dims=1)
            return picked, tape.gradient(picked, x)

        def run(x: np.ndarray, index: np.ndarray, context: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            picked, grads = tf_gradients(tf.constant(x, tf.float32), tf.constant(index, tf.int32), tf.constant(context))
            return picked.numpy(), grads.numpy()

        return run
    if backend == "jax":
        import jax  # deferred: only the JAX backend differentiates with it
        import jax.numpy as jnp

        def picked_sum(x, index, context):
            picked = jnp.take_along_axis(call(x, context), index[:, None], axis=1)[:, 0]
            return picked.sum(), picked

        jax_gradients = jax.jit(jax.grad(picked_sum, has_aux=True))

        def run_jax(x: np.ndarray, index: np.ndarray, context: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            grads, picked = jax_gradients(jnp.asarray(x, jnp.float32), jnp.asarray(index), jnp.asarray(context))
            return np.asarray(picked), np.asarray(grads)

        return run_jax
    if backend == "torch":
        import torch  # deferred: only the PyTorch backend differentiates with it

        def run_torch(x: np.ndarray, index: np.ndarray, context: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            tensor = torch.tensor(x, dtype=torch.float32, requires_grad=True)
            outputs = call(tensor, torch.as_tensor(context))
            picked = torch.gather(outputs, 1, torch.as_tensor(index, dtype=torch.int64)[:, None])[:, 0]
            (grads,) = torch.autograd.grad(picked.sum(), tensor)
            return picked.detach().cpu().numpy(), grads.detach().cpu().numpy()

        return run_torch
    raise ValueError(f"integrated gradients need a differentiating Keras backend, not {backend!r}")


def integrated_gradients(
    gradients: Callable[[np.ndarray, np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]],
    x: np.ndarray,
    baseline: np.ndarray,
    explained_output: np.ndarray,
    tolerance: float = 0.01,
    share: float = 0.99,
    start_steps: int = 16,
    max_steps: int = 16384,
    context: np.ndarray | None = None,
    chunk_rows: int = 4096,
) -> Attributions:
    """Attributions of `x` against `baseline` (same shape, or one example that
    broadcasts). Every example starts with `start_steps` intervals; while
    fewer than `share` of them pass the completeness check, the steps of
    those that fail are doubled (up to `max_steps`), the others kept. Path
    points of many examples and steps go to the model together, in chunks
    of `chunk_rows` rows."""
    x = np.asarray(x, dtype="float32")
    n = len(x)
    baseline = np.broadcast_to(np.asarray(baseline, dtype="float32"), x.shape)
    index = np.asarray(explained_output, dtype="int32")
    context = np.zeros((n, 0), dtype="int32") if context is None else np.asarray(context)
    difference = x - baseline
    summed = np.zeros(x.shape, dtype="float64")

    def add(examples: np.ndarray, alphas: np.ndarray, weight: float = 1.0) -> np.ndarray:
        """Add the gradients at `alphas` along each example's path; the
        explained outputs there, (examples, alphas)."""
        picked = np.zeros((len(examples), len(alphas)), dtype="float64")
        per_call = max(1, chunk_rows // max(len(alphas), 1))
        for start in range(0, len(examples), per_call):
            group = examples[start : start + per_call]
            for a0 in range(0, len(alphas), chunk_rows):
                a = alphas[a0 : a0 + chunk_rows].astype("float32")
                shape = (len(group) * len(a),) + x.shape[1:]
                points = (baseline[group][:, None] + a.reshape((1, -1) + (1,) * (x.ndim - 1)) * difference[group][:, None])
                out, grads = gradients(points.reshape(shape), np.repeat(index[group], len(a)),
                                       np.repeat(context[group], len(a), axis=0))
                summed[group] += weight * grads.reshape((len(group), len(a)) + x.shape[1:]).sum(axis=1)
                picked[start : start + len(group), a0 : a0 + len(a)] = out.reshape(len(group), len(a))
        return picked

    everyone = np.arange(n)
    start_out = add(everyone, np.array([0.0]), 0.5)[:, 0]
    end_out = add(everyone, np.array([1.0]), 0.5)[:, 0]
    steps = np.full(n, max(1, start_steps))
    add(everyone, np.arange(1, steps[0]) / steps[0])
    while True:
        values = (difference * (summed / steps.reshape((-1,) + (1,) * (x.ndim - 1)))).astype("float32")
        error = np.abs(values.reshape(n, -1).sum(axis=1, dtype="float64") - (end_out - start_out))
        result = Attributions(values, index, end_out, start_out, error, tolerance, steps.copy())
        failing = np.flatnonzero(~result.within_tolerance & (steps * 2 <= max_steps))
        if result.complete_share >= share or len(failing) == 0:
            return result
        m = int(steps[failing[0]])  # every failing example has been refined alike
        add(failing, np.arange(1, 2 * m, 2) / (2 * m))  # the midpoints: doubling reuses every gradient taken
        steps[failing] *= 2
