"""DCASE 2021 Task 1A metrics as pure functions (reference section 1.6).

- accuracy: sed_eval class-wise average, i.e. the mean of the class-wise accuracies (macro);
  plain (micro) accuracy is reported beside it;
- log loss: scikit-learn's ``log_loss(y_true, y_pred, labels=range(C))`` as it was in 2021 (0.24, the
  version of the official evaluation): probabilities clipped to [1e-15, 1 - 1e-15] (its ``eps``
  default then; later versions clip at the float64 machine epsilon, 2.2e-16, which adds 1.5 to the loss
  of every file whose true-class probability is below 1e-15), rows renormalised, mean negative log of
  the true class.

95% confidence intervals (stated in every report):
- log loss: 1.96 x standard error of the per-file losses (normal approximation);
- class-wise accuracy: 1.96 x sqrt(sum_c v_c) / C, the standard error of a mean of C independent
  binomial proportions, each with the Agresti-Coull variance v_c = p~(1 - p~) / (n + z^2) of
  p~ = (correct + z^2 / 2) / (n + z^2). Unlike the plain Wald variance p(1 - p)/n it does not collapse
  to 0 when a class is always or never right (a model that predicts one class is not certain of its
  accuracy). This is Agresti and Coull's adjusted Wald interval, a close approximation of Wilson's.
"""

from __future__ import annotations

import numpy as np

from tinyasc.data.tau import device_sort_key

EPS = 1e-15  # scikit-learn 0.24's log_loss eps: the 2021 evaluation's clipping
Z95 = 1.959963984540054


def per_file_log_loss(y: np.ndarray, probs: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(probs, dtype=np.float64), EPS, 1 - EPS)
    p = p / p.sum(axis=1, keepdims=True)
    return -np.log(p[np.arange(len(y)), y])


def log_loss(y: np.ndarray, probs: np.ndarray) -> float:
    return float(np.mean(per_file_log_loss(y, probs))) if len(y) else float("nan")


def log_loss_ci(y: np.ndarray, probs: np.ndarray) -> float:
    losses = per_file_log_loss(y, probs)
    return float(Z95 * losses.std(ddof=1) / np.sqrt(len(losses))) if len(losses) > 1 else float("nan")


def class_accuracies(y: np.ndarray, pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Accuracy per class (NaN for a class with no files)."""
    out = np.full(n_classes, np.nan)
    for c in range(n_classes):
        mask = y == c
        if mask.any():
            out[c] = float(np.mean(pred[mask] == c))
    return out


def macro_accuracy(y: np.ndarray, pred: np.ndarray, n_classes: int) -> float:
    acc = class_accuracies(y, pred, n_classes)
    return float(np.nanmean(acc)) if np.isfinite(acc).any() else float("nan")


def macro_accuracy_ci(y: np.ndarray, pred: np.ndarray, n_classes: int) -> float:
    """Half-width of the 95% interval of the class-wise mean accuracy (Agresti-Coull per class)."""
    counts = np.array([np.sum(y == c) for c in range(n_classes)], dtype=np.float64)
    correct = np.array([np.sum((y == c) & (pred == c)) for c in range(n_classes)], dtype=np.float64)
    present = counts > 0
    n_adj = counts[present] + Z95**2
    p_adj = (correct[present] + Z95**2 / 2) / n_adj
    var = np.sum(p_adj * (1 - p_adj) / n_adj) / present.sum() ** 2
    return float(Z95 * np.sqrt(var))


def micro_accuracy(y: np.ndarray, pred: np.ndarray) -> float:
    return float(np.mean(y == pred)) if len(y) else float("nan")


def confusion_matrix(y: np.ndarray, pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Counts (true class, predicted class)."""
    cm = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(cm, (y, pred), 1)
    return cm


def summarize(y: np.ndarray, probs: np.ndarray, n_classes: int) -> dict:
    """Accuracy (macro, micro), log loss and their 95% CIs for one set of files."""
    pred = probs.argmax(axis=1)
    return {
        "files": int(len(y)),
        "accuracy": macro_accuracy(y, pred, n_classes),
        "accuracy_ci95": macro_accuracy_ci(y, pred, n_classes) if len(y) else float("nan"),
        "micro_accuracy": micro_accuracy(y, pred),
        "logloss": log_loss(y, probs),
        "logloss_ci95": log_loss_ci(y, probs),
    }


def breakdown(
    y: np.ndarray,
    probs: np.ndarray,
    devices: list[str],
    classes: tuple[str, ...],
    groups: dict[str, tuple[str, ...]],
) -> dict:
    """Overall, per class, per device, per device group and class x device log loss."""
    n = len(classes)
    devices_arr = np.asarray(devices)
    pred = probs.argmax(axis=1)
    out: dict = {
        "overall": summarize(y, probs, n),
        "class_wise": {},
        "device_wise": {},
        "group_wise": {},
        "class_device_logloss": {},
        "class_device_accuracy": {},
    }
    for c, name in enumerate(classes):
        mask = y == c
        out["class_wise"][name] = {
            "files": int(mask.sum()),
            "accuracy": micro_accuracy(y[mask], pred[mask]),
            "logloss": log_loss(y[mask], probs[mask]),
        }
    present = sorted((d for d in set(devices) if d), key=device_sort_key)
    for d in present:
        mask = devices_arr == d
        out["device_wise"][d] = summarize(y[mask], probs[mask], n)
    for g, members in groups.items():
        mask = np.isin(devices_arr, members)
        if mask.any():
            out["group_wise"][g] = summarize(y[mask], probs[mask], n)
    for c, name in enumerate(classes):
        out["class_device_logloss"][name] = {}
        out["class_device_accuracy"][name] = {}
        for d in present:
            mask = (y == c) & (devices_arr == d)
            out["class_device_logloss"][name][d] = log_loss(y[mask], probs[mask]) if mask.any() else None
            out["class_device_accuracy"][name][d] = (
                micro_accuracy(y[mask], pred[mask]) if mask.any() else None
            )
    out["confusion"] = confusion_matrix(y, pred, n).tolist()
    return out
