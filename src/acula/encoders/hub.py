"""Published weights by name, through the Hugging Face hub (`create(name, pretrained=...)`, `--pretrained`).

    create("opera-gt", pretrained=True)           # OPERA-GT from evelyn0414/OPERA (encoder-operaGT.ckpt)
    create("opera-gt", pretrained="acula")        # the AcuLa checkpoint (tsnngw/AcuLa), encoder part
    create("opera-gt", pretrained="me/my-acula")  # a model folder written by `acula publish` and pushed
    create("opera-gt", pretrained="runs/card")    # the same folder, local

Files go through `huggingface_hub.hf_hub_download` into the standard Hugging Face cache (`HF_HUB_CACHE`, else
`HF_HOME/hub`, else ~/.cache/huggingface/hub), at the revision pinned in `PUBLISHED` (or the one a spec names with
`@`). Every file is hashed after download: a cached blob whose content does not match the sha256 the hub named it
by (a torn or altered download) is removed and fetched again, and a file whose sha256 differs from a pinned one is
refused. The repo, file, revision, resolved commit and sha256 go into the encoder's config (`config["pretrained"]`),
so every output that records the encoder config records them too.

Offline (`HF_HUB_OFFLINE=1`, or the hub unreachable) a cached file is used; a missing one is one error naming the
repo, the file and how to place it by hand. Nothing here runs code from a download: checkpoints are read by
`acula.encoders.checkpoint` (`weights_only=True`, safetensors), never with `trust_remote_code`.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .._io import sha256_file
from .checkpoint import Checkpoint, CheckpointError, read_checkpoint
from .registry import canonical_name

# the teacher the published AcuLa checkpoint was aligned to (MedGemma-4B, last layer, max length 128:
# docs/protocol.md#alignment-model; the published code mean-pools over padding, which acula's "mean" does
# not), for `acula zeroshot` / `retrieve`
_ACULA_TEACHER = {"model": "google/medgemma-4b-pt", "layer": -1, "pooling": "mean", "max_length": 128}
WEIGHT_SUFFIXES = (".safetensors", ".pt", ".pth", ".ckpt", ".bin")
MODEL_FILE = "model.safetensors"  # what `acula publish` writes (encoder + both projection heads)
CONFIG_FILE = "config.json"
TOKEN_VARS = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")


class HubError(CheckpointError):
    """Weights that cannot be fetched, found or trusted; the message says which and what to do."""


@dataclass(frozen=True)
class Published:
    """One name -> hub file. `revision` is the pin: a branch or tag today (see docs/convert.md: pin a commit hash
    once you have verified a download); `sha256`, when set, must match the downloaded file."""

    repo: str
    filename: str | None  # None: not known from public material; resolved from the repo's file list at first use
    revision: str
    encoder: str  # the registered encoder the weights load into
    sha256: str | None = None
    prefer: tuple[str, ...] = ()  # with filename None: patterns (lower-case base names) to pick among weight files
    config: dict[str, Any] | None = None  # acula config to attach when the file carries none (AcuLa)
    about: str = ""


PUBLISHED: dict[str, Published] = {
    "opera-gt": Published("evelyn0414/OPERA", "encoder-operaGT.ckpt", "main", "opera-gt",
                          about="OPERA-GT (generative, ViT MAE), pretrained on 7 respiratory corpora"),
    "opera-ct": Published("evelyn0414/OPERA", "encoder-operaCT.ckpt", "main", "opera-ct",
                          about="OPERA-CT (contrastive, HTS-AT)"),
    "opera-ce": Published("evelyn0414/OPERA", "encoder-operaCE.ckpt", "main", "opera-ce",
                          about="OPERA-CE (contrastive, EfficientNet-B0)"),
    "acula": Published("tsnngw/AcuLa", None, "main", "opera-gt",
                       prefer=("*acula*final*", "*final*", "*acula*", MODEL_FILE),
                       config={"encoder": {"name": "opera-gt"}, "teacher": json.dumps(_ACULA_TEACHER),
                               "heads": {"dropout": 0.2}},
                       about="the published AcuLa checkpoint: OPERA-GT aligned to MedGemma-4B, with both "
                             "projection heads"),
}


def published_names() -> list[str]:
    return sorted(PUBLISHED)


@dataclass
class Target:
    """What a `pretrained=` request resolved to, before anything is downloaded."""

    source: str  # the request as the user wrote it
    repo: str | None = None  # None: a local folder
    filename: str | None = None
    revision: str = "main"
    encoder: str | None = None  # None: named by the file's own acula config
    sha256: str | None = None
    prefer: tuple[str, ...] = ()
    config: dict[str, Any] | None = None
    folder: Path | None = None  # a local model folder


@dataclass
class Fetched:
    path: Path
    record: dict[str, Any] = field(default_factory=dict)  # repo, file, revision, commit, sha256

    @property
    def uri(self) -> str:
        """An `hf://owner/repo@commit/file` source that fetches exactly these bytes again (or the local path)."""
        r = self.record
        if not r.get("repo"):
            return str(self.path)
        return f"hf://{r['repo']}@{r.get('commit') or r['revision']}/{r['file']}"


# ------------------------------------------------------------------------------------------- environment
def cache_dir() -> Path:
    """The standard Hugging Face hub cache, read from the environment now (huggingface_hub reads it at import)."""
    env = os.environ
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if env.get(var):
            return Path(env[var]).expanduser()
    if env.get("HF_HOME"):
        return Path(env["HF_HOME"]).expanduser() / "hub"
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def endpoint() -> str | None:
    return os.environ.get("HF_ENDPOINT", "").rstrip("/") or None


def offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def token() -> str | None:
    """The access token from the environment (HF_TOKEN), or None (then huggingface_hub may use a saved login)."""
    return next((os.environ[v] for v in TOKEN_VARS if os.environ.get(v)), None)


def _web(repo: str, revision: str, filename: str) -> str:
    return f"{endpoint() or 'https://huggingface.co'}/{repo}/resolve/{revision}/{filename}"


# ------------------------------------------------------------------------------------------- resolving names
_REPO = re.compile(r"^[\w.-]+/[\w.-]+(@[\w./-]+?)?(/.+)?$")


def split_spec(spec: str) -> tuple[str, str | None, str | None]:
    """'owner/name[@revision][/path/in/repo]' (an 'hf://' prefix allowed) -> (repo, revision, filename)."""
    text = spec[len("hf://"):] if spec.startswith("hf://") else spec
    parts = text.split("/")
    if len(parts) < 2 or not all(parts[:2]):
        raise HubError(f"{spec!r}: expected OWNER/NAME[@REVISION][/FILE]")
    name, _, revision = parts[1].partition("@")
    return f"{parts[0]}/{name}", revision or None, "/".join(parts[2:]) or None


def resolve(name: str, pretrained: bool | str) -> Target:
    """Which hub file (or local folder) `create(name, pretrained=...)` means."""
    key = canonical_name(name)
    known = ", ".join(published_names())
    if pretrained is True:
        entry = PUBLISHED.get(key)
        if entry is None:
            hint = (" YAMNet keeps its local-file route: pass its .tflite with checkpoint=... (--checkpoint)."
                    if key == "yamnet" else "")
            raise HubError(f"no published weights for {name!r}; published names: {known}; or pass "
                           f"pretrained='OWNER/NAME' for a model folder written by `acula publish`.{hint}")
        return _from_entry(key, entry, key, None)
    if not isinstance(pretrained, str) or not pretrained:
        raise HubError(f"pretrained must be True, a published name ({known}), OWNER/NAME or a folder; "
                       f"got {pretrained!r}")
    spec = pretrained
    base, _, at = spec.partition("@")
    if base in PUBLISHED and "/" not in spec:
        return _from_entry(base, PUBLISHED[base], spec, at or None, name)
    local = Path(spec).expanduser()
    if not spec.startswith("hf://") and local.is_dir():
        return Target(spec, folder=local.resolve(), filename=MODEL_FILE)
    if not spec.startswith("hf://") and (spec.startswith((".", "/", "~")) or local.is_file()
                                         or (local.suffix in WEIGHT_SUFFIXES and len(local.parts) < 3)):
        raise HubError(f"pretrained={spec!r}: no such model folder (a single weights file goes to checkpoint=..., "
                       "--checkpoint)")
    if not _REPO.match(spec[len("hf://"):] if spec.startswith("hf://") else spec):
        raise HubError(f"unknown pretrained name {spec!r}; published names: {known}; or OWNER/NAME[@REVISION] of a "
                       "hub repo written by `acula publish`, or a local folder")
    repo, revision, filename = split_spec(spec)
    for k, entry in PUBLISHED.items():  # a published repo by its id (OPERA's three files, AcuLa), or one of its files
        if entry.repo.lower() == repo.lower() and (entry.encoder == key or k == key
                                                   or len(_entries_of(entry.repo)) == 1):
            target = _from_entry(k, entry, spec, revision, name)
            if filename and filename != entry.filename:
                target.filename, target.sha256 = filename, None
            return target
    return Target(spec, repo=repo, filename=filename or MODEL_FILE, revision=revision or "main")


def _entries_of(repo: str) -> list[str]:
    return [k for k, e in PUBLISHED.items() if e.repo.lower() == repo.lower()]


def _from_entry(key: str, entry: Published, source: str, revision: str | None, name: str | None = None) -> Target:
    if name is not None and canonical_name(name) not in (entry.encoder, key):
        raise HubError(f"the {key!r} weights ({entry.repo}) are for {entry.encoder}, not {name}: "
                       f"create({entry.encoder!r}, pretrained={key!r}) / --encoder {entry.encoder}")
    return Target(source, repo=entry.repo, filename=entry.filename, revision=revision or entry.revision,
                  encoder=entry.encoder, sha256=entry.sha256 if revision is None else None, prefer=entry.prefer,
                  config=entry.config)


# ------------------------------------------------------------------------------------------- listing a repo
def repo_folder(repo: str) -> Path:
    return cache_dir() / ("models--" + repo.replace("/", "--"))


def cached_commit(repo: str, revision: str) -> str | None:
    if re.fullmatch(r"[0-9a-f]{40}", revision):
        return revision
    ref = repo_folder(repo) / "refs" / revision
    return ref.read_text().strip() if ref.is_file() else None


def cached_files(repo: str, revision: str) -> list[str]:
    """Files of `repo` at `revision` that the local cache holds (none when the revision was never fetched)."""
    commit = cached_commit(repo, revision)
    snap = repo_folder(repo) / "snapshots" / commit if commit else None
    if snap is None or not snap.is_dir():
        return []
    return sorted(p.relative_to(snap).as_posix() for p in snap.rglob("*") if p.is_file())


def list_files(repo: str, revision: str) -> tuple[list[str], str | None]:
    """(files, commit) of `repo` at `revision`: from the hub, or from the cache when offline / unreachable."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import RepositoryNotFoundError, RevisionNotFoundError

    if not offline():
        try:
            info = HfApi(endpoint=endpoint()).model_info(repo, revision=revision, token=token())
            return sorted(s.rfilename for s in info.siblings or []), info.sha
        except RevisionNotFoundError:
            raise HubError(f"revision {revision!r} does not exist in Hugging Face repo {repo!r}") from None
        except RepositoryNotFoundError:
            raise HubError(f"Hugging Face repo {repo!r} not found (a private or gated repo needs a token: set "
                           "HF_TOKEN)") from None
        except Exception:  # unreachable hub: fall back to the cache below
            pass
    return cached_files(repo, revision), cached_commit(repo, revision)


