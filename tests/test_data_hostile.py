"""Hostile data input (issue #15): crafted image files, label files and cache builds that must never
crash, corrupt a dataset or leave files behind. Every input is a real file written here."""

from __future__ import annotations

import logging
import os
import shutil
import struct
import subprocess
import sys
import threading
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from fersearch.cli import main
from fersearch.data import cache as cache_module
from fersearch.data import read_dataset, with_validation
from fersearch.data.cache import load_split
from fersearch.data.imageio import MAX_PIXELS, Unreadable, open_image, open_rgb
from fersearch.data.inspect import inspect_dataset
from fersearch.data.synthetic import render_face
from fersearch.errors import DataError

REPO = Path(__file__).resolve().parents[1]
LATIN1 = "é".encode("latin-1")  # 0xe9: not UTF-8 on its own


def face(seed: int, size: int = 40) -> np.ndarray:
    return render_face(seed % 7, size, np.random.default_rng(seed))[0]


def save(path: Path, img: np.ndarray, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(path, **kw)
    return path


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def grey_png(width: int, height: int, rows: bool = True) -> bytes:
    """An 8-bit greyscale PNG of zeros. rows=False: no pixel data at all, only the declared size
    (what a decompression bomb needs: 65 bytes for any size)."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    if rows:
        z = zlib.compressobj(9)
        line = b"\0" * (width + 1)  # filter byte + pixels
        data = b"".join(z.compress(line) for _ in range(height)) + z.flush()
    else:
        data = zlib.compress(b"")
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", data) + _chunk(b"IEND", b"")


def imagefolder(root: Path, extra: dict[str, bytes] | None = None) -> Path:
    """train/{a,b}/ with four faces each, val/{a,b}/ with one; ``extra``: more train files."""
    for split, n in (("train", 4), ("val", 1)):
        for c, cls in enumerate("ab"):
            for i in range(n):
                save(root / split / cls / f"{i}.png", face(10 * c + i + (50 if split == "val" else 0)))
    for rel, data in (extra or {}).items():
        (root / "train" / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / "train" / rel).write_bytes(data)
    return root


# --------------------------------------------------------------------------------------------
# Images: bounded, every mode decoded, one bad file never costs the others


def test_png_declaring_40000x40000_is_skipped_by_cache_inspect_and_prepare(tmp_path, capsys, monkeypatch):
    bomb = grey_png(40000, 40000, rows=False)
    assert len(bomb) < 80  # the "74-byte PNG"
    root = imagefolder(tmp_path / "data", {"b/bomb.png": bomb})
    m = read_dataset(root)
    arrays = load_split(m, "train", 32, directory=tmp_path / "cache")
    assert len(arrays.labels) == 8 and arrays.images.shape == (8, 32, 32, 3)
    why = arrays.skip_reasons["train/b/bomb.png"]
    assert why.startswith("too large (1600 megapixels") and "limit is 50 megapixels" in why
    kept = dict(zip(arrays.paths, arrays.labels.tolist()))
    assert kept["train/a/0.png"] == 0 and kept["train/b/3.png"] == 1

    rep = inspect_dataset(root)
    assert list(rep.bad) == ["train/b/bomb.png"] and rep.bad["train/b/bomb.png"].startswith("too large")
    assert rep.sizes[(40, 40)] == 10

    monkeypatch.delenv(cache_module.ENV_DIR, raising=False)
    assert main(["data", "inspect", str(root)]) == 0
    out = " ".join(capsys.readouterr().err.split())  # rich wraps long lines
    assert "1 of 11 files are missing or unreadable" in out and "too large (1600 megapixels;" in out
    assert main(["data", "prepare", str(root), "--size", "24"]) == 0
    assert "1 skipped" in capsys.readouterr().err


def test_image_over_the_pixel_limit_is_refused_before_decoding(tmp_path):
    # 64 megapixels: under PIL's own limit (89), 192 MB once decoded as RGB, 62 KB on disk
    path = tmp_path / "zeros.png"
    path.write_bytes(grey_png(8000, 8000))
    assert path.stat().st_size < 100_000 and 8000 * 8000 < Image.MAX_IMAGE_PIXELS
    with pytest.raises(Unreadable, match=r"too large \(8000x8000 = 64 megapixels; the limit is 50"):
        open_image(path)
    with pytest.raises(Unreadable, match="too large"):
        open_rgb(tmp_path, "zeros.png", min_side=32)
    # at the limit it still decodes
    (tmp_path / "ok.png").write_bytes(grey_png(5000, 5000))
    assert 5000 * 5000 <= MAX_PIXELS and open_image(tmp_path / "ok.png").size == (5000, 5000)


def test_jpeg_over_the_limit_is_decoded_at_a_reduced_scale(tmp_path):
    pixels = np.zeros((6000, 9000), np.uint8)  # 54 megapixels
    pixels[1000:2000, 1000:3000] = 255
    path = save(tmp_path / "big.jpg", pixels, quality=60)
    im = open_image(path)
    assert im.size == (4500, 3000) and im.mode == "RGB"  # libjpeg's 1/2 scale, under the limit
    small = np.asarray(im)
    assert small[750, 600:1400].mean() > 240 and small[100, 100].max() < 15  # the square, at half scale


def _gradient(h: int = 40, w: int = 64) -> np.ndarray:
    return np.tile(np.linspace(0.0, 1.0, w), (h, 1))  # 0..1 across, every row the same


def _write_pgm16(path: Path, values: np.ndarray) -> None:
    h, w = values.shape
    path.write_bytes(f"P5 {w} {h} 65535\n".encode() + values.astype(">u2").tobytes())


WIDE = {  # name -> (writer, the 8-bit image expected)
    "png16": (lambda p, g: cv2.imwrite(str(p), np.round(g * 65535).astype(np.uint16)), lambda g: g * 255),
    "tif16": (lambda p, g: cv2.imwrite(str(p), np.round(g * 65535).astype(np.uint16)), lambda g: g * 255),
    "pgm16": (lambda p, g: _write_pgm16(p, np.round(g * 65535)), lambda g: g * 255),
    "float01": (lambda p, g: cv2.imwrite(str(p), g.astype(np.float32)), lambda g: g * 255),
    # outside 0..1: scaled by the image's own range (-3..5 -> 0..255)
    "float_wide": (lambda p, g: cv2.imwrite(str(p), (g * 8 - 3).astype(np.float32)), lambda g: g * 255),
    # 32-bit integers beyond 16 bits: the image's own range
    "int32": (lambda p, g: Image.fromarray((g * 4_000_000).astype(np.int32)).save(p), lambda g: g * 255),
}
SUFFIX = {"png16": ".png", "pgm16": ".pgm", "int32": ".tif"}


@pytest.mark.parametrize("kind", sorted(WIDE))
def test_16bit_integer_and_float_images_are_scaled_not_clipped(tmp_path, kind):
    write, expected = WIDE[kind]
    path = tmp_path / f"img{SUFFIX.get(kind, '.tif')}"
    g = _gradient()
    write(path, g)
    with Image.open(path) as im:
        assert im.mode in {"I;16", "I", "F"}  # a mode PIL's convert("RGB") clips
    rgb = open_rgb(tmp_path, path.name)
    assert rgb.shape == (40, 64, 3) and rgb.dtype == np.uint8
    assert np.abs(rgb[:, :, 0].astype(float) - expected(g)).max() <= 1.0
    assert rgb[0, 0, 0] == 0 and rgb[0, -1, 0] == 255


def test_float_image_with_nan_keeps_its_other_pixels(tmp_path):
    g = _gradient().astype(np.float32)
    g[0, :8] = np.nan
    cv2.imwrite(str(tmp_path / "nan.tif"), g)
    rgb = open_rgb(tmp_path, "nan.tif")
    assert (rgb[0, :8] == 0).all() and rgb[5, -1, 0] == 255 and 120 < rgb[5, 32, 0] < 135


def test_cache_trains_on_16bit_and_float_images_not_blank_ones(tmp_path):
    g = _gradient(40, 40)
    root = imagefolder(tmp_path / "data")
    cv2.imwrite(str(root / "train/a/wide16.png"), np.round(g * 65535).astype(np.uint16))
    cv2.imwrite(str(root / "train/b/float.tif"), g.astype(np.float32))
    arrays = load_split(read_dataset(root), "train", 40, directory=tmp_path / "cache")
    assert not arrays.skipped
    by_ref = dict(zip(arrays.paths, arrays.images))
    for ref in ("train/a/wide16.png", "train/b/float.tif"):
        img = by_ref[ref].astype(float)
        assert np.abs(img[:, :, 1] - g * 255).max() <= 1.0, ref  # was all 255 / all 0
    assert inspect_dataset(root).bad == {}


def test_fifo_named_like_an_image_is_skipped_not_waited_on(tmp_path):
    (tmp_path / "EmoLabel").mkdir()
    (tmp_path / "EmoLabel/list_patition_label.txt").write_text("train_0001.jpg 1\ntrain_0002.jpg 2\n")
    save(tmp_path / "Image/aligned/train_0001_aligned.jpg", face(1))
    fifo = tmp_path / "Image/aligned/train_0002_aligned.jpg"
    os.mkfifo(fifo)
    result: list = []

    def build():
        try:
            result.append(load_split(read_dataset(tmp_path), "train", 32, directory=tmp_path / "cache"))
        except Exception as exc:  # reported below
            result.append(exc)

    worker = threading.Thread(target=build, daemon=True)
    worker.start()
    worker.join(timeout=30)
    if worker.is_alive():  # the reader blocks on the pipe: release it, then fail
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        worker.join(timeout=5)
        pytest.fail("reading a FIFO listed as an image blocked the cache build")
    arrays = result[0]
    assert arrays.paths == ["Image/aligned/train_0001_aligned.jpg"]
    assert arrays.skip_reasons == {"Image/aligned/train_0002_aligned.jpg": "not a regular file"}


def test_open_image_bounds_the_longer_side_for_callers_holding_many(tmp_path):
    path = save(tmp_path / "wide.png", np.full((1000, 3000, 3), 90, np.uint8))
    im = open_image(path, max_side=512)
    assert max(im.size) <= 512 and im.size[0] / im.size[1] == pytest.approx(3, rel=0.02)
    assert np.asarray(im).mean() == pytest.approx(90)
    assert open_image(path).size == (3000, 1000)


def test_truncated_and_garbage_files_still_cost_only_themselves(tmp_path):
    root = imagefolder(tmp_path / "data")
    data = (root / "train/a/0.png").read_bytes()
    (root / "train/a/cut.png").write_bytes(data[: len(data) // 2])
    (root / "train/b/text.png").write_text("not an image")
    (root / "train/b/bomb.png").write_bytes(grey_png(40000, 40000, rows=False))
    arrays = load_split(read_dataset(root), "train", 24, directory=tmp_path / "cache")
    assert sorted(arrays.skipped) == ["train/a/cut.png", "train/b/bomb.png", "train/b/text.png"]
    assert len(arrays.paths) == 8 and arrays.labels.tolist() == [0] * 4 + [1] * 4


def test_only_the_image_formats_datasets_use_are_opened(tmp_path):
    # An EPS file named .jpg: PIL would hand it to Ghostscript to decode; a PCX to a rare parser.
    save(tmp_path / "x.eps", face(1), format="EPS")
    (tmp_path / "eps_aligned.jpg").write_bytes((tmp_path / "x.eps").read_bytes())
    save(tmp_path / "pcx_aligned.png", face(2), format="PCX")
    for name in ("eps_aligned.jpg", "pcx_aligned.png"):
        with pytest.raises(Unreadable, match="^not an image$"):
            open_rgb(tmp_path, name)
    save(tmp_path / "ok.webp", face(3))
    assert open_rgb(tmp_path, "ok.webp").shape == (40, 40, 3)


def test_file_name_that_is_not_utf8_is_cached_like_any_other(tmp_path):
    root = imagefolder(tmp_path / "data")
    os.rename(os.fsencode(root / "train/a/0.png"), os.fsencode(root / "train/a") + b"/\xff.png")
    m = read_dataset(root)
    arrays = load_split(m, "train", 24, directory=tmp_path / "cache")  # was UnicodeEncodeError
    assert "train/a/\udcff.png" in arrays.paths and not arrays.skipped
    again = load_split(m, "train", 24, directory=tmp_path / "cache")  # opened from the cache
    assert again.paths == arrays.paths and np.array_equal(again.images, arrays.images)


# --------------------------------------------------------------------------------------------
# Label files: UTF-8 or a clear error; a repeated image is an error or dropped with a warning


def write_rafdb(root: Path, lines: list[str], images: int | None = None) -> Path:
    (root / "EmoLabel").mkdir(parents=True)
    (root / "EmoLabel/list_patition_label.txt").write_text("".join(f"{line}\n" for line in lines))
    names = dict.fromkeys(line.split()[0] for line in lines)
    for i, name in enumerate(list(names)[:images]):
        save(root / "Image/aligned" / f"{name[:-4]}_aligned.jpg", face(i, 24), quality=90)
    return root


def test_rafdb_label_file_not_utf8_names_line_and_byte(tmp_path, capsys):
    write_rafdb(tmp_path, ["train_0001.jpg 1", "train_0002.jpg 2", "test_0001.jpg 3"])
    label = tmp_path / "EmoLabel/list_patition_label.txt"
    label.write_bytes(b"train_0001.jpg 1\ntrain_0002.jpg 2\ntest_" + LATIN1 + b"01.jpg 3\n")
    with pytest.raises(DataError) as err:
        read_dataset(tmp_path)
    assert str(err.value).startswith(f"{label}:3: byte 39 (0xe9) is not UTF-8")
    assert "re-save it as UTF-8" in str(err.value)
    assert main(["data", "inspect", str(tmp_path)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "list_patition_label.txt:3: byte 39 (0xe9) is not UTF-8" in lines[0]
    # a UTF-8 byte-order mark is fine, and the offset still counts it
    label.write_bytes(b"\xef\xbb\xbftrain_0001.jpg 1\n" + b"\xff\xfe")
    with pytest.raises(DataError, match=r"list_patition_label\.txt:2: byte 20 \(0xff\)"):
        read_dataset(tmp_path, "rafdb")


def test_rafdb_bounding_box_file_not_utf8(tmp_path):
    write_rafdb(tmp_path, ["train_0001.jpg 1", "train_0002.jpg 2"])
    (tmp_path / "Image/original").mkdir()
    box = tmp_path / "Annotation/boundingbox/train_0002_boundingbox.txt"
    box.parent.mkdir(parents=True)
    box.write_bytes(b"1 2 30 " + LATIN1)
    with pytest.raises(DataError, match=r"train_0002_boundingbox\.txt:1: byte 7 \(0xe9\) is not UTF-8"):
        read_dataset(tmp_path, "rafdb_original")


def test_rafdb_image_listed_twice_with_two_labels_names_both_lines(tmp_path):
    lines = [f"train_{i:04d}.jpg {1 + i % 7}" for i in range(10)] + ["train_0003.jpg 6"]
    write_rafdb(tmp_path, lines)
    label = tmp_path / "EmoLabel/list_patition_label.txt"
    with pytest.raises(DataError) as err:
        read_dataset(tmp_path)
    text = str(err.value)
    assert f"{label}:4 and {label}:11 both list 'Image/aligned/train_0003_aligned.jpg'" in text
    assert "different labels (4 and 6)" in text and "delete or correct one" in text


def test_rafdb_repeated_identical_lines_are_dropped_with_one_warning(tmp_path, caplog):
    # the case: 300 files, 21 of them listed twice -> 321 samples, repeats in validation
    lines = [f"train_{i:04d}.jpg {1 + i % 7}" for i in range(300)]
    write_rafdb(tmp_path, lines + lines[:21])
    with caplog.at_level(logging.WARNING, logger="fersearch.data.formats"):
        m = read_dataset(tmp_path)
    assert sum(m.counts("train")) == 300
    refs = [ref for ref, _ in m.splits["train"]]
    assert len(set(refs)) == 300
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    msg = warnings[0].getMessage()
    assert msg.startswith("dropped 21 repeated line(s)") and "list_patition_label.txt:301 repeats" in msg
    split = with_validation(m, 0.2, seed=0)
    val = [ref for ref, _ in split.splits["val"]]
    assert len(val) == len(set(val)) and not set(val) & {ref for ref, _ in split.splits["train"]}


def write_rafce(root: Path, emo: str, part: str, au: str | None = None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "RAFCE_emolabel.txt").write_text(emo)
    (root / "RAFCE_partition.txt").write_text(part)
    if au is not None:
        (root / "RAFCE_AUlabel.txt").write_text(au)
    for i in range(4):
        save(root / "aligned" / f"{i}.jpg", face(i, 24))
    return root


RAFCE_EMO = "0.jpg 0\n1.jpg 1\n2.jpg 2\n3.jpg 3\n"
RAFCE_PART = "0.jpg 0\n1.jpg 0\n2.jpg 1\n3.jpg 2\n"
RAFCE_AU = "0.jpg 1+2\n1.jpg null\n2.jpg 4\n3.jpg 12\n"


@pytest.mark.parametrize("file", ["RAFCE_emolabel.txt", "RAFCE_partition.txt", "RAFCE_AUlabel.txt"])
def test_rafce_files_not_utf8(tmp_path, file):
    root = write_rafce(tmp_path / "ce", RAFCE_EMO, RAFCE_PART, RAFCE_AU)
    text = (root / file).read_bytes()
    at = text.index(b"\n") + 1
    (root / file).write_bytes(text[:at] + b"\xc3" + text[at:])  # a lone UTF-8 lead byte on line 2
    with pytest.raises(DataError, match=rf"{file}:2: byte {at} \(0xc3\) is not UTF-8"):
        read_dataset(root)


@pytest.mark.parametrize(
    ("emo", "part", "au", "message"),
    [
        (
            RAFCE_EMO + "2.jpg 5\n",
            RAFCE_PART,
            RAFCE_AU,
            r"emolabel\.txt:3 and .*emolabel\.txt:5 .*labels \(2 and 5\)",
        ),
        (
            RAFCE_EMO,
            RAFCE_PART + "3.jpg 0\n",
            RAFCE_AU,
            r"partition\.txt:4 and .*partition\.txt:5 .*\(2 and 0\)",
        ),
        (
            RAFCE_EMO,
            RAFCE_PART,
            RAFCE_AU + "0.jpg 1+4\n",
            r"AUlabel\.txt:1 and .*:5 .*labels \(\(1, 2\) and \(1, 4\)\)",
        ),
    ],
)
def test_rafce_image_listed_twice_with_different_values(tmp_path, emo, part, au, message):
    root = write_rafce(tmp_path / "ce", emo, part, au)
    with pytest.raises(DataError, match=message):
        read_dataset(root)


def test_rafce_identical_repeats_are_dropped(tmp_path, caplog):
    root = write_rafce(
        tmp_path / "ce", RAFCE_EMO + "1.jpg 1\n", RAFCE_PART + "1.jpg 0\n", RAFCE_AU + "0.jpg 2+1\n"
    )
    with caplog.at_level(logging.WARNING, logger="fersearch.data.formats"):
        m = read_dataset(root)
    assert sum(len(v) for v in m.splits.values()) == 4 and len(m.splits["train"]) == 2
    assert len([r for r in caplog.records if "repeated line" in r.getMessage()]) == 3  # one per file


AFFECTNET_HEADER = (
    "subDirectory_filePath,face_x,face_y,face_width,face_height,facial_landmarks,expression,valence,arousal\n"
)


def write_affectnet(root: Path, train: list[str], val: list[str]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "training.csv").write_text(AFFECTNET_HEADER + "".join(f"{r}\n" for r in train))
    (root / "validation.csv").write_text(AFFECTNET_HEADER + "".join(f"{r}\n" for r in val))
    return root


def row(name: str, code: int, box: str = "0,0,24,24") -> str:
    return f"1/{name}.jpg,{box},,{code},0.1,0.2"


def test_affectnet_csv_not_utf8(tmp_path):
    root = write_affectnet(tmp_path / "an", [row("a", 1), row("b", 2)], [row("c", 3)])
    csv_file = root / "training.csv"
    csv_file.write_bytes(csv_file.read_bytes().replace(b"1/b.jpg", b"1/b" + LATIN1 + b".jpg"))
    offset = len(AFFECTNET_HEADER) + len(row("a", 1)) + 1 + 3
    with pytest.raises(DataError, match=rf"training\.csv:3: byte {offset} \(0xe9\) is not UTF-8"):
        read_dataset(root)


def test_affectnet_duplicates(tmp_path, caplog):
    root = write_affectnet(tmp_path / "an", [row("a", 1), row("b", 2), row("a", 3)], [row("c", 3)])
    with pytest.raises(DataError, match=r"training\.csv:2 and .*training\.csv:4 both list '1/a\.jpg'"):
        read_dataset(root)
    # the same image in training.csv and validation.csv would be trained and tested on
    root = write_affectnet(tmp_path / "an2", [row("a", 1), row("b", 2)], [row("a", 1)])
    with pytest.raises(DataError, match=r"training\.csv:2 and .*validation\.csv:2 both list '1/a\.jpg'"):
        read_dataset(root)
    # same label, another face box: which box is right is for the user to say
    root = write_affectnet(tmp_path / "an3", [row("a", 1), row("a", 1, "1,1,20,20")], [row("c", 3)])
    with pytest.raises(DataError, match=r"training\.csv:2 and .*training\.csv:3"):
        read_dataset(root)
    root = write_affectnet(
        tmp_path / "an4", [row("a", 1), row("b", 2), row("a", 1), row("n", 9)], [row("c", 3)]
    )
    with caplog.at_level(logging.WARNING, logger="fersearch.data.formats"):
        m = read_dataset(root)
    assert m.splits["train"] == [("1/a.jpg", 1), ("1/b.jpg", 2)] and m.notes == [
        "dropped 1 images labelled Uncertain"
    ]
    assert any("training.csv:4 repeats" in r.getMessage() for r in caplog.records)


def test_affectnet_short_row_names_its_line(tmp_path):
    root = write_affectnet(tmp_path / "an", [row("a", 1), "1/b.jpg,0,0"], [row("c", 3)])
    with pytest.raises(DataError, match=r"training\.csv:3: expected 9 columns as in the header, got 3"):
        read_dataset(root)


def test_fer2013_and_ferplus_csv_not_utf8(tmp_path):
    pixels = " ".join(["0"] * 16)
    root = tmp_path / "fer"
    root.mkdir()
    body = "emotion,pixels,Usage\n" + f"1,{pixels},Training\n" * 3
    raw = body.encode()
    cut = raw.index(b"Training", len("emotion,pixels,Usage\n") + 40)  # row 3 (line 3)
    (root / "fer2013.csv").write_bytes(raw[:cut] + b"Tr" + LATIN1 + raw[cut + 3 :])
    with pytest.raises(DataError, match=rf"fer2013\.csv:3: byte {cut + 2} \(0xe9\) is not UTF-8"):
        read_dataset(root)
    (root / "fer2013.csv").write_text(body)
    votes = "Usage,Image name,neutral,happiness,surprise,sadness,anger,disgust,fear,contempt,unknown,NF\n"
    (root / "fer2013new.csv").write_bytes(
        (votes + "Training,fer1.png,10,0,0,0,0,0,0,0,0,0\n").encode()
        + b"Training,f"
        + LATIN1
        + b"r2.png,10\n"
    )
    with pytest.raises(DataError, match=r"fer2013new\.csv:3: byte \d+ \(0xe9\) is not UTF-8"):
        read_dataset(root)


def test_fer2013_short_row_names_its_line(tmp_path):
    (tmp_path / "fer2013.csv").write_text("emotion,pixels,Usage\n1,0 0 0 0,Training\n2\n")
    with pytest.raises(DataError, match=r"fer2013\.csv:3: expected 3 columns as in the header, got 1"):
        read_dataset(tmp_path)


def write_raer(root: Path, train: str, test: str = "") -> Path:
    (root / "annotation").mkdir(parents=True)
    (root / "bounding_box").mkdir()
    (root / "annotation/train.txt").write_text(train)
    if test:
        (root / "annotation/test.txt").write_text(test)
    (root / "bounding_box/face.json").write_text("{}")
    for clip in ("c1", "c2"):
        save(root / "clips" / clip / "0.jpg", face(len(clip), 24))
    return root


def test_raer_annotation_and_json_not_utf8(tmp_path):
    root = write_raer(tmp_path / "r", "clips/c1 1 1\nclips/c2 1 2\n")
    (root / "annotation/train.txt").write_bytes(b"clips/c1 1 1\nclips/c" + LATIN1 + b" 1 2\n")
    with pytest.raises(DataError, match=r"train\.txt:2: byte 20 \(0xe9\) is not UTF-8"):
        read_dataset(root)
    (root / "annotation/train.txt").write_text("clips/c1 1 1\n")
    (root / "bounding_box/face.json").write_bytes(b'{"clips/c1": "' + LATIN1 + b'"}')
    with pytest.raises(DataError, match=r"face\.json:1: byte 14 \(0xe9\) is not UTF-8"):
        read_dataset(root)


def test_raer_clip_listed_twice(tmp_path, caplog):
    root = write_raer(tmp_path / "r", "clips/c1 1 1\nclips/c2 1 2\n", test="clips/c1 1 1\n")
    with pytest.raises(DataError, match=r"train\.txt:1 and .*test\.txt:1 both list 'clips/c1'"):
        read_dataset(root)
    root = write_raer(tmp_path / "r2", "clips/c1 1 1\nclips/c2 1 2\nclips/c1 1 1\n")
    with caplog.at_level(logging.WARNING, logger="fersearch.data.formats"):
        m = read_dataset(root)
    assert m.splits["train"] == [("clips/c1", 0), ("clips/c2", 1)]
    assert any("train.txt:3 repeats" in r.getMessage() for r in caplog.records)


# --------------------------------------------------------------------------------------------
# The cache build: never past the free space, never a temporary file left behind


def test_cache_refuses_a_build_the_disk_cannot_hold(tmp_path, monkeypatch):
    root = imagefolder(tmp_path / "data")
    m = read_dataset(root)
    real = shutil.disk_usage
    # the one stand-in: a full disk cannot be produced safely here, so the disk reports 1 MB free
    monkeypatch.setattr(shutil, "disk_usage", lambda p: real(p)._replace(free=1_000_000))
    cache = tmp_path / "cache"
    with pytest.raises(DataError) as err:
        load_split(m, "train", 256, directory=cache)
    text = str(err.value)
    needed = 8 * 256 * 256 * 3
    assert f"needs 1.6 MB ({needed} bytes) in {str(cache)!r}, which has 1.0 MB (1000000 bytes) free" in text
    assert "FERSEARCH_CACHE_DIR" in text and "\n" not in text
    assert [p.name for p in cache.iterdir() if not p.name.endswith(".lock")] == []


def test_huge_image_size_is_refused_before_mapping(tmp_path):
    root = imagefolder(tmp_path / "data")
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match=r"the train cache \(8 samples at 200000px\) needs 960\.0 GB"):
        load_split(read_dataset(root), "train", 200000, directory=cache)
    assert [p.name for p in cache.iterdir() if not p.name.endswith(".lock")] == []


FSIZE_LIMITED = """
import resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead
resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))
from fersearch.cli import main
sys.exit(main(["data", "prepare", sys.argv[1], "--size", "32"]))
"""


def test_a_write_that_fails_mid_build_is_one_line_and_leaves_nothing(tmp_path):
    # A real failing write: the process may not grow a file past 20 KB; train's cache needs 24 KB
    # (as a full disk would refuse it, with the free-space check passing just before).
    root = imagefolder(tmp_path / "data")
    cache = tmp_path / "cache"
    env = {**os.environ, "PYTHONPATH": str(REPO), cache_module.ENV_DIR: str(cache)}
    proc = subprocess.run(
        [sys.executable, "-c", FSIZE_LIMITED, str(root)], capture_output=True, text=True, env=env, timeout=300
    )
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr
    assert lines[-1].startswith("fersearch: error: cannot write the train cache in ")
    assert "File too large" in lines[-1] and "FERSEARCH_CACHE_DIR" in lines[-1]
    left = [p.name for p in cache.rglob("*") if p.is_file() and not p.name.endswith(".lock")]
    assert left == []


def test_an_exception_mid_build_leaves_no_temporary_files(tmp_path):
    root = imagefolder(tmp_path / "data")
    m = read_dataset(root)
    cache = tmp_path / "cache"

    def interrupt(done, total):
        if done > 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        load_split(m, "train", 32, directory=cache, progress=interrupt)
    assert [p.name for p in cache.iterdir() if not p.name.endswith(".lock")] == []
    arrays = load_split(m, "train", 32, directory=cache)  # and the next build is whole
    assert len(arrays.paths) == 8


@pytest.mark.parametrize(
    "orientation, upright_corner", [(1, (0, 0)), (3, (19, 39)), (6, (0, 19)), (8, (39, 0))]
)
def test_exif_orientation_is_applied_as_a_phone_shows_the_photo(tmp_path, orientation, upright_corner):
    from fersearch.data.imageio import image_size

    pixels = np.zeros((20, 40, 3), np.uint8)  # 40 wide, 20 high; the stored top-left is white
    pixels[:4, :4] = 255
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / "photo.jpg"
    Image.fromarray(pixels).save(path, quality=95, exif=exif)
    rgb = np.asarray(open_image(path))
    sideways = orientation in (6, 8)
    assert rgb.shape[:2] == ((40, 20) if sideways else (20, 40))
    assert image_size(path) == ((20, 40) if sideways else (40, 20))
    y, x = upright_corner
    assert rgb[y, x].min() > 200 and rgb[rgb.shape[0] // 2, rgb.shape[1] // 2].max() < 50
