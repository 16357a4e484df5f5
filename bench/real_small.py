r"""Does the CPU space learn a few hundred *real* images? A small real set in RAF-DB's layout.

    python bench/real_small.py --out /tmp/realsmall            # build, search, finalize, report

Real images that a package ships: scikit-learn's copy of the UCI handwritten digits (scans of
real handwriting, 8x8, 17 grey levels). Digits 0-6 stand in for RAF-DB's 7 classes (label 1-7
in ``EmoLabel/list_patition_label.txt``, images in ``Image/aligned/``), ``--per-class`` images
each (default 60: 420 images, 336 train and 84 test), each scan upscaled to 24 px and placed in a
32 px JPEG with up to 2 px of random offset, as face crops carry alignment error. Centred, the
digits are too easy (a linear model reaches 0.98); with the offset a logistic regression on the
raw pixels reaches about 0.87-0.9 test UAR, the bar a careful engineer would expect to pass;
then ``fersearch search --space demo`` and ``finalize --top 3`` run as a user would run them.
Printed: the linear model's test UAR, the search's best validation UAR, the ensemble's test UAR
and the wall times. tests/test_real_small.py runs the same thing and checks the figures.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = 7  # digits 0-6 as RAF-DB's labels 1-7


def write_digits_rafdb(
    out: Path, per_class: int = 60, size: int = 32, digit: int = 24, jitter: int = 2, seed: int = 0
) -> dict:
    """Write ``per_class`` real digit scans per class in RAF-DB's layout; 80% train, 20% test."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    rng = np.random.default_rng(seed)
    out = Path(out)
    (out / "EmoLabel").mkdir(parents=True, exist_ok=True)
    (out / "Image" / "aligned").mkdir(parents=True, exist_ok=True)
    lines, counts = [], {"train": 0, "test": 0}
    for c in range(CLASSES):
        idx = rng.permutation(np.flatnonzero(digits.target == c))[:per_class]
        n_test = len(idx) // 5
        for j, i in enumerate(idx):
            split = "test" if j < n_test else "train"
            counts[split] += 1
            stem = f"{split}_{counts[split]:05d}"
            pixels = (digits.images[i] * (255 / 16)).round().astype(np.uint8)  # 0-16 -> 0-255
            scan = np.asarray(Image.fromarray(pixels, mode="L").resize((digit, digit), Image.BILINEAR))
            canvas = np.zeros((size, size), np.uint8)
            dx, dy = rng.integers(-jitter, jitter + 1, size=2) + (size - digit) // 2
            canvas[dy : dy + digit, dx : dx + digit] = scan
            img = Image.fromarray(canvas, mode="L").convert("RGB")
            img.save(out / "Image" / "aligned" / f"{stem}_aligned.jpg", quality=95)
            lines.append(f"{stem}.jpg {c + 1}")
    (out / "EmoLabel" / "list_patition_label.txt").write_text("\n".join(sorted(lines)) + "\n")
    return counts


def _read(root: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    rows = (root / "EmoLabel" / "list_patition_label.txt").read_text().split()
    names, labels = rows[0::2], [int(v) - 1 for v in rows[1::2]]
    keep = [i for i, n in enumerate(names) if n.startswith(split)]
    x = np.stack(
        [
            np.asarray(Image.open(root / "Image" / "aligned" / f"{names[i][:-4]}_aligned.jpg").convert("L"))
            for i in keep
        ]
    ).reshape(len(keep), -1)
    return x.astype(np.float32) / 255.0, np.array([labels[i] for i in keep])


def linear_baseline(root: Path) -> float:
    """Test UAR of a logistic regression on the raw pixels of the written images."""
    from sklearn.linear_model import LogisticRegression

    from fersearch.metrics import summarize

    x_train, y_train = _read(root, "train")
    x_test, y_test = _read(root, "test")
    model = LogisticRegression(max_iter=2000).fit(x_train, y_train)
    return float(summarize(y_test, model.predict(x_test), CLASSES)["uar"])


def run(out: Path, per_class: int = 60, trials: int = 10, top: int = 3) -> dict:
    from fersearch.cli import main

    out = Path(out)
    data = out / "digits"
    counts = write_digits_rafdb(data, per_class=per_class)
    linear = linear_baseline(data)
    storage = f"journal:{out / 'study.journal'}"
    t0 = time.perf_counter()
    argv = ["search", "--study", "digits", "--data", str(data), "--space", "demo", "--storage", storage]
    if main([*argv, "--n-trials", str(trials)]) != 0:
        raise SystemExit("search failed")
    t1 = time.perf_counter()
    if main(
        [
            "finalize",
            "--study",
            "digits",
            "--top",
            str(top),
            "--out",
            str(out / "final"),
            "--storage",
            storage,
        ]
    ):
        raise SystemExit("finalize failed")
    t2 = time.perf_counter()
    report = json.loads((out / "final" / "report.json").read_text())
    return {
        "images": counts,
        "linear_test_uar": linear,
        "best_val_uar": report["search"]["best_val_uar"],
        "test_uar": report["test"]["uar"],
        "test_war": report["test"]["war"],
        "chance_uar": report["baselines"]["chance_uar"],
        "search_seconds": round(t1 - t0, 1),
        "finalize_seconds": round(t2 - t1, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--per-class", type=int, default=60)
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--top", type=int, default=3)
    args = parser.parse_args()
    figures = run(args.out, args.per_class, args.trials, args.top)
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import quiet  # bench/quiet.py: refuse to measure on a busy machine

    quiet.guard(main)