def pick_weights_file(repo: str, revision: str, files: list[str], prefer: tuple[str, ...] = ()) -> str:
    """The one weights file among a repo's `files` (AcuLa: its name is not published), or an error listing them."""
    has = ", ".join(files) or "no files"
    cands = [f for f in files if f.lower().endswith(WEIGHT_SUFFIXES)]
    if len(cands) == 1:
        return cands[0]
    for pattern in prefer:
        hits = [f for f in cands if fnmatch.fnmatchcase(f.rsplit("/", 1)[-1].lower(), pattern)]
        if len(hits) == 1:
            return hits[0]
    if not cands:
        raise HubError(f"Hugging Face repo {repo!r} (revision {revision}) has no weights file "
                       f"({', '.join('*' + s for s in WEIGHT_SUFFIXES)}); it has: {has}")
    raise HubError(f"Hugging Face repo {repo!r} (revision {revision}) has several weights files ({', '.join(cands)}); "
                   f"name one: pretrained='{repo}/<file>'")


# ------------------------------------------------------------------------------------------- fetching
def fetch(target: Target) -> Fetched:
    """Download (or find in the cache) the file `target` names and check its sha256."""
    if target.folder is not None:
        path = target.folder / (target.filename or MODEL_FILE)
        if not path.is_file():
            has = ", ".join(sorted(p.name for p in target.folder.iterdir())) or "nothing"
            raise HubError(f"{target.folder}: not an acula model folder (no {path.name}; it has: {has})")
        sha = sha256_file(path)
        _check_pin(target, sha, str(path))
        return Fetched(path, {"source": target.source, "path": str(path), "file": path.name, "sha256": sha})
    repo, revision = target.repo, target.revision
    filename = target.filename
    if filename is None:
        files, _ = list_files(repo, revision)
        if not files:
            raise HubError(_offline_message(repo, "<its weights file>", revision, listing=True))
        filename = pick_weights_file(repo, revision, files, target.prefer)
    path, sha = download_file(repo, filename, revision)
    commit = _commit_of(path)
    _check_pin(target, sha, f"{repo}/{filename}@{revision}")
    return Fetched(path, {"source": target.source, "repo": repo, "file": filename, "revision": revision,
                          "commit": commit, "sha256": sha})


