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


@dataclass(frozen=True)
class Remote:
    """A published weights file as a family names it: candidate ``files`` in a hub ``repo``
    (looked up in ``cache_dir``, else HF_HUB_CACHE), or a ``url`` cached by name in ``folder``.
    ``what`` names it in messages. Building fetches it (``fetch``); ``fersearch weights`` lists
    and pulls the same thing."""

    what: str
    tag: str | None
    repo: str | None = None
    files: tuple[str, ...] = ()
    cache_dir: str | None = None
    url: str | None = None
    folder: Path | None = None

    def fetch(self) -> str:
        if self.repo:
            return hub_file(self.repo, list(self.files), what=self.what, cache_dir=self.cache_dir)
        return url_file(self.url, self.folder, what=self.what)


def hub_offline() -> bool:
    """HF_HUB_OFFLINE, read when asked (huggingface_hub reads it once, at import)."""
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes")


def downloads_allowed() -> bool:
    return os.environ.get(DOWNLOAD_ENV) == "1" and not hub_offline()


def cached_hub_file(repo_id: str, filenames: list[str], cache_dir: str | None = None) -> str | None:
    """The first of ``filenames`` in the local HF cache, or None. Never touches the network:
    both loading and ``fersearch weights list`` / ``create``'s check ask this."""
    from huggingface_hub import try_to_load_from_cache

    for name in filenames:
        hit = try_to_load_from_cache(repo_id, name, cache_dir=cache_dir)
        if isinstance(hit, str) and os.path.isfile(hit):
            return hit
    return None


def hub_fetch_command(repo_id: str, filename: str, cache_dir: str | None = None) -> str:
    """The shell command that puts one hub file where ``cached_hub_file`` looks."""
    return f"hf download {repo_id} {filename}" + (f" --cache-dir {cache_dir}" if cache_dir else "")


def missing_hub_message(repo_id: str, filenames: list[str], what: str, cache_dir: str | None = None) -> str:
    where = cache_dir or "the Hugging Face cache (HF_HUB_CACHE)"
    return (
        f"pretrained weights {what} are not in {where}: expected {repo_id}/{' or '.join(filenames)}. "
        f"Nothing is downloaded unless {DOWNLOAD_ENV}=1 is set; either fetch them once with "
        f"`{hub_fetch_command(repo_id, filenames[0], cache_dir)}` (or run once with {DOWNLOAD_ENV}=1), "
        f"give a local file (pretrained: /path/to/{filenames[0]}), or use pretrained: false"
    )


def hub_file(repo_id: str, filenames: list[str], what: str, cache_dir: str | None = None) -> str:
    """The first of ``filenames`` found in the local HF cache; downloaded only if allowed."""
    hit = cached_hub_file(repo_id, filenames, cache_dir)
    if hit is not None:
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
    raise ModelError(missing_hub_message(repo_id, filenames, what, cache_dir))


def url_target(url: str, cache_dir: Path) -> Path:
    """Where ``url_file`` keeps (and looks for) the file published at ``url``."""
    return cache_dir / os.path.basename(url)


def missing_url_message(url: str, target: Path, what: str) -> str:
    return (
        f"pretrained weights {what} are not cached at {target}. Nothing is downloaded unless "
        f"{DOWNLOAD_ENV}=1 is set; fetch {url} there, give a local file, or use pretrained: false"
    )


def url_file(url: str, cache_dir: Path, what: str) -> str:
    """A weights file published at a plain URL, cached by name under ``cache_dir``."""
    target = url_target(url, cache_dir)
    if target.is_file():
        return str(target)
    if downloads_allowed():
        import torch

        cache_dir.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(url, str(target), progress=False)
        return str(target)
    raise ModelError(missing_url_message(url, target, what))


def read_state_dict(path: str) -> dict:
    """A local weights file as {name: tensor}: safetensors, or a ``torch.save``'d state dict read
    with ``weights_only=True`` (tensors and plain containers only; nothing else is unpickled)."""
    import pickle

    import torch

    try:
        if str(path).endswith(".safetensors"):
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:  # weights_only refused an object that is not a tensor
        raise ModelError(
            f"pretrained weights file {str(path)!r} holds pickled objects besides tensors (a whole "
            f"model or training checkpoint?); fersearch reads only state dicts, with "
            f"weights_only=True: re-save it with torch.save(model.state_dict(), path)"
        ) from None
    except Exception as exc:  # truncated or foreign files fail in many types
        first = (str(exc).splitlines() or [""])[0][:200]
        raise ModelError(
            f"cannot read pretrained weights file {str(path)!r} ({type(exc).__name__}: {first}); "
            f"give a .safetensors file or a state dict saved with torch.save"
        ) from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelError(
            f"pretrained weights file {str(path)!r} holds a {type(state).__name__}, not a flat "
            f"state dict of tensors; save one with torch.save(model.state_dict(), path)"
        )
    return state
