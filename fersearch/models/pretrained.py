"""Where pretrained weights come from: ``pretrained: false | true | <tag> | <path>``.

* ``false``  random init.
* ``true``   the backbone's default pretrained tag (timm's default; ``openai`` for CLIP).
* ``<tag>``  a timm tag (``fb_in22k``) or an open_clip tag (``laion2b_s34b_b88k``).
* ``<path>`` a weights file (.safetensors, or .bin/.pth/.pt read with ``weights_only=True``), a
  directory holding one, or a Hugging Face cache directory (``models--org--name/...``) that
  holds the default tag's file.

Fine-tuning from a finished fersearch model (fersearch/models/finetune.py loads it: the backbone,
the neck where shapes match, the head unless the classes differ):

* ``trial:STUDY/NUMBER``  a complete trial's ``best`` checkpoint, found through the study storage
  of the process that trains (fersearch/search/finetune.py); STUDY may itself contain '/'.
* ``ensemble:DIR#I``      member I (0-based, ``member_I.safetensors``) of an exported ensemble
  folder; ``ensemble:DIR`` when it has one member.
* ``<path>.json``         a trial's checkpoint file itself (``.../trial_3/best.json``).

Tags are looked up in the local Hugging Face cache (``HF_HUB_CACHE``) first, with no network
access at all. Downloading is opt-in: only with ``FERSEARCH_ALLOW_DOWNLOAD=1`` (and without
``HF_HUB_OFFLINE=1``) is a missing file fetched. Otherwise a missing file is one ``ModelError``
naming the repository, the file and the ways to provide it, raised before any model is built.
Workers on many hosts therefore never hammer the hub mid-trial, and an offline host fails fast.
"""

from __future__ import annotations

import os
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from ..errors import ModelError

DOWNLOAD_ENV = "FERSEARCH_ALLOW_DOWNLOAD"
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pth", ".pt")


TRIAL_PREFIX, ENSEMBLE_PREFIX = "trial:", "ensemble:"
CHECKPOINT_SUFFIX = ".json"
# The sources that are a whole finished FERModel rather than a backbone's published weights.
FINETUNE_KINDS = ("trial", "ensemble", "checkpoint")
MAX_STUDY_NAME = 512  # what Optuna stores in a database (commands/_common.py checks --study alike)
FINETUNE_SYNTAX = (
    "valid: trial:STUDY/NUMBER (a complete trial's best checkpoint), ensemble:DIR#I (member I of "
    "an exported ensemble), or a trial's checkpoint file /path/to/best.json"
)


@dataclass(frozen=True)
class WeightsRequest:
    kind: str  # "none" | "default" | "tag" | "file" | "cache_dir" | "trial" | "ensemble" | "checkpoint"
    value: str | None = None


def finetune_kind(value: bool | str | None) -> str | None:
    """ "trial", "ensemble" or "checkpoint" when ``pretrained`` names a finished fersearch model,
    else None. From the text alone: nothing is read, nothing raises."""
    if not isinstance(value, str):
        return None
    if value.startswith(TRIAL_PREFIX):
        return "trial"
    if value.startswith(ENSEMBLE_PREFIX):
        return "ensemble"
    if value.endswith(CHECKPOINT_SUFFIX) and _looks_like_path(value):
        return "checkpoint"
    return None


def backbone_pretrained(value: bool | str | None) -> bool | str | None:
    """What the backbone family itself is given: a fine-tune source is loaded into the whole
    model after it is built, so the backbone starts from random init (and its preprocessing is
    the backbone's default, as for pretrained: false)."""
    return False if finetune_kind(value) else value


def parse_pretrained(value: bool | str | None) -> WeightsRequest:
    if value is None or value is False or (isinstance(value, str) and value.lower() in ("", "false", "none")):
        return WeightsRequest("none")
    if value is True or (isinstance(value, str) and value.lower() == "true"):
        return WeightsRequest("default")
    text = str(value)
    kind = finetune_kind(text)
    if kind == "trial":
        study, number = parse_trial_ref(text)
        return WeightsRequest("trial", f"{study}/{number}")
    if kind == "ensemble":
        folder, index = parse_member_ref(text)
        return WeightsRequest("ensemble", folder if index is None else f"{folder}#{index}")
    if kind == "checkpoint":
        return WeightsRequest("checkpoint", str(Path(text).expanduser()))
    if not _looks_like_path(text):
        return WeightsRequest("tag", text)
    path = Path(text).expanduser()
    if path.is_dir() and any(path.glob("models--*")):
        return WeightsRequest("cache_dir", str(path))
    return WeightsRequest("file", str(local_weights_file(path)))


def parse_trial_ref(text: str) -> tuple[str, int]:
    """``trial:STUDY/NUMBER`` -> (STUDY, NUMBER). The study name is only ever looked up in the
    study storage, never used as a path; it is checked as ``--study`` is (no control characters,
    no padding, at most 512 characters). The number is the trial's number in that study."""
    body = text[len(TRIAL_PREFIX) :] if text.startswith(TRIAL_PREFIX) else text
    study, sep, number = body.rpartition("/")
    shown = f"pretrained {text!r}"
    if not sep or not study or not number:
        raise ModelError(f"{shown} is not trial:STUDY/NUMBER (such as trial:s1/3); {FINETUNE_SYNTAX}")
    if not (number.isascii() and number.isdigit()) or len(number) > 9:
        raise ModelError(
            f"{shown}: the trial number {number!r} is not a whole number of at most 9 digits; give the "
            f"number `fersearch status --study {study}` lists, as in trial:{study}/3"
        )
    bad = next((c for c in study if unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp")), None)
    if study != study.strip() or bad is not None or len(study) > MAX_STUDY_NAME:
        what = (
            f"contains the control character {bad!r}"
            if bad is not None
            else ("is too long" if len(study) > MAX_STUDY_NAME else "starts or ends with whitespace")
        )
        raise ModelError(f"{shown}: the study name {study!r} {what}; name an existing study: trial:s1/3")
    return study, int(number)


def parse_member_ref(text: str) -> tuple[str, int | None]:
    """``ensemble:DIR#I`` -> (DIR, I); ``ensemble:DIR`` -> (DIR, None): the only member."""
    body = text[len(ENSEMBLE_PREFIX) :] if text.startswith(ENSEMBLE_PREFIX) else text
    folder, sep, index = body.rpartition("#")
    if not sep:
        folder, index = body, None
    shown = f"pretrained {text!r}"
    if not folder or "\0" in folder:
        raise ModelError(f"{shown} names no ensemble folder; {FINETUNE_SYNTAX}")
    if index is not None and (not (index.isascii() and index.isdigit()) or len(index) > 6):
        raise ModelError(
            f"{shown}: the member index {index!r} is not a whole number; give ensemble:DIR#I with I "
            f"the member's position in manifest.json (0 for member_0.safetensors)"
        )
    return str(Path(folder).expanduser()), None if index is None else int(index)


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