def download_file(repo: str, filename: str, revision: str = "main") -> tuple[Path, str]:
    """(path in the Hugging Face cache, sha256) of one hub file; a cached copy whose bytes are not those the hub
    named (a torn or altered download) is removed and fetched again, never used."""
    path = _download(repo, filename, revision)
    sha = sha256_file(path)
    if not _blob_ok(path, sha):
        _evict(path)
        if offline():
            raise HubError(f"the cached copy of {filename!r} from Hugging Face repo {repo!r} was corrupt (its sha256 "
                           "is not the one the hub published) and was removed; run again online to fetch it afresh")
        path = _download(repo, filename, revision)
        sha = sha256_file(path)
        if not _blob_ok(path, sha):
            _evict(path)
            raise HubError(f"{filename!r} from Hugging Face repo {repo!r} arrived corrupt twice (sha256 {sha} is not "
                           "the one the hub published); refusing it")
    return path, sha


def _download(repo: str, filename: str, revision: str) -> Path:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (LocalEntryNotFoundError, OfflineModeIsEnabled, RemoteEntryNotFoundError,
                                        RepositoryNotFoundError, RevisionNotFoundError)

    try:
        return Path(hf_hub_download(repo, filename, revision=revision, cache_dir=cache_dir(), endpoint=endpoint(),
                                    token=token(), local_files_only=offline()))
    except RevisionNotFoundError:
        raise HubError(f"revision {revision!r} does not exist in Hugging Face repo {repo!r}; check the pin "
                       "(acula.encoders.hub.PUBLISHED) or the @REVISION you asked for") from None
    except RemoteEntryNotFoundError:
        files, _ = list_files(repo, revision)
        raise HubError(f"Hugging Face repo {repo!r} (revision {revision}) has no file {filename!r}; it has: "
                       f"{', '.join(files) or 'no files'}") from None
    except RepositoryNotFoundError:  # also gated repos
        local = f"; nor is there a local folder {repo}" if Path(repo.split("/")[0]).is_dir() else ""
        raise HubError(f"Hugging Face repo {repo!r} not found, or not readable without a token (private or gated: "
                       f"set HF_TOKEN){local}") from None
    except (LocalEntryNotFoundError, OfflineModeIsEnabled):
        raise HubError(_offline_message(repo, filename, revision)) from None
    except Exception as e:  # an HTTP error, a torn transfer (huggingface_hub removes its partial file), ...
        why = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        raise HubError(f"cannot fetch {filename!r} from Hugging Face repo {repo!r} (revision {revision}): {why}. "
                       "Nothing partial was kept; run again, or place the file by hand (see docs/convert.md)") from None


