import numpy as np
import pytest
from sklearn.metrics import log_loss as sk_log_loss

from tinyasc.evaluate.metrics import (
    breakdown,
    confusion_matrix,
    log_loss,
    macro_accuracy,
    macro_accuracy_ci,
    micro_accuracy,
)


def test_log_loss_equals_sklearn_with_ten_labels():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 10, 200)
    p = rng.dirichlet(np.ones(10), 200)
    # no probability below 1e-15: the 2021 rule and today's scikit-learn agree
    assert log_loss(y, p) == pytest.approx(sk_log_loss(y, p, labels=list(range(10))), rel=1e-12)
    p = p.copy()
    p[0] = np.eye(10)[(y[0] + 1) % 10]  # a confident mistake: clipped at 1e-15 (2021), not infinite
    clipped = 1e-15 / (1 - 1e-15 + 9e-15)  # scikit-learn 0.24: clip to [1e-15, 1 - 1e-15], renormalise
    expected = (-np.log(clipped) + sum(-np.log(p[i, y[i]]) for i in range(1, 200))) / 200
    assert log_loss(y, p) == pytest.approx(expected, rel=1e-12)
    assert log_loss(y, p) < sk_log_loss(y, p, labels=list(range(10)))  # 2.2e-16 clipping costs more
    # a subset missing some classes still uses all ten labels
    assert log_loss(y[1:6], p[1:6]) == pytest.approx(
        sk_log_loss(y[1:6], p[1:6], labels=list(range(10))), rel=1e-12
    )


def test_log_loss_hand_value():
    y = np.array([0, 1])
    p = np.array([[0.5, 0.5], [0.2, 0.8]])
    assert log_loss(y, p) == pytest.approx(-(np.log(0.5) + np.log(0.8)) / 2)


def test_macro_accuracy_is_mean_of_class_accuracies():
    y = np.array([0, 0, 0, 0, 1])
    pred = np.array([0, 0, 0, 0, 0])
    assert micro_accuracy(y, pred) == pytest.approx(0.8)
    assert macro_accuracy(y, pred, 2) == pytest.approx(0.5)  # (1.0 + 0.0) / 2
    # CI: 1.96 * sqrt(sum v_c) / C with the Agresti-Coull variance v_c = p~(1 - p~) / (n + z^2),
    # p~ = (correct + z^2/2) / (n + z^2): not 0 although each class is always or never right
    z = 1.959963984540054

    def v(correct, n):
        p = (correct + z**2 / 2) / (n + z**2)
        return p * (1 - p) / (n + z**2)

    assert macro_accuracy_ci(y, pred, 2) == pytest.approx(z * np.sqrt(v(4, 4) + v(0, 1)) / 2)
    assert macro_accuracy_ci(y, pred, 2) > 0.2
    y2, pred2 = np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1])
    assert macro_accuracy_ci(y2, pred2, 2) == pytest.approx(z * np.sqrt(v(1, 2) + v(2, 2)) / 2)


def test_confusion_and_breakdown():
    y = np.array([0, 1, 1, 2])
    p = np.eye(3)[[0, 1, 2, 2]] * 0.7 + 0.1
    assert confusion_matrix(y, p.argmax(1), 3).tolist() == [[1, 0, 0], [0, 1, 1], [0, 0, 1]]
    b = breakdown(y, p, ["a", "a", "s4", "s4"], ("x", "y", "z"), {"real": ("a",), "unseen": ("s4",)})
    assert b["device_wise"]["a"]["accuracy"] == 1.0 and b["group_wise"]["unseen"]["micro_accuracy"] == 0.5
    assert b["class_wise"]["y"]["accuracy"] == 0.5
    assert b["class_device_logloss"]["x"]["s4"] is None
