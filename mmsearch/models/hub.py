"""What a hub repository holds, and its download through huggingface_hub.

huggingface_hub does the transfer: its cache (HF_HOME, HF_HUB_CACHE) is shared with every other tool
that uses it, a file already there is not fetched again, a broken transfer resumes where it stopped
(a Range request), its progress bars show, and HF_HUB_OFFLINE, HF_ENDPOINT and HF_TOKEN mean what they
mean everywhere else. What it does not do is check what arrived: every file is hashed here against
the checksum the hub lists for it (sha256 for LFS files, the git blob id for the others), and a file
that does not match is removed from the cache and refused by name.

The hub's API as huggingface_hub uses it: /api/models/{repo}/revision/{rev}?blobs=true (the commit and
every file with its size and checksums), /api/models/{repo}/tree/{commit} (the listing recent
versions fetch before downloading) and /{repo}/resolve/{commit}/{file} (HEAD for X-Repo-Commit, ETag
or X-Linked-Etag and X-Linked-Size; GET with Range to resume).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import MmsearchError, first_line
from . import layouts


class HubError(MmsearchError):
    """A repository that could not be fetched; the message names it (and the file) and says why."""


class OfflineError(HubError):
    """The hub cannot be reached and the cache does not hold the model."""


@dataclass(frozen=True)
class RemoteFile:
    path: str
    size: int | None
    sha256: str | None  # LFS files
    blob_id: str | None  # the git blob id (sha1 of "blob <size>\0" + content)


@dataclass
class Plan:
    """What pulling a repository means: the resolved commit, its layout and the files to fetch."""

    repo: str
    revision: str | None  # as asked (None: the default branch)
    commit: str
    layout: str
    files: list[RemoteFile]
    cached_folder: Path | None = None  # set where the hub was not reached and the cache holds the model
    notes: list[str] = field(default_factory=list)

    @property
    def total_bytes(self) -> int:
        return sum(f.size or 0 for f in self.files)


def cache_dir() -> str:
    from huggingface_hub import constants

    return str(constants.HF_HUB_CACHE)


def offline_mode() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def plan(repo: str, revision: str | None = None) -> Plan:
    """The repository's commit, layout and files (one API call); from the cache where the hub cannot be
    reached. HubError/OfflineError/LayoutError with the reason otherwise."""
    from huggingface_hub import HfApi
    from huggingface_hub.utils import (
        GatedRepoError,
        HfHubHTTPError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    try:
        info = HfApi().model_info(repo, revision=revision, files_metadata=True)
    except RevisionNotFoundError:
        raise HubError(f"{repo}: the repository has no revision {revision!r}") from None
    except GatedRepoError:
        raise HubError(f"{repo}: the repository is gated; accept its terms on the hub and log in "
                       "(`hf auth login` or HF_TOKEN)") from None
    except RepositoryNotFoundError:
        raise HubError(f"{repo}: no such model repository on the hub (or it is private: log in with "
                       "`hf auth login` or HF_TOKEN)") from None
    except OfflineModeIsEnabled:
        return _from_cache(repo, revision, "HF_HUB_OFFLINE is set")
    except HfHubHTTPError as e:
        return _from_cache(repo, revision, f"the hub answered {first_line(e)}")
    except Exception as e:
        if not _is_connection_error(e):
            raise
        return _from_cache(repo, revision, f"the hub cannot be reached ({first_line(e)})")
    if not info.sha:
        raise HubError(f"{repo}: the hub did not say which commit it serves")
    siblings = info.siblings or []
    listed = {s.rfilename: s for s in siblings}
    layout, wanted = layouts.wanted_files(sorted(listed), repo)
    files = []
    for name in wanted:
        s = listed[name]
        lfs = getattr(s, "lfs", None)
        sha256 = (lfs.get("sha256") if isinstance(lfs, dict) else getattr(lfs, "sha256", None)) if lfs else None
        files.append(RemoteFile(name, s.size, sha256, getattr(s, "blob_id", None)))
    return Plan(repo, revision, info.sha, layout, files)


def _is_connection_error(e: Exception) -> bool:
    """A transport failure (DNS, refused, timeout, proxy), whichever HTTP library huggingface_hub uses."""
    if isinstance(e, (OSError, TimeoutError)):
        return True
    return type(e).__module__.split(".")[0] in ("httpx", "httpx2", "httpcore", "httpcore2", "requests", "urllib3")


def _from_cache(repo: str, revision: str | None, why: str) -> Plan:
    """The plan for a model already in huggingface_hub's cache, or OfflineError in one line."""
    from huggingface_hub import hf_hub_download

    try:
        config = Path(hf_hub_download(repo, "config.json", revision=revision, local_files_only=True))
    except Exception:
        where = f"{repo}" + (f" at {revision}" if revision else "")
        how = ("unset HF_HUB_OFFLINE where the hub can be reached" if offline_mode()
               else "connect to the internet, or set HF_HUB_OFFLINE=1 to use the cache alone")
        raise OfflineError(
            f"cannot download {where}: {why}, and the Hugging Face cache ({cache_dir()}) does not hold it; "
            f"{how}, or copy the model's folder here and run `mmsearch models import DIR`"
        ) from None
    folder = config.parent
    present = layouts.list_folder(folder)
    try:
        layout, wanted = layouts.wanted_files(present, f"{repo} in the Hugging Face cache ({folder})")
    except layouts.LayoutError as e:
        raise OfflineError(f"{e} ({why}, so it cannot be completed)") from None
    files = [RemoteFile(name, (folder / name).stat().st_size, None, None) for name in wanted]
    return Plan(repo, revision, folder.name, layout, files, cached_folder=folder,
                notes=[f"{why}: using the copy in the Hugging Face cache ({folder})"])


