r"""The wheelhouse the GPU check installs from: wheels of exactly what the GPU machine lacks.

    make wheelhouse          # -> .whl/ (git-ignored; carried with the tree to the GPU machine)

That machine reaches no package registry. It has Python 3.12 with torch, torchvision, timm,
onnxruntime, safetensors, OpenCV, typer, rich, PyYAML, matplotlib, numpy, scipy, jinja2, grpcio,
huggingface_hub and more, but not optuna, open_clip_torch, albumentations, pydantic or
SQLAlchemy, and its timm is another version than the tests ran with. This fetches those (timm
too) and their own requirements that it also lacks, for CPython 3.12
on x86-64 Linux, at the versions installed here (the versions the tests ran with), plus a wheel
of fersearch itself, and refuses a wheelhouse over 64 MiB (what travels with the tree). There:

    python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl
    PYTHONPATH=/tmp/site python3 bench/gpu_check.py --device cuda
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

# fersearch's requirements the GPU machine lacks, with theirs that it lacks too (the GPU
# machine's package list: /work/.library/device/KINDS.md in this workplace)
MISSING = [
    "optuna", "alembic", "Mako", "colorlog", "SQLAlchemy",
    "pydantic", "pydantic-core", "annotated-types", "typing-inspection",
    "albumentations", "albucore", "stringzilla", "simsimd",
    "open_clip_torch", "ftfy", "wcwidth",
    "timm",  # there too, but at another version: carry the one the tests ran with
]  # fmt: skip
PLATFORMS = ["manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64", "manylinux1_x86_64"]
LIMIT_MIB = 64


def pinned() -> list[str]:
    pins = []
    for name in MISSING:
        try:
            pins.append(f"{name}=={version(name)}")
        except PackageNotFoundError:
            sys.exit(f"{name} is not installed here; run `make .venv/.installed-stamp` first")
    return pins


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path(".whl"))
    args = ap.parse_args()
    if args.out.exists():
        shutil.rmtree(args.out)  # one version of each package: two would stop the install there
    args.out.mkdir(parents=True)
    pip = [sys.executable, "-m", "pip"]
    platforms = [a for p in PLATFORMS for a in ("--platform", p)]
    target = ["--python-version", "3.12", "--implementation", "cp", *platforms]
    subprocess.run([*pip, "download", "-q", "--no-deps", "--only-binary=:all:", *target, "-d", str(args.out),
                    *pinned()], check=True)  # fmt: skip
    root = Path(__file__).resolve().parents[1]
    subprocess.run([*pip, "wheel", "-q", "--no-deps", "-w", str(args.out), str(root)], check=True)
    wheels = sorted(args.out.glob("*.whl"))
    total = sum(w.stat().st_size for w in wheels) / 2**20
    for w in wheels:
        print(f"{w.stat().st_size / 2**20:6.1f} MiB  {w.name}")
    print(f"{len(wheels)} wheels, {total:.1f} MiB in {args.out}")
    if total > LIMIT_MIB:
        sys.exit(f"the wheelhouse is {total:.1f} MiB, over the {LIMIT_MIB} MiB that travels with the tree")


if __name__ == "__main__":
    main()
