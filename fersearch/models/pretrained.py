"""Where pretrained weights come from: ``pretrained: false | true | <tag> | <path>``.

* ``false``  random init.
* ``true``   the backbone's default pretrained tag (timm's default; ``openai`` for CLIP).
* ``<tag>``  a timm tag (``fb_in22k``) or an open_clip tag (``laion2b_s34b_b88k``).
* ``<path>`` a weights file (.safetensors, or .bin/.pth/.pt read with ``weights_only=True``), a
  directory holding one, or a Hugging Face cache directory (``models--org--name/...``) that
  holds the default tag's file.

Tags are looked up in the local Hugging Face cache (``HF_HUB_CACHE``) first, with no network
access at all. Downloading is opt-in: only with ``FERSEARCH_ALLOW_DOWNLOAD=1`` (and without
``HF_HUB_OFFLINE=1``) is a missing file fetched. Otherwise a missing file is one ``ModelError``
naming the repository, the file and the ways to provide it, raised before any model is built.
Workers on many hosts therefore never hammer the hub mid-trial, and an offline host fails fast.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import ModelError

DOWNLOAD_ENV = "FERSEARCH_ALLOW_DOWNLOAD"
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pth", ".pt")


@dataclass(frozen=True)
class WeightsRequest:
    kind: str  # "none" | "default" | "tag" | "file" | "cache_dir"
    value: str | None = None


def parse_pretrained(value: bool | str | None) -> WeightsRequest:
    if value is None or value is False or (isinstance(value, str) and value.lower() in ("", "false", "none")):
        return WeightsRequest("none")
    if value is True or (isinstance(value, str) and value.lower() == "true"):
        return WeightsRequest("default")
    text = str(value)
    if not _looks_like_path(text):
        return WeightsRequest("tag", text)
    path = Path(text).expanduser()
    if path.is_dir() and any(path.glob("models--*")):
        return WeightsRequest("cache_dir", str(path))
    return WeightsRequest("file", str(local_weights_file(path)))


def _looks_like_path(text: str) -> bool:
    return "/" in text or os.sep in text or text.startswith(("~", ".")) or text.endswith(WEIGHT_SUFFIXES)


def local_weights_file(path: Path) -> Path:
    """A weights file, or the single weights file inside a directory (safetensors preferred)."""
    if path.is_file():
        if not path.name.endswith(WEIGHT_SUFFIXES):
            raise ModelError(
                f"pretrained file {str(path)!r} is not a weights file; valid suffixes: "
                f"{', '.join(WEIGHT_SUFFIXES)}"
            )
        return path
    if path.is_dir():
        for suffix in WEIGHT_SUFFIXES:  # in order of preference
            found = sorted(path.glob(f"*{suffix}"))
            if len(found) == 1:
                return found[0]
            if len(found) > 1:
                raise ModelError(
                    f"pretrained directory {str(path)!r} holds several {suffix} files "
                    f"({', '.join(f.name for f in found)}); name the file instead"
                )
        raise ModelError(
            f"pretrained directory {str(path)!r} holds no weights file ({', '.join(WEIGHT_SUFFIXES)}) "
            f"and is not a Hugging Face cache (no models--* folders)"
        )
    raise ModelError(
        f"pretrained weights file {str(path)!r} not found; give an existing file or directory, "
        f"a pretrained tag, true, or false"
    )


def downloads_allowed() -> bool:
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes")
    return os.environ.get(DOWNLOAD_ENV) == "1" and not offline


def hub_file(repo_id: str, filenames: list[str], what: str, cache_dir: str | None = None) -> str:
    """The first of ``filenames`` found in the local HF cache; downloaded only if allowed."""
    from huggingface_hub import try_to_load_from_cache

    for name in filenames:
        hit = try_to_load_from_cache(repo_id, name, cache_dir=cache_dir)
        if isinstance(hit, str) and os.path.isfile(hit):
            return hit
    if downloads_allowed():
        from huggingface_hub import hf_hub_download

        errors = []
        for name in filenames:
            try:
                return hf_hub_download(repo_id, name, cache_dir=cache_dir)
            except Exception as exc:  # hub errors come in many types; report them all at once
                errors.append(f"{name}: {type(exc).__name__}")
        raise ModelError(f"pretrained weights {what}: download from {repo_id} failed ({'; '.join(errors)})")
    where = cache_dir or "the Hugging Face cache (HF_HUB_CACHE)"
    raise ModelError(
        f"pretrained weights {what} are not in {where}: expected {repo_id}/{' or '.join(filenames)}. "
        f"Nothing is downloaded unless {DOWNLOAD_ENV}=1 is set; either fetch them once with "
        f"`{DOWNLOAD_ENV}=1 huggingface-cli download {repo_id} {filenames[0]}`, give a local file "
        f"(pretrained: /path/to/{filenames[0]}), or use pretrained: false"
    )


def url_file(url: str, cache_dir: Path, what: str) -> str:
    """A weights file published at a plain URL, cached by name under ``cache_dir``."""
    target = cache_dir / os.path.basename(url)
    if target.is_file():
        return str(target)
    if downloads_allowed():
        import torch

        cache_dir.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(url, str(target), progress=False)
        return str(target)
    raise ModelError(
        f"pretrained weights {what} are not cached at {target}. Nothing is downloaded unless "
        f"{DOWNLOAD_ENV}=1 is set; fetch {url} there, give a local file, or use pretrained: false"
    )