def _offline_message(repo: str, filename: str, revision: str, listing: bool = False) -> str:
    why = ("offline mode (HF_HUB_OFFLINE=1)" if offline() else "the Hugging Face hub is unreachable")
    what = (f"cannot list the files of Hugging Face repo {repo!r} (revision {revision})" if listing else
            f"cannot fetch {filename!r} from Hugging Face repo {repo!r} (revision {revision})")
    folder = repo_folder(repo)
    return (f"{what}: {why}, and it is not in the local cache ({cache_dir()}). Place it by hand: on a connected machine "
            f"run `hf download {repo}{'' if listing else ' ' + filename} --revision {revision}` (or fetch "
            f"{_web(repo, revision, '<file>' if listing else filename)}) and copy the cache folder {folder.name} "
            f"into {cache_dir()}; or download the file and pass its path with checkpoint=... (--checkpoint)")


def _blob_ok(path: Path, sha: str) -> bool:
    """A cached blob named by a sha256 (the hub's LFS etag) must hash to that name."""
    blob = path.resolve().name
    return not re.fullmatch(r"[0-9a-f]{64}", blob) or blob == sha


def _evict(path: Path) -> None:
    blob = path.resolve()
    path.unlink(missing_ok=True)
    if blob != path:
        blob.unlink(missing_ok=True)


