"""Logistic regression in plain numpy: fitted by Newton's method, served as a dot product.

Serving needs no scikit-learn: a model is its feature names, the training means and scales
and one coefficient per feature, stored as JSON. The fit is deterministic (no random start, a
fixed number of Newton steps with an L2 penalty), so one command reproduces the stored file.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from qa.errors import ConfigError

Matrix = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class LinearModel:
    """``sigmoid(((x - mean) / scale) @ coef + intercept)`` over the named features."""

    features: tuple[str, ...]
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    coef: tuple[float, ...]
    intercept: float

    def logits(self, x: Matrix) -> Matrix:
        """One logit per row of ``x`` (columns in :attr:`features` order)."""
        z = (np.asarray(x, dtype=np.float64) - np.asarray(self.mean)) / np.asarray(self.scale)
        out: Matrix = z @ np.asarray(self.coef) + self.intercept
        return out

    def probabilities(self, x: Matrix) -> Matrix:
        """One probability per row of ``x``."""
        out: Matrix = 1.0 / (1.0 + np.exp(-self.logits(x)))
        return out

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready form, rounded so that the file is stable across platforms."""
        return {
            "features": list(self.features),
            "mean": [round(v, 8) for v in self.mean],
            "scale": [round(v, 8) for v in self.scale],
            "coef": [round(v, 8) for v in self.coef],
            "intercept": round(self.intercept, 8),
        }

    @classmethod
    def from_json(
        cls, data: Mapping[str, Any], *, expect: Sequence[str], where: str
    ) -> LinearModel:
        """Read a model, refusing one whose feature list differs from ``expect``."""
        try:
            features = tuple(str(f) for f in data["features"])
            model = cls(
                features=features,
                mean=tuple(float(v) for v in data["mean"]),
                scale=tuple(float(v) for v in data["scale"]),
                coef=tuple(float(v) for v in data["coef"]),
                intercept=float(data["intercept"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"{where} is not a valid linear model: {exc!r}") from None
        if features != tuple(expect):
            raise ConfigError(
                f"{where} was fitted on features {list(features)}, but this seedqa computes "
                f"{list(expect)}; rebuild it with `python -m qa train-answerer`"
            )
        sizes = {len(model.mean), len(model.scale), len(model.coef)}
        if sizes != {len(features)} or not all(s > 0 for s in model.scale):
            raise ConfigError(f"{where} has coefficient lists that do not match its features")
        return model


def fit_logistic(
    x: Matrix,
    y: npt.NDArray[np.float64],
    *,
    features: Sequence[str],
    l2: float = 1.0,
    steps: int = 25,
) -> LinearModel:
    """Fit an L2-penalised logistic regression by Newton's method (deterministic)."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != len(features) or len(y) != len(x):
        raise ValueError(f"x is {x.shape}, y has {len(y)} rows, features are {len(features)}")
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale = np.where(scale > 1e-9, scale, 1.0)
    z = np.hstack([(x - mean) / scale, np.ones((len(x), 1))])
    w = np.zeros(z.shape[1])
    penalty = np.full(z.shape[1], l2)
    penalty[-1] = 0.0  # the intercept is not penalised
    for _ in range(steps):
        p = 1.0 / (1.0 + np.exp(-(z @ w)))
        gradient = z.T @ (p - y) + penalty * w
        hessian = (z * (p * (1 - p))[:, None]).T @ z + np.diag(penalty) + 1e-9 * np.eye(len(w))
        step = np.linalg.solve(hessian, gradient)
        w -= step
        if float(np.max(np.abs(step))) < 1e-10:
            break
    if not all(math.isfinite(v) for v in w):
        raise ValueError("the logistic fit diverged")
    return LinearModel(
        features=tuple(features),
        mean=tuple(float(v) for v in mean),
        scale=tuple(float(v) for v in scale),
        coef=tuple(float(v) for v in w[:-1]),
        intercept=float(w[-1]),
    )
