"""A run whose decoding and encoding happen on a Ray cluster (`mmsearch index --engine ray`).

The driver (this process, the index's one writer) does what a local run does around it: scans each
root and plans it against the catalog, applies moves and deletes, and sends only the new and changed
files to the cluster. There, Ray Data reads and decodes photos (or extracts and chunks documents) in
CPU tasks with the local run's own code (a file whose content hash the index holds already, a
touched file or a copy, is neither decoded nor encoded: an actor on this node answers from the
catalog), and an actor pool encodes them, one model per actor (a GPU per
actor where the cluster has GPUs), each batch written as one Parquet shard (shards.py) into the shard
folder. The driver commits each shard as it is reported, in one transaction through commit.py as a
local batch is committed, then notes it in the folder's ledger and deletes it.

Nothing committed is lost: a killed driver leaves finished shards in the folder, and the next run
commits them before it scans, so their files are unchanged by then and not sent again; a lost worker's
batch is made again by Ray (task retries, actor restarts) under the same shard name. A commit applies
a shard's row only where the catalog still holds the file as it was planned, so a shard committed
twice, or a stale one, changes nothing.

Ray is imported only here and only for such a run: it is the `distributed` extra.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import private
from ..bundle import Bundle
from ..errors import MmsearchError, first_line
from ..filenames import display_path
from ..scanner import Plan
from .context import Run, Work
from .records import Batch, Task

log = logging.getLogger("mmsearch")

SHARDS_DIR = "shards"  # in the index folder, unless the run names a folder every node can write
LEDGER = "committed.txt"  # shards committed and not yet deleted
OWNER = "index.json"  # which index a shard folder serves
# A document's text at the default cap (settings.DEFAULT_MAX_DOCUMENT_CHARS), as UTF-32 at worst: the memory
# the scheduler is told a document takes (a run with a higher cap is told the same, so it still schedules).
MAX_TEXT_BYTES = 4 * 4_000_000
IMAGE_SHARD_FILES = 256  # photos per shard: at 224 px, ~150 MB of pixels in flight per batch
DOCUMENT_SHARD_FILES = 16  # documents per shard: a document can be thousands of chunks


class RayUnavailable(MmsearchError):
    pass


@dataclass
class RayOptions:
    address: str | None = None  # None: RAY_ADDRESS, else a Ray started for this run on this machine
    shard_dir: Path | None = None  # None: INDEX/shards
    image_shard_files: int = IMAGE_SHARD_FILES
    document_shard_files: int = DOCUMENT_SHARD_FILES


def import_ray() -> Any:
    try:
        import pyarrow  # noqa: F401  (the shards' format; imported here so a missing one is said the same way)
        import ray
        import ray.data  # noqa: F401
    except ImportError as e:
        raise RayUnavailable(f"--engine ray needs Ray Data ({e}). Install it with:\n"
                             "  pip install 'mmsearch[distributed]'") from None
    return ray


class RayEngine:
    """The cluster side of a run, an engine of the flow (run.py): `resume` commits what a killed run left
    in the shard folder, `images` and `documents` are the shards the cluster makes of the plan's files,
    each read back as records for the flow to commit. `close` says where the actors encoded."""

    def __init__(self, bundle: Bundle, variant: str | None, device: str, index_folder: Path, options: RayOptions):
        self.bundle, self.variant, self.encode_device, self.options = bundle, variant, device, options
        self.folder = Path(options.shard_dir or index_folder / SHARDS_DIR).expanduser().resolve()
        self.index_folder = Path(index_folder).resolve()
        self._ray: Any = None  # the ray module, once this run connected (None: not yet)
        self._started = False  # whether this run started Ray (and so shuts it down)
        self._shape: _Shape | None = None
        self._devices: set[str] = set()
        self._resumed: dict[str, bool] = {}  # path -> indexed (else in error), of files committed by resume

    # -- the shard folder ---------------------------------------------------------------------------

    def _prepare_folder(self) -> None:
        from . import shards  # pyarrow, imported by a run that uses Ray only (after import_ray)

        try:
            # The shards hold the index's text and vectors. A folder given with --shard-dir may hold other
            # files: only the shard folder's own are checked and tightened.
            private.claim(self.folder, "shard folder", _shard_entry)
            owner = self.folder / OWNER
            if owner.exists():
                serves = json.loads(owner.read_text()).get("index")
                if serves != str(self.index_folder):
                    raise MmsearchError(f"{self.folder}: this shard folder serves the index {serves}; give each index "
                                        "its own --shard-dir")
            else:
                with private.open_file(owner, "w") as f:
                    f.write(json.dumps({"index": str(self.index_folder)}))
        except OSError as e:
            raise MmsearchError(f"{self.folder}: cannot use it as the shard folder ({e.strerror or e})") from None
        shards.remove_temporaries(self.folder)

    def resume(self, run: Run) -> Generator[Batch, None, None]:
        """What a killed run left finished in the shard folder, before the scan plans anything."""
        from . import shards

        if not self.folder.is_dir():
            return
        self._prepare_folder()
        done = self._ledger()
        for path in shards.pending(self.folder):
            if path.name not in done:
                yield from self._shard(run, path, resumed=True)
            path.unlink(missing_ok=True)
        self._tidy()

    def planned(self, run: Run, plans: list[Plan]) -> None:
        """The files resume committed are counted there (added, updated, in error); the scan then finds
        most of them unchanged (or still failed): they are not counted twice."""
        if not self._resumed:
            return
        judged = {f.path for p in plans for f, _ in p.changed} | {f.path for p in plans for f, _ in p.moved}
        judged |= {row.fs_path for p in plans for row in p.missing} | {f.path for p in plans for f in p.new}
        for path, indexed in self._resumed.items():
            if path not in judged:
                if indexed:
                    run.report.unchanged -= 1
                else:  # listed by resume and again by the plan: the plan's entry goes
                    shown = display_path(path)
                    last = max(i for i, e in enumerate(run.report.errors) if e["path"] == shown)
                    del run.report.errors[last]
        self._resumed.clear()

    def _tidy(self) -> None:
        """Every shard committed and deleted: nothing to resume, so the folder's own files go too."""
        from . import shards

        if shards.pending(self.folder):
            return
        for name in (LEDGER, OWNER):
            (self.folder / name).unlink(missing_ok=True)
        if self.options.shard_dir is None:
            try:
                self.folder.rmdir()
            except OSError:
                pass

    def _ledger(self) -> set[str]:
        try:
            return set((self.folder / LEDGER).read_text().split())
        except FileNotFoundError:
            return set()

    # -- a run --------------------------------------------------------------------------------------

    def images(self, run: Run, work: Work) -> Generator[Batch, None, None]:
        if work.images:
            yield from self._pipeline(run, "image", work.images)

    def documents(self, run: Run, work: Work) -> Generator[Batch, None, None]:
        if work.documents:
            yield from self._pipeline(run, "document", work.documents)

    def close(self, run: Run) -> str | None:
        if self._started:
            self._ray.shutdown()
            self._started = False
        if self._ray is not None:
            self._tidy()
        return "ray: " + ", ".join(sorted(self._devices)) if self._devices else None

    def _connected(self) -> tuple[Any, _Shape]:
        """Ray, connected (started for this run where none was), and the cluster's shape."""
        if self._ray is None:
            ray = import_ray()
            self._prepare_folder()
            if not ray.is_initialized():
                _connect(ray, self.options.address)
                self._started = True
            self._ray = ray
        if self._shape is None:
            self._shape = _cluster_shape(self._ray)
        return self._ray, self._shape

    def _pipeline(self, run: Run, kind: str, tasks: list[Task]) -> Generator[Batch, None, None]:
        from . import ray_tasks

        ray, shape = self._connected()
        per_shard = self.options.image_shard_files if kind == "image" else self.options.document_shard_files
        lookup = self._lookup(ray)
        items = [_item(t) for t in tasks]
        blocks = max(1, math.ceil(len(items) / per_shard))
        ds = ray.data.from_items(items, override_num_blocks=blocks)
        bundle = str(self.bundle.path.resolve())
        manifest = self.bundle.manifest_sha256
        if kind == "image":
            # The memory a batch's pixels take, for the scheduler. (Stated, it also keeps Ray Data from fusing
            # the decoding into the actors: decoding is meant to spread over every CPU as tasks.)
            h, w = self.bundle.image_spec.size
            ds = ds.map_batches(ray_tasks.prepare_images, fn_kwargs={"spec": self.bundle.image_spec, "lookup": lookup},
                                batch_size=per_shard, batch_format="numpy", num_cpus=shape.decode_cpus,
                                memory=per_shard * 3 * h * w * 4)
            encoder: Any = ray_tasks.EncodeImages
        else:
            ds = ds.map_batches(ray_tasks.prepare_documents, fn_kwargs={"bundle_path": bundle,
                                                                        "manifest_sha256": manifest,
                                                                        "lookup": lookup,
                                                                        "max_chars": run.max_document_chars},
                                batch_size=per_shard, batch_format="numpy", num_cpus=shape.decode_cpus,
                                memory=per_shard * 2 * MAX_TEXT_BYTES)
            encoder = ray_tasks.EncodeDocuments
        ds = ds.map_batches(encoder, fn_constructor_kwargs={"bundle_path": bundle, "manifest_sha256": manifest,
                                                            "variant": self.variant, "device": self.encode_device,
                                                            "threads": shape.encode_threads,
                                                            "folder": str(self.folder)},
                            batch_size=per_shard, batch_format="numpy",
                            # Ray Data's actors restart on a lost node and their batch is retried.
                            compute=ray.data.ActorPoolStrategy(size=min(shape.actors, blocks)),
                            num_cpus=shape.encode_cpus, num_gpus=shape.encode_gpus)
        stream = iter(ds.iter_batches(batch_size=None, batch_format="numpy"))
        try:
            while True:
                try:
                    batch = next(stream)
                except StopIteration:
                    break
                except Exception as e:  # a task or actor that failed for good, a cluster that went away
                    raise _cluster_failed(e) from None
                for name, device in zip(batch["shard"], batch["device"]):
                    self._devices.add(str(device))
                    yield from self._shard(run, self.folder / str(name))
                    if run.cancelled():
                        return
        finally:
            close = getattr(stream, "close", None)
            if close is not None:
                close()

    def _lookup(self, ray: Any) -> Any:
        """The actor that tells the workers which contents the index holds already, on this node (where
        the catalog is), taking no CPU from the pool."""
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        from . import ray_tasks

        here = ray.get_runtime_context().get_node_id()
        actor = ray.remote(num_cpus=0, scheduling_strategy=NodeAffinitySchedulingStrategy(here, soft=False))
        return actor(ray_tasks.KnownContent).remote(str(self.index_folder))

    def _shard(self, run: Run, path: Path, resumed: bool = False) -> Generator[Batch, None, None]:
        """One shard's records, committed by the flow in one transaction as a local batch is; then noted in
        the ledger and deleted. A shard that cannot be read is left out: its files are indexed again."""
        from . import shards

        try:
            records = shards.read_shard(path, self.bundle.embedding_dim, self.bundle.manifest_sha256)
        except shards.ShardError as e:
            log.warning("%s; left out (its files are indexed again)", e)
            path.unlink(missing_ok=True)
            return
        yield list(records)
        with private.open_file(self.folder / LEDGER, "a") as f:
            f.write(path.name + "\n")
        path.unlink(missing_ok=True)
        if resumed:
            self._resumed.update({r.path: r.status != "error" for r in records if r.committed})
        else:
            for r in records:
                run.tick(r.path)