def _commit_of(path: Path) -> str | None:
    parts = path.parts
    if "snapshots" in parts:
        i = len(parts) - 1 - parts[::-1].index("snapshots")
        if i + 1 < len(parts) and re.fullmatch(r"[0-9a-f]{40}", parts[i + 1]):
            return parts[i + 1]
    return None


def _check_pin(target: Target, sha: str, where: str) -> None:
    if target.sha256 and sha != target.sha256:
        raise HubError(f"sha256 mismatch for {where}: pinned {target.sha256}, downloaded {sha}. The file changed "
                       "since it was pinned (or was altered on the way); refusing to load it. If the change is "
                       "intended, update the pin in acula.encoders.hub.PUBLISHED")


# ------------------------------------------------------------------------------------------- for create()
def pretrained_weights(name: str, pretrained: bool | str, options: dict[str, Any]
                       ) -> tuple[str, dict[str, Any], Checkpoint, dict[str, Any]]:
    """(encoder name, options, checkpoint, record) for `create(name, pretrained=...)`; the record goes into the
    encoder's config as `config["pretrained"]`."""
    target = resolve(name, pretrained)
    fetched = fetch(target)
    ck = read_checkpoint(fetched.path)  # weights_only=True / safetensors: nothing in the file runs
    ck = attach_config(ck, target)
    enc = (ck.config or {}).get("encoder") if target.encoder is None else None
    record = {**fetched.record, "uri": fetched.uri}
    if target.encoder is not None:
        return target.encoder, dict(options), ck, record
    if not isinstance(enc, dict) or "name" not in enc:
        raise HubError(f"{target.source}: {fetched.path.name} carries no acula encoder config; it is not a folder "
                       "written by `acula publish` (for a single weights file use checkpoint=...)")
    saved = {k: v for k, v in enc.items() if k not in ("name", "pretrained")}
    key = canonical_name(name)
    if key not in (enc["name"], "acula"):
        raise HubError(f"{target.source} holds a {enc['name']} encoder, not {name}: create({enc['name']!r}, "
                       f"pretrained={target.source!r}) / --encoder {enc['name']}")
    clash = {k: (v, saved[k]) for k, v in options.items() if k in saved and saved[k] != v}
    if clash:
        raise HubError(f"{target.source} was published with " + ", ".join(f"{k}={s!r}" for k, (_, s) in clash.items())
                       + "; drop the conflicting option(s) " + ", ".join(f"{k}={v!r}" for k, (v, _) in clash.items()))
    return enc["name"], {**saved, **options}, ck, record


def attach_config(ck: Checkpoint, target: Target | None = None) -> Checkpoint:
    """A published checkpoint without an acula config (AcuLa's own) gets its table entry's, so that it can be rebuilt
    (encoder, teacher). Without `target`, the entry is found from the file's place in the Hugging Face cache."""
    if ck.config and isinstance(ck.config.get("encoder"), dict):
        return ck
    config = target.config if target is not None else None
    if target is None and ck.path:
        folder = next((p for p in Path(ck.path).parts if p.startswith("models--")), None)
        repo = folder[len("models--"):].replace("--", "/", 1) if folder else None
        config = next((e.config for e in PUBLISHED.values() if repo and e.config and e.repo.lower() == repo.lower()),
                      None)
    return replace(ck, config={**config, **(ck.config or {})}) if config else ck


def checkpoint_source(name: str, pretrained: bool | str) -> str:
    """`create(name, pretrained=...)`'s weights fetched now, as a `checkpoint=` source that reads exactly those bytes
    again (`hf://OWNER/NAME@COMMIT/FILE`, or the local file), for commands that take checkpoint paths."""
    return fetch(resolve(name, pretrained)).uri


def aligned_source(spec: str) -> str:
    """An aligned checkpoint (encoder + both projection heads) by name, for `acula zeroshot / retrieve / calibrate
    --pretrained`: 'acula', an `acula publish` repo OWNER/NAME[@REV] or its local folder. Fetched (and checked) now;
    returns a source that reads exactly those bytes again: `hf://OWNER/NAME@COMMIT/FILE`, or the local file."""
    return fetch(resolve("acula", spec)).uri
