"""``fersearch weights pull``: fetch the missing weights files of (backbone, pretrained) pairs.

The only code in fersearch that downloads on purpose (building downloads only with
``FERSEARCH_ALLOW_DOWNLOAD=1``). For each missing source:

* a Hugging Face file goes through ``hf_hub_download`` into the HF cache layout the loaders read
  (``models--org--name/{blobs,refs,snapshots}``); it skips a file already cached and retries an
  interrupted transfer with a Range request (a new run starts the file over);
* a file published at a plain URL goes to the path the loaders read (``url_target``) through a
  ``.part`` file, renamed when complete; a later run resumes a ``.part`` left by an interrupted
  one with an HTTP Range request.

Each downloaded file is then verified by building its backbone with downloads switched off, so
the build reads the file just fetched. A file that does not load is deleted (the HF blob too),
so that ``weights list`` shows it missing again, ``create`` keeps refusing the space and the next
pull downloads it afresh. Present files are skipped unverified: a second pull downloads nothing.
IR-50's release is on cloud drives, not on any hub: it is reported with where to put it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path

from ..errors import ModelError
from .backbones import create_backbone
from .pretrained import DOWNLOAD_ENV, hub_offline, parse_pretrained
from .weights import WeightsSource, weights_source

# progress(label) -> a context manager yielding update(done_bytes, total_bytes); progress.bar fits
Progress = Callable[[str], AbstractContextManager[Callable[[int, int], None]]]
OK = ("downloaded", "present", "not needed", "unchecked")
CHUNK = 1 << 20


@dataclass(frozen=True)
class PullResult:
    source: WeightsSource  # as found after the pull (present, or why not)
    outcome: str  # one of OK, "failed" (download or verification) or "cannot pull" (never fetched)
    file: str | None = None  # the file downloaded or found
    reason: str | None = None  # why it failed or cannot be pulled

    @property
    def ok(self) -> bool:
        return self.outcome in OK


def pull_weights(
    pairs: list[tuple[str, bool | str]],
    cache_dir: str | Path | None = None,
    progress: Progress | None = None,
) -> list[PullResult]:
    """Download every missing weights file of ``pairs`` and verify it by building its backbone.

    ``cache_dir``: the Hugging Face cache to fill and read (default: ``HF_HUB_CACHE``); a pair
    whose ``pretrained`` names a cache directory itself uses that one. URL files go where the
    loaders look for them whatever ``cache_dir`` is (torch hub's checkpoints, ~/.cache/clip)."""
    with _hub_cache(cache_dir):
        return [_pull_one(backbone, pretrained, progress) for backbone, pretrained in pairs]


@contextmanager
def _hub_cache(cache_dir: str | Path | None) -> Iterator[None]:
    """Point huggingface_hub (read at import into its constants) at ``cache_dir`` for the pull,
    so that the presence check, the download and the verifying build all see one cache."""
    if cache_dir is None:
        yield
        return
    import huggingface_hub.constants as hf

    folder = str(Path(cache_dir).expanduser().resolve())
    saved_const, saved_env = hf.HF_HUB_CACHE, os.environ.get("HF_HUB_CACHE")
    hf.HF_HUB_CACHE, os.environ["HF_HUB_CACHE"] = folder, folder
    try:
        yield
    finally:
        hf.HF_HUB_CACHE = saved_const
        if saved_env is None:
            os.environ.pop("HF_HUB_CACHE", None)
        else:
            os.environ["HF_HUB_CACHE"] = saved_env


def _pull_one(backbone: str, pretrained: bool | str, progress: Progress | None) -> PullResult:
    source = weights_source(backbone, pretrained)
    if source.status != "missing":
        outcome = {"invalid": "cannot pull"}.get(source.status, source.status)
        return PullResult(source, outcome, source.path, source.problem)
    if not source.downloadable:  # IR-50's release, a local path that is not there
        return PullResult(source, "cannot pull", None, source.problem)
    if _offline():
        return PullResult(source, "failed", None, "HF_HUB_OFFLINE=1 is set; unset it to let pull download")
    try:
        if source.repo:
            request = parse_pretrained(pretrained)
            cache_dir = request.value if request.kind == "cache_dir" else None
            _hub_download(source, cache_dir, progress)
        else:
            _url_download(source.url, Path(source.path), progress)
    except ModelError as exc:
        return PullResult(source, "failed", None, str(exc))
    fetched = weights_source(backbone, pretrained)
    if fetched.status != "present":  # the loaders look elsewhere than the download went: a bug
        return PullResult(fetched, "failed", None, f"downloaded, but still not found: {fetched.problem}")
    problem = _verify(fetched)
    if problem:
        removed = _remove(fetched)
        return PullResult(fetched, "failed", fetched.path, f"{problem}; {removed}")
    return PullResult(fetched, "downloaded", fetched.path)


def _offline() -> bool:
    import huggingface_hub.constants as hf

    return hub_offline() or hf.HF_HUB_OFFLINE  # the variable now, or as the hub read it at import


def _hub_download(source: WeightsSource, cache_dir: str | None, progress: Progress | None) -> str:
    """The first of the source's candidate files the hub has, fetched into the HF cache."""
    from huggingface_hub import hf_hub_download

    errors = []
    for name in source.files:
        with _progress(progress, f"{source.repo}/{name}") as update:
            try:
                return hf_hub_download(source.repo, name, cache_dir=cache_dir, tqdm_class=_tqdm_for(update))
            except Exception as exc:  # hub errors come in many types; report every candidate's
                errors.append(f"{name}: {_brief(exc)}")
    endpoint = _hub_endpoint()
    raise ModelError(
        f"download from {endpoint}/{source.repo} failed ({'; '.join(errors)}); check the network "
        f"(HF_ENDPOINT={endpoint}) and run pull again, or fetch it by hand with `{source.fetch}`"
    )


def _hub_endpoint() -> str:
    import huggingface_hub.constants as hf

    return hf.ENDPOINT


def _tqdm_for(update: Callable[[int, int], None]) -> type:
    """A class huggingface_hub can use as its ``tqdm_class``: it builds one per file with
    ``total``/``initial`` keywords and calls ``update(n)``; this forwards to our bar instead."""

    class Forward:
        def __init__(self, total: int | None = None, initial: int = 0, **_ignored):
            self.total, self.done = total or 0, initial
            update(self.done, self.total)

        def update(self, n: int = 1) -> None:
            self.done += n
            update(self.done, max(self.total, self.done))

        def close(self) -> None:
            pass

        def __enter__(self):
            return self

        def __exit__(self, *exc) -> None:
            pass

    return Forward


@contextmanager
def _progress(progress: Progress | None, label: str) -> Iterator[Callable[[int, int], None]]:
    if progress is None:
        yield lambda done, total: None
    else:
        with progress(label) as update:
            yield update


def _url_download(url: str, target: Path, progress: Progress | None) -> None:
    """``url`` to ``target`` through ``target.part``, resuming a partial one with a Range
    request; renamed to ``target`` only once complete, so the loaders never see half a file."""
    import urllib.error
    import urllib.request

    part = target.with_name(target.name + ".part")
    target.parent.mkdir(parents=True, exist_ok=True)
    have = part.stat().st_size if part.is_file() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            if have and response.status != 206:  # the server ignored the Range: start over
                have = 0
            size = response.headers.get("Content-Length")
            total = have + int(size) if size is not None else None
            with (
                _progress(progress, os.path.basename(url)) as update,
                part.open("ab" if have else "wb") as out,
            ):
                done = have
                while chunk := response.read(CHUNK):
                    out.write(chunk)
                    done += len(chunk)
                    update(done, total or done)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # Range past the end: the .part is no prefix of the file
            part.unlink()
        raise ModelError(f"download of {url} failed: HTTP {exc.code} {exc.reason}; run pull again") from None
    except (OSError, ValueError) as exc:  # URLError, resets, timeouts
        raise ModelError(
            f"download of {url} stopped ({_brief(exc)}); {part} keeps what arrived and the "
            f"next pull resumes it"
        ) from None
    if total is not None and done != total:
        raise ModelError(
            f"download of {url} ended at {done} of {total} bytes; {part} keeps them and the "
            f"next pull resumes it"
        )
    part.replace(target)


def _verify(source: WeightsSource) -> str | None:
    """Why the file does not load into its backbone, or None: the backbone is built the way a
    trial builds it, with downloads off so that it reads the file just fetched."""
    saved = os.environ.pop(DOWNLOAD_ENV, None)
    try:
        create_backbone(source.backbone, pretrained=source.pretrained)
    except Exception as exc:  # ModelError mostly; anything else still means the file is unusable
        return f"{source.path} does not load into {source.backbone}: {_brief(exc, 400)}"
    finally:
        if saved is not None:
            os.environ[DOWNLOAD_ENV] = saved
    return None


def _remove(source: WeightsSource) -> str:
    """Delete a file that failed verification: the HF snapshot link and the blob it points to
    (left alone, hf_hub_download would relink that blob instead of downloading it again)."""
    path = Path(source.path)
    blob = path.resolve()
    for f in {path, blob}:
        f.unlink(missing_ok=True)
    return f"deleted it, so the next pull downloads it again (or put a good copy at {source.path})"


def _brief(exc: BaseException, limit: int = 200) -> str:
    first = (str(exc).splitlines() or [""])[0][:limit]
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


__all__ = ["OK", "PullResult", "pull_weights"]
