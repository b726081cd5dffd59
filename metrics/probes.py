"""Linear-readout style probe: how well decoded features predict a stimulus category.

The paper's "SVM" probe is read as scikit-learn's default SVC (RBF kernel, C = 1, gamma
'scale') after a StandardScaler fitted on each training fold only; ``kernel`` can be changed.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from bench.errors import BenchError


@dataclass
class ProbeResult:
    """accuracy: mean of the per-fold test accuracies (as sklearn's cross_val_score averages);
    fold_accuracies: (n_splits,); chance: frequency of the most common label over all samples
    (what always guessing that label scores); n_splits: folds actually used (can be fewer than
    requested, see ``svm_probe``)."""

    accuracy: float
    fold_accuracies: np.ndarray
    chance: float
    n_splits: int


def _check_labels(labels, n: int) -> np.ndarray:
    y = np.asarray(labels)
    if y.ndim != 1 or len(y) != n:
        raise BenchError(f"labels must be (n,) = ({n},), got shape {y.shape}")
    if len(np.unique(y)) < 2:
        raise BenchError(f"labels must contain at least 2 classes, got {len(np.unique(y))}")
    return y


def _feasible_splits(y: np.ndarray, groups: np.ndarray | None) -> int:
    """Largest number of folds in which every class can appear in every test fold."""
    if groups is None:
        return int(min(np.unique(y, return_counts=True)[1]))
    # With groups a class can reach at most as many folds as it has distinct groups.
    return int(min(len(np.unique(groups[y == c])) for c in np.unique(y)))


def cv_folds(labels: np.ndarray, groups: np.ndarray | None = None, n_splits: int = 5, seed: int = 0):
    """Stratified CV folds used by ``svm_probe``: -> (list of (train_idx, test_idx), n_splits used).

    labels: (n,); groups: (n,) or None. Without groups: StratifiedKFold(shuffle=True,
    random_state=seed). With groups: StratifiedGroupKFold(shuffle=True, random_state=seed), so all
    samples of one group (windows of one stimulus) land in the same test fold. When a class has
    fewer members (or, with groups, fewer distinct groups) than ``n_splits``, the number of folds
    is reduced to that count with a warning; below 2 folds it raises BenchError.
    """
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

    if isinstance(n_splits, bool) or not isinstance(n_splits, (int, np.integer)) or n_splits < 2:
        raise BenchError(f"n_splits must be an integer >= 2, got {n_splits!r}")
    y = np.asarray(labels)
    if y.ndim != 1:
        raise BenchError(f"labels must be (n,), got shape {y.shape}")
    g = None
    if groups is not None:
        g = np.asarray(groups)
        if g.shape != y.shape:
            raise BenchError(f"groups must be (n,) like labels {y.shape}, got shape {g.shape}")
    feasible = _feasible_splits(y, g)
    if feasible < 2:
        unit = "distinct groups" if g is not None else "members"
        raise BenchError(f"cannot run stratified CV: a class has fewer than 2 {unit} (labels {y.shape})")
    used = min(int(n_splits), feasible)
    if used < n_splits:
        warnings.warn(f"cv_folds: reduced n_splits from {n_splits} to {used}: the smallest class allows no more", stacklevel=2)
    if g is None:
        splitter = StratifiedKFold(n_splits=used, shuffle=True, random_state=seed)
        folds = list(splitter.split(np.zeros((len(y), 1)), y))
    else:
        splitter = StratifiedGroupKFold(n_splits=used, shuffle=True, random_state=seed)
        folds = list(splitter.split(np.zeros((len(y), 1)), y, g))
    return folds, used


def svm_probe(
    features: np.ndarray,
    labels: np.ndarray,
    groups: np.ndarray | None = None,
    n_splits: int = 5,
    seed: int = 0,
    *,
    kernel: str = "rbf",
) -> ProbeResult:
    """Cross-validated accuracy of StandardScaler + SVC(kernel) on (features (n, d), labels (n,)).

    features with more axes, (n, ...), are flattened to (n, d).
    groups (n,): samples sharing a group (windows cut from one stimulus) never fall on both
    sides of a split. Folds come from ``cv_folds`` (which may lower ``n_splits``, recorded in the
    result). Deterministic for a given seed.
    """
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    X = np.asarray(features)
    if X.ndim < 2 or X.shape[0] < 2:
        raise BenchError(f"features must be (n, d) with n >= 2, got shape {X.shape}")
    X = X.reshape(X.shape[0], -1).astype(np.float64)
    if not np.all(np.isfinite(X)):
        raise BenchError(f"features {X.shape} contain NaN or inf")
    y = _check_labels(labels, X.shape[0])
    folds, used = cv_folds(y, groups, n_splits=n_splits, seed=seed)

    accuracies = []
    for train, test in folds:
        model = make_pipeline(StandardScaler(), SVC(kernel=kernel))
        model.fit(X[train], y[train])
        accuracies.append(float(np.mean(model.predict(X[test]) == y[test])))
    counts = np.unique(y, return_counts=True)[1]
    return ProbeResult(
        accuracy=float(np.mean(accuracies)),
        fold_accuracies=np.asarray(accuracies, dtype=np.float64),
        chance=float(counts.max() / counts.sum()),
        n_splits=used,
    )