def fetch(plan: Plan, *, progress: bool = True) -> tuple[Path, dict[str, dict[str, Any]]]:
    """Download the plan's files (or take them from the cache) and check each against the hub's
    checksum; returns the snapshot folder and {file: {"sha256", "bytes"}}."""
    if plan.cached_folder is not None:
        folder = plan.cached_folder
    else:
        import glob

        from huggingface_hub import snapshot_download
        from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

        was_disabled = are_progress_bars_disabled()
        if not progress:
            disable_progress_bars()
        try:
            folder = Path(snapshot_download(plan.repo, revision=plan.commit,
                                            allow_patterns=[glob.escape(f.path) for f in plan.files]))
        except Exception as e:
            if _is_connection_error(e):
                raise HubError(f"{plan.repo}: the download stopped ({first_line(e)}); run the same command again "
                               "to resume (files already complete are kept in the Hugging Face cache)") from None
            raise HubError(f"{plan.repo}: the download failed ({type(e).__name__}: {first_line(e)})") from None
        finally:
            if not progress and not was_disabled:
                enable_progress_bars()
        _remember_ref(folder, plan)
    return folder, verify(plan, folder)


def _remember_ref(folder: Path, plan: Plan) -> None:
    """Files are fetched at the resolved commit, so that what is checked is what was planned; the
    branch or tag asked for is then recorded in the cache's refs/ (huggingface_hub's cache layout:
    snapshots/<commit> beside refs/<revision>), as huggingface_hub does, so the cache answers for it
    offline."""
    revision = plan.revision or "main"
    if revision == plan.commit or folder.name != plan.commit or folder.parent.name != "snapshots":
        return
    ref = folder.parent.parent / "refs" / revision
    try:
        ref.parent.mkdir(parents=True, exist_ok=True)
        ref.write_text(plan.commit)
    except OSError:
        pass  # a read-only cache still serves the pull; only offline use by branch name needs the ref


def verify(plan: Plan, folder: Path) -> dict[str, dict[str, Any]]:
    """Hash every file of the plan; a file that does not match the hub's checksum is removed from the
    cache (so the next pull fetches it again) and HubError names it."""
    checked = {}
    for f in plan.files:
        path = folder / f.path
        if not path.is_file():
            raise HubError(f"{plan.repo}: {f.path} is missing after the download")
        sha256, blob = _hashes(path)
        size = path.stat().st_size
        bad = None
        if f.sha256 and sha256 != f.sha256:
            bad = f"sha256 {sha256[:12]}... where the hub lists {f.sha256[:12]}..."
        elif not f.sha256 and f.blob_id and blob != f.blob_id:
            bad = f"git blob id {blob[:12]}... where the hub lists {f.blob_id[:12]}..."
        elif f.size is not None and size != f.size:
            bad = f"{size} bytes where the hub lists {f.size}"
        if bad:
            _discard(path)
            raise HubError(f"{plan.repo}: {f.path} does not match the hub's checksum ({bad}): the download is "
                           "damaged. It was removed from the Hugging Face cache; run the same command again")
        checked[f.path] = {"sha256": sha256, "bytes": size}
    return checked


def _hashes(path: Path) -> tuple[str, str]:
    """(sha256, git blob sha1) of a file in one read."""
    size = path.stat().st_size
    sha256 = hashlib.sha256()
    blob = hashlib.sha1(f"blob {size}\0".encode())
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            sha256.update(chunk)
            blob.update(chunk)
    return sha256.hexdigest(), blob.hexdigest()


def _discard(path: Path) -> None:
    """Remove a cached file and the blob its snapshot link points to."""
    try:
        target = path.resolve() if path.is_symlink() else None
        path.unlink()
        if target is not None:
            os.unlink(target)
    except OSError:
        pass