def _cluster_failed(e: Exception) -> MmsearchError:
    """What Ray raised, as one line that says nothing committed is lost (a task's own error is its cause)."""
    cause = getattr(e, "cause", None)
    why = first_line(cause if isinstance(cause, BaseException) else e)
    return MmsearchError(f"the Ray cluster could not finish the run ({why}); every shard it finished is committed: "
                         "fix the cause and run the same command to resume")


def _shard_entry(name: str) -> bool:
    return name.endswith(".parquet") or name.startswith(".tmp-") or name in (LEDGER, OWNER)


def _item(task: Task) -> dict[str, Any]:
    root_id, f, old = task
    return {"path": os.fsencode(f.path), "root_id": root_id, "size": f.size, "mtime_ns": f.mtime_ns,
            "planned_size": old.size if old else -1, "planned_mtime_ns": old.mtime_ns if old else -1,
            "planned_hash": (old.content_hash or "") if old else "", "planned_status": old.status if old else ""}


def _connect(ray: Any, address: str | None) -> None:
    from ..settings import current

    address = address or current().ray_address
    # The run's own report says what happened; Ray's progress lines and worker logs would bury it.
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    for name in ("ray", "ray.data"):
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False, configure_logging=False)
    except (ConnectionError, RuntimeError, ValueError) as e:
        where = address or "a new local Ray"
        raise MmsearchError(f"cannot reach the Ray cluster at {where} ({str(e).splitlines()[0]}); start it with "
                            "`ray start --head` or give its address with --ray-address HOST:PORT") from None


