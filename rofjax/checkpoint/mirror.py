"""A run folder kept in a bucket (gs://, s3://, any `etils.epath` URL) through a local copy.

A training run needs a local file system: its lock, its appended metric logs and orbax's atomic renames. A
`--workdir` in a bucket is therefore a local folder (`$ROFJAX_REMOTE_CACHE/runs/...`) that `RunFolder` mirrors:
pulled from the bucket when the run opens (so a run resumes on any machine), pushed after every completed save and
when the run ends.

What the bucket holds is described by `rofjax-mirror.json`, written after the files it lists: a reader goes by that
list only, so a push cut short (a killed process) leaves files the list does not name yet, never a list naming
missing files. A push uploads what changed since the last one (size and modification time), then deletes from the
bucket the files the previous list named and the new one does not; files the mirror did not put there are left
alone.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil

MANIFEST = "rofjax-mirror.json"
STATE = ".mirror-state.json"
FORMAT = 1
# Never mirrored: the local lock, the mirror's own record, and writes in progress (ours and orbax's).
_LOCAL_ONLY = (".lock", STATE)
_IN_PROGRESS = (".tmp", ".orbax-checkpoint-tmp", ".write-test-", ".partial-")


class MirrorError(OSError):
    """The bucket could not be read or written (credentials, network, a missing gcsfs/s3fs)."""


def staging_folder(url: str, cache_root: str) -> str:
    """The local folder that stands for the bucket folder `url` on this machine."""
    name = url.rstrip("/").rsplit("/", 1)[-1] or "run"
    return os.path.join(cache_root, "runs", hashlib.sha256(url.rstrip("/").encode()).hexdigest()[:16], name)


class BucketMirror:
    """The bucket folder `url` and its local copy `local`."""

    def __init__(self, url: str, local: str):
        from etils import epath

        self.url, self.local = url.rstrip("/"), local
        self.remote = epath.Path(self.url)

    # Reading the bucket -------------------------------------------------------------------------------------------
    def _manifest(self) -> dict | None:
        path = self.remote / MANIFEST
        try:
            if not path.exists():
                return None
            manifest = json.loads(path.read_text())
        except json.JSONDecodeError as error:
            raise ValueError(f"{self.url}/{MANIFEST} is not valid JSON ({error}).") from None
        if manifest.get("format", 0) > FORMAT:
            raise ValueError(f"{self.url} was mirrored by a newer rofjax (format {manifest['format']}); upgrade.")
        return manifest

    def pull(self) -> None:
        """Make the local copy what the bucket's list says (nothing to do when it already is)."""
        manifest = self._try(self._manifest, "read")
        if manifest is None:
            if self._try(lambda: self.remote.exists() and any(self.remote.iterdir()), "list"):
                raise ValueError(f"--workdir {self.url} holds files but no {MANIFEST}: it is not a run folder "
                                 f"mirrored by rofjax. Choose an empty or new folder.")
            return
        files = {name: int(size) for name, size in manifest["files"].items()}
        state = self._state()
        if state.get("manifest") == files and self._local_matches(state.get("files", {})):
            return
        for name in os.listdir(self.local) if os.path.isdir(self.local) else ():
            if name not in _LOCAL_ONLY:
                target = os.path.join(self.local, name)
                shutil.rmtree(target) if os.path.isdir(target) and not os.path.islink(target) else os.remove(target)
        os.makedirs(self.local, exist_ok=True)
        for name, size in sorted(files.items()):
            destination = os.path.join(self.local, name)
            os.makedirs(os.path.dirname(destination), exist_ok=True)
            partial = destination + ".partial-pull"
            self._try(lambda name=name, partial=partial: self._copy((self.remote / name).open("rb"),
                                                                   open(partial, "wb")), "read", name)
            got = os.path.getsize(partial)
            if got != size:
                os.remove(partial)
                raise ValueError(f"{self.url}/{name}: {got} bytes read where {MANIFEST} says {size}; the bucket "
                                 f"copy is damaged.")
            os.replace(partial, destination)
        self._write_state(files, self._listing())

    # Writing the bucket -------------------------------------------------------------------------------------------
    def push(self) -> None:
        """Upload what changed since the last push, then the list, then delete what the list no longer names."""
        listing = self._listing()
        state = self._state()
        pushed, before = state.get("files", {}), state.get("manifest", {})
        for name, stamp in sorted(listing.items()):
            if pushed.get(name) != stamp:
                self.upload(name)
        files = {name: stamp[0] for name, stamp in listing.items()}
        text = json.dumps({"format": FORMAT, "files": files}, indent=0, sort_keys=True)
        self._try(lambda: (self.remote / MANIFEST).write_text(text), "write", MANIFEST)
        for name in sorted(set(before) - set(files)):
            self._try(lambda target=self.remote / name: target.unlink(missing_ok=True), "delete", name)
        self._write_state(files, listing)

    def upload(self, name: str) -> None:
        """Copy the local file `name` (relative to the run folder, or absolute inside it) to the bucket."""
        relative = os.path.relpath(name, self.local) if os.path.isabs(name) else name
        target = self.remote / relative.replace(os.sep, "/")

        def copy():
            target.parent.mkdir(parents=True, exist_ok=True)
            self._copy(open(os.path.join(self.local, relative), "rb"), target.open("wb"))

        self._try(copy, "write", relative)

    # Local bookkeeping --------------------------------------------------------------------------------------------
    def _listing(self) -> dict[str, list[int]]:
        """{relative path: [size, mtime_ns]} of the files to mirror."""
        found = {}
        for root, folders, files in os.walk(self.local):
            folders[:] = sorted(f for f in folders if not any(mark in f for mark in _IN_PROGRESS))
            for name in files:
                if name in _LOCAL_ONLY or any(mark in name for mark in _IN_PROGRESS):
                    continue
                path = os.path.join(root, name)
                stat = os.stat(path)
                found[os.path.relpath(path, self.local).replace(os.sep, "/")] = [stat.st_size, stat.st_mtime_ns]
        return found

    def _local_matches(self, recorded: dict) -> bool:
        return bool(recorded) and self._listing() == recorded

    def _state(self) -> dict:
        try:
            with open(os.path.join(self.local, STATE), encoding="utf-8") as f:
                state = json.load(f)
        except (OSError, json.JSONDecodeError):
            return {}
        return state if state.get("url") == self.url else {}

    def _write_state(self, manifest: dict, listing: dict) -> None:
        path = os.path.join(self.local, STATE)
        with open(path + ".tmp", "w", encoding="utf-8") as f:
            json.dump({"url": self.url, "manifest": manifest, "files": listing}, f)
        os.replace(path + ".tmp", path)

    @staticmethod
    def _copy(reader, writer) -> None:
        with reader, writer:
            shutil.copyfileobj(reader, writer, 1 << 22)

    def _try(self, action, verb: str, name: str = ""):
        """`action()`, with a bucket's own errors (credentials, network, a missing gcsfs) as one line naming it."""
        try:
            return action()
        except (ValueError, FileNotFoundError):
            raise
        except Exception as error:
            where = f"{self.url}/{name}" if name else self.url
            first = (str(error).strip().splitlines() or [type(error).__name__])[0]
            raise MirrorError(f"could not {verb} {where}: {type(error).__name__}: {first}") from None
