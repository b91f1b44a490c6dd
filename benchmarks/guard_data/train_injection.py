"""Train the ``prompt_injection`` model from the *tuned* part of the evaluation data.

Positives: injection items of tuned sources; negatives: every other tuned item
(benign text, toxic, PII and secrets messages are not injections). Features
are :func:`middleware.guards.injection_model.features` (the function the guard
scores with), scaled by 1/sqrt(n) as the guard does, and a logistic
regression (liblinear, deterministic) learns the weights. Weights too small
to matter are dropped and the rest rounded, so the JSON stays small; same data,
same file.

    python benchmarks/guard_data/train_injection.py
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from middleware.guards.injection_model import MODEL_PATH, features  # noqa: E402
from middleware.guards.normalize import forms  # noqa: E402

C = 4.0  # inverse regularisation; chosen by source-grouped validation on the tuned part
MIN_WEIGHT = 0.02
# The operating point: the highest probability at which the tuned part's recall is
# still 1.0. The bias is shifted so that this point reads as 0.5, the guard's threshold
# (as for the patterns, where one strong signal reaches 0.5).
OPERATING_POINT = 0.8


# Tuned sources added after the shipped model was trained (for the profanity guard); left
# out so that this script still rebuilds the shipped model from the same items.
NOT_TRAINED_ON = frozenset({"own/toxic_tune_comments", "own/benign_tune_lookalikes"})


def tuned_items() -> list[dict[str, object]]:
    items = []
    for path in (REPO / "tests/data/guard_eval.jsonl", REPO / "benchmarks/guard_data/eval.jsonl"):
        for line in path.read_text(encoding="utf-8").split("\n"):
            if not line.strip():
                continue
            it = json.loads(line)
            if it.get("part", "tuned") == "tuned" and it.get("source") not in NOT_TRAINED_ON:
                items.append(it)
    return items


def main() -> None:
    import numpy as np
    from scipy.sparse import csr_matrix
    from sklearn.linear_model import LogisticRegression

    items = tuned_items()
    rows = [sorted(features(forms(str(it["text"]))[1])) for it in items]
    vocab = {f: i for i, f in enumerate(sorted({f for r in rows for f in r}))}
    indptr, indices, data = [0], [], []
    for r in rows:
        scale = 1.0 / math.sqrt(len(r)) if r else 0.0
        indices.extend(vocab[f] for f in r)
        data.extend([scale] * len(r))
        indptr.append(len(indices))
    x = csr_matrix((data, indices, indptr), shape=(len(rows), len(vocab)))
    y = np.array([it["category"] == "injection" for it in items], dtype=int)
    clf = LogisticRegression(C=C, solver="liblinear", class_weight="balanced", max_iter=1000)
    clf.fit(x, y)
    names = sorted(vocab, key=vocab.__getitem__)
    weights = {
        names[i]: round(float(w), 3) for i, w in enumerate(clf.coef_[0]) if abs(w) >= MIN_WEIGHT
    }
    model = {
        "about": "prompt_injection logistic regression; built by "
        "benchmarks/guard_data/train_injection.py from the tuned sources",
        "training_items": len(items),
        "positives": int(y.sum()),
        "operating_point": OPERATING_POINT,
        "bias": round(
            float(clf.intercept_[0]) - math.log(OPERATING_POINT / (1 - OPERATING_POINT)), 4
        ),
        "weights": dict(sorted(weights.items())),
    }
    MODEL_PATH.parent.mkdir(exist_ok=True)
    MODEL_PATH.write_text(json.dumps(model, separators=(",", ":")) + "\n", encoding="utf-8")
    print(f"{len(items)} items ({int(y.sum())} injections), {len(vocab)} features, "
          f"{len(weights)} kept -> {MODEL_PATH.relative_to(REPO)} "
          f"({MODEL_PATH.stat().st_size // 1024} KiB)")  # fmt: skip


if __name__ == "__main__":
    main()