@dataclass(frozen=True)
class _Shape:
    actors: int  # the encoder pool: one per GPU, else one per node
    encode_cpus: float
    encode_gpus: float
    encode_threads: int  # onnxruntime threads in each actor: the CPUs it holds
    decode_cpus: float


def _cluster_shape(ray: Any) -> _Shape:
    """Size the actor pool and the tasks from the cluster's resources. On CPUs, each node's actor takes
    half of the smallest node and the decoding tasks the rest, so every node both decodes and
    encodes and no pool can take every CPU (the tasks that feed it would never run)."""
    nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
    cpus = [r.get("CPU", 0.0) for r in nodes if r.get("CPU", 0.0) > 0]
    gpus = int(sum(r.get("GPU", 0.0) for r in nodes))
    if not cpus:
        raise MmsearchError("the Ray cluster has no CPUs for the decoding tasks (start its nodes with --num-cpus)")
    smallest = min(cpus)
    decode = 1.0 if smallest >= 2 else 0.5
    if gpus:
        return _Shape(actors=gpus, encode_cpus=min(1.0, smallest / 2), encode_gpus=1, encode_threads=1,
                      decode_cpus=decode)
    half = max(0.5, smallest // 2 if smallest >= 2 else smallest / 2)
    return _Shape(actors=len(cpus), encode_cpus=half, encode_gpus=0, encode_threads=max(1, int(half)),
                  decode_cpus=decode)
