"""Which weights file a (backbone, pretrained) pair reads, and whether it is on this host.

Found from the families' own configs (timm's pretrained cfg, open_clip's pretrained registry,
IR-50's checkpoint path) and the local caches alone: no model is built and nothing touches the
network, whatever ``FERSEARCH_ALLOW_DOWNLOAD`` says. ``fersearch weights list`` prints these, and
``create`` refuses a space whose trials would fail on a missing file.

The file names and cache folders are the families' own: ``remote()`` on the timm and open_clip
families names the file their ``weights()`` fetches when building; IR-50 is asked directly.

A finished fersearch model to fine-tune from (``trial:STUDY/N``, ``ensemble:DIR#I``, a
``best.json``) is recognised here but checked by fersearch/search/finetune.py, which can read
checkpoints, ensembles and the study storage: from here alone it is ``unchecked``.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ModelError
from .backbones import backbone_family
from .backbones.clip import OpenClipFamily
from .backbones.ir50 import IR50_FILE, FaceFamily, default_weights_path
from .backbones.timm import TimmFamily
from .pretrained import (
    FINETUNE_KINDS,
    Remote,
    cached_hub_file,
    finetune_kind,
    hub_fetch_command,
    missing_hub_message,
    missing_url_message,
    parse_pretrained,
    url_target,
)

# "other": a family registered later, not checked here; "invalid": no such backbone or tag;
# "trial", "ensemble", "checkpoint": a finished fersearch model to fine-tune from
KINDS = ("none", "timm", "open_clip", "file", "face", "other", "invalid", "trial", "ensemble", "checkpoint")


@dataclass(frozen=True)
class WeightsSource:
    backbone: str
    pretrained: bool | str
    kind: str  # one of KINDS
    tag: str | None = None  # timm / open_clip pretrained tag
    repo: str | None = None  # Hugging Face repository id
    files: tuple[str, ...] = ()  # candidate file names in ``repo``, first preferred
    url: str | None = None  # where a file published outside the hub comes from
    path: str | None = None  # the local file read (present) or expected (missing)
    problem: str | None = None  # why building would fail on this host; None when usable
    fetch: str | None = None  # the command that puts a missing file in place, where one exists
    checked: bool = True  # False: recognised, not looked for (a fine-tune source, from here alone)

    @property
    def status(self) -> str:
        if self.problem is not None:
            return "invalid" if self.kind == "invalid" else "missing"
        if not self.checked:
            return "unchecked"
        return {"none": "not needed", "other": "unchecked"}.get(self.kind, "present")

    @property
    def downloadable(self) -> bool:
        """Whether building would fetch it itself with FERSEARCH_ALLOW_DOWNLOAD=1 (hub and URL
        files; IR-50's release and local paths never are)."""
        return self.kind in ("timm", "open_clip") and bool(self.repo or self.url)

    @property
    def pretrained_text(self) -> str:
        """``pretrained`` as the space file spells it (true, not True)."""
        return str(self.pretrained).lower() if isinstance(self.pretrained, bool) else str(self.pretrained)

    @property
    def origin(self) -> str:
        """Where the file is published: ``repo/file`` on the hub, a URL, the file's name, or '-'."""
        if self.repo:
            return f"{self.repo}/{' or '.join(self.files)}"
        return self.url or (self.files[0] if self.files else "-")


def weights_source(backbone: str, pretrained: bool | str) -> WeightsSource:
    """The weights source ``create_backbone(backbone, pretrained)`` would read, and whether it is
    present locally; an unusable choice (unknown tag, missing file) is a source with a
    ``problem``, never an exception."""
    base = {"backbone": backbone, "pretrained": pretrained}
    try:
        request = parse_pretrained(pretrained)
    except ModelError as exc:  # a path that is not there (or not a weights file), a bad trial:
        if finetune_kind(pretrained):
            return WeightsSource(**base, kind="invalid", problem=str(exc))
        return WeightsSource(**base, kind="file", path=str(pretrained), problem=str(exc))
    if request.kind in FINETUNE_KINDS:
        return WeightsSource(**base, kind=request.kind, checked=False)
    if request.kind == "none":
        return WeightsSource(**base, kind="none")
    try:
        family, name = backbone_family(backbone)
        if isinstance(family, FaceFamily):
            return _face(family, name, base)
        if request.kind == "file":
            return WeightsSource(**base, kind="file", path=request.value)
        if isinstance(family, TimmFamily):
            return _published(base, "timm", family.remote(name, request)[1])
        if isinstance(family, OpenClipFamily):
            return _published(base, "open_clip", family.remote(name, pretrained)[0])
    except ModelError as exc:  # unknown backbone or tag: the message building would give
        return WeightsSource(**base, kind="invalid", problem=str(exc))
    return WeightsSource(**base, kind="other")


def _published(base: dict, kind: str, remote: Remote) -> WeightsSource:
    """A hub or URL file, as the family names it for building (``remote()``), and where it is."""
    if remote.repo:
        hit = cached_hub_file(remote.repo, list(remote.files), remote.cache_dir)
        missing = hit is None
        return WeightsSource(
            **base,
            kind=kind,
            tag=remote.tag,
            repo=remote.repo,
            files=remote.files,
            path=hit,
            problem=missing_hub_message(remote.repo, list(remote.files), remote.what, remote.cache_dir)
            if missing
            else None,
            fetch=hub_fetch_command(remote.repo, remote.files[0], remote.cache_dir) if missing else None,
        )
    target = url_target(remote.url, remote.folder)
    missing = not target.is_file()
    return WeightsSource(
        **base,
        kind=kind,
        tag=remote.tag,
        url=remote.url,
        path=str(target),
        problem=missing_url_message(remote.url, target, remote.what) if missing else None,
        fetch=f"curl -L --create-dirs -o {target} {remote.url}" if missing else None,
    )


def _face(family: FaceFamily, name: str, base: dict) -> WeightsSource:
    """IR-50 reads a local file only (its release is on cloud drives, never downloaded), so
    asking the family itself is safe and gives its own message."""
    request = parse_pretrained(base["pretrained"])
    kind = "file" if request.kind == "file" else "face"
    try:
        path = family.weights(name, base["pretrained"])
    except ModelError as exc:
        expected = str(default_weights_path()) if request.kind == "default" else None
        return WeightsSource(**base, kind=kind, files=(IR50_FILE,), path=expected, problem=str(exc))
    return WeightsSource(**base, kind=kind, files=(IR50_FILE,), path=path)


__all__ = ["KINDS", "WeightsSource", "weights_source"]
