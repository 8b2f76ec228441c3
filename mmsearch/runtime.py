"""onnxruntime sessions: the one place that picks execution providers and falls back.

onnxruntime-gpu lists CUDAExecutionProvider even on a machine with no GPU or no CUDA libraries, so
"listed" proves nothing: we create the session and look at the providers it actually got.
"""

from __future__ import annotations

import contextlib
import glob
import logging
import os
import shutil
import sys
import time
from functools import lru_cache
from pathlib import Path
from typing import Any

from . import private, settings
from .errors import MmsearchError, first_line

try:
    import onnxruntime as ort
except ImportError as e:  # mmsearch was installed without its [cpu] or [gpu] extra
    raise MmsearchError(
        "onnxruntime is not installed. Install mmsearch with the build for this machine:\n"
        "  pip install 'mmsearch[cpu]'     (any machine)\n  pip install 'mmsearch[gpu]'     (an NVIDIA GPU)"
    ) from e

log = logging.getLogger("mmsearch")

DEVICES = ("auto", "cpu", "cuda")


class DeviceError(MmsearchError):
    """--device cuda was asked for and CUDA does not work here."""


@lru_cache(maxsize=1)
def _preload_cuda_libraries() -> None:
    # onnxruntime-gpu >= 1.21 can load CUDA/cuDNN from the nvidia-* pip wheels (torch's, say).
    # It prints what it cannot find; we report CUDA's state ourselves, in one line.
    preload = getattr(ort, "preload_dlls", None)
    if preload is not None:
        with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):
            try:
                preload()
            except Exception:  # nothing to preload is fine: the system libraries may be there
                pass


def _no_gpu_reason() -> str | None:
    """A cheap reason CUDA cannot work, checked before paying for a CUDA session attempt."""
    if not cuda_listed():
        return "this onnxruntime has no CUDA provider; install onnxruntime-gpu on a machine with an NVIDIA GPU"
    if not _nvidia_device_present():
        return "no NVIDIA GPU on this machine (no /dev/nvidia* device)"
    return None


def _nvidia_device_present() -> bool:
    # Only Linux says so cheaply; elsewhere a CUDA session attempt is the test.
    return not sys.platform.startswith("linux") or bool(glob.glob("/dev/nvidia[0-9]*"))


@contextlib.contextmanager
def _quiet_onnxruntime():
    """onnxruntime logs a screenful when its CUDA provider fails to load; we say it in one line."""
    ort.set_default_logger_severity(4)
    try:
        yield
    finally:
        ort.set_default_logger_severity(2)


def cuda_listed() -> bool:
    return "CUDAExecutionProvider" in ort.get_available_providers()


def _cpu_threads() -> int:
    threads = settings.current().threads
    if threads:
        return threads
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


def session_options(threads: int | None = None, *, spinning: bool = True, prepack: bool = True) -> ort.SessionOptions:
    """spinning=False: onnxruntime's worker threads sleep between ops instead of busy-waiting. The
    image tower runs that way during an index run, where decode threads need the same cores
    (benchmarks/ingest.py: 2 cores, 4000x3000 JPEGs, 10.4-12.0 images/s without spinning vs 8.6-8.9 with).

    prepack=False: weights stay as loaded (memory-mapped from the cache) instead of being repacked for
    faster matrix kernels. ViT-B/32 int8 text tower, 2 cores: the session opens in 27 ms instead of
    56, and a one-text query costs 3.3 ms instead of 2.0 - the trade a query-only index wants."""
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.intra_op_num_threads = threads or _cpu_threads()
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3  # errors only: a failed CUDA load is reported by us, once
    spin = settings.current().ort_spin  # a benchmark knob, overrides the caller
    if spin is not None:
        spinning = spin
    opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    if not prepack:
        opts.add_session_config_entry("session.disable_prepacking", "1")
    return opts


def run_in_batches(session: ort.InferenceSession, output: str, feeds: dict[str, Any], max_batch: int | None) -> Any:
    """One output of session.run, the inputs given at most max_batch at a time (None: all at once; 1:
    a tower frozen at batch 1, the manifest's max_batch)."""
    import numpy as np

    n = len(next(iter(feeds.values())))
    if not max_batch or n <= max_batch:
        return session.run([output], feeds)[0]
    return np.concatenate([session.run([output], {k: v[i : i + max_batch] for k, v in feeds.items()})[0]
                           for i in range(0, n, max_batch)])


def expected_device(device: str) -> str:
    """The device a session will most likely get, without creating one (to pick the variant)."""
    if device == "cpu" or _cuda_unusable_reason():
        return "cpu"
    return "cuda"


def create_session(
    path: Path, device: str = "auto", *, threads: int | None = None, spinning: bool = True, prepack: bool = True
) -> tuple[ort.InferenceSession, str]:
    """Open one ONNX graph; returns the session and the device it really runs on ("cuda"/"cpu").

    device="auto" tries CUDA when onnxruntime lists it and falls back to the CPU with one log line;
    device="cuda" raises DeviceError when CUDA does not really work.
    """
    if device not in DEVICES:
        raise ValueError(f"device must be one of {', '.join(DEVICES)}, not {device!r}")
    opts = session_options(threads, spinning=spinning, prepack=prepack)
    if device in ("auto", "cuda"):
        reason = _cuda_unusable_reason()
        if reason is None:
            _preload_cuda_libraries()
            cuda = ("CUDAExecutionProvider", {"cudnn_conv_algo_search": "HEURISTIC"})
            try:
                with _quiet_onnxruntime():
                    session = ort.InferenceSession(str(path), opts, providers=[cuda, "CPUExecutionProvider"])
                if session.get_providers()[0] == "CUDAExecutionProvider":
                    return session, "cuda"
                reason = "onnxruntime could not load its CUDA provider (driver or CUDA 13/cuDNN 9 libraries missing)"
            except Exception as e:  # a broken CUDA install raises rather than falling back
                reason = f"onnxruntime's CUDA provider failed: {first_line(e)}"
            _CUDA_FAILURE.append(reason)
        if device == "cuda":
            raise DeviceError(f"--device cuda: {reason}")
        # "auto" on a machine without an NVIDIA GPU says nothing (the CPU is the normal case there,
        # even with onnxruntime-gpu installed); one with a GPU that CUDA cannot use says why, once.
        if cuda_listed() and _nvidia_device_present() and not _CUDA_WARNED:
            _CUDA_WARNED.append(True)
            log.info("CUDA is not usable here (%s); running on the CPU", reason)
    return _cpu_session(path, opts, spinning, prepack), "cpu"


# onnxruntime's NCHWc layout transformer (a CPU optimisation of float32 graphs) crashed the process while
# opening float16 towers whose batch was traced (models/batching.py): fp16 files run on the CPU without it
# (`--variant fp16 --device cpu`, or fp16 asked for where CUDA then failed).
FP16_CPU_DISABLED_OPTIMIZERS = ("NchwcTransformer",)


def _cpu_session(path: Path, opts: ort.SessionOptions, spinning: bool, prepack: bool) -> ort.InferenceSession:
    """A CPU session, its graph optimisations done once: the optimised graph is cached (per model file,
    onnxruntime version and CPU, as onnxruntime asks: ENABLE_ALL output holds CPU-specific layouts) and
    later sessions load it with optimisation off. The cached weights sit in a file of their own, which
    onnxruntime memory-maps instead of parsing and copying: a ViT-B/32 int8 text tower opens in about
    half the time (benchmarks/query.py). Any cache trouble falls back to the plain load."""
    disabled = list(FP16_CPU_DISABLED_OPTIMIZERS) if ".fp16." in path.name else []
    entry = _optimized_cache_path(path, opts)
    if entry is not None and (entry / CACHED_MODEL).is_file():
        fast = session_options(opts.intra_op_num_threads, spinning=spinning, prepack=prepack)
        fast.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        try:
            session = ort.InferenceSession(str(entry / CACHED_MODEL), fast, providers=["CPUExecutionProvider"])
            with contextlib.suppress(OSError):
                os.utime(entry)  # the cache is pruned least recently used first
            return session
        except Exception as e:  # a damaged or foreign cache entry: drop it, optimise again
            log.debug("%s: cached optimised graph unusable (%s)", entry, e)
            shutil.rmtree(entry, ignore_errors=True)
    tmp = None
    if entry is not None:
        try:
            tmp = entry.with_name(f"{entry.name}.tmp-{os.getpid()}")
            shutil.rmtree(tmp, ignore_errors=True)
            private.claim(entry.parent.parent, "cache")  # 0700, an old cache made private
            private.make_folder(tmp)
            opts.optimized_model_filepath = str(tmp / CACHED_MODEL)
            opts.add_session_config_entry("session.optimized_model_external_initializers_file_name", CACHED_WEIGHTS)
            opts.add_session_config_entry("session.optimized_model_external_initializers_min_size_in_bytes", "1024")
        except (OSError, private.NotOwnerError):
            tmp = None
    try:
        session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"], disabled_optimizers=disabled)
    except Exception:
        if tmp is None:
            raise
        # e.g. the cache folder is not writable: load without saving
        shutil.rmtree(tmp, ignore_errors=True)
        plain = session_options(opts.intra_op_num_threads, spinning=spinning, prepack=prepack)
        session = ort.InferenceSession(str(path), plain, providers=["CPUExecutionProvider"], disabled_optimizers=disabled)
        tmp = None
    if tmp is not None and entry is not None:
        try:
            private.seal(tmp)  # onnxruntime wrote its files with the umask's mode
            tmp.rename(entry)  # whole entry at once; another process may have won the race: keep theirs
            _prune_cache(entry)
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
    return session


# One cache entry = a folder: the optimised graph and, beside it, its weights (memory-mapped on load).
CACHED_MODEL, CACHED_WEIGHTS = "model.onnx", "weights.bin"
ORT_CACHE_BYTES = 2 * 1024**3


def _prune_cache(new: Path) -> None:
    """Keep the optimised-graph cache bounded: drop the older entries of the same model file (it was
    re-exported or onnxruntime was upgraded), then the least recently used beyond ORT_CACHE_BYTES."""
    same_file = new.name.rsplit(".", 1)[0] + "."  # "{stem}.{path digest}."
    entries = []
    for entry in new.parent.iterdir():
        if entry == new:
            continue
        if ".tmp-" in entry.name:  # another process's, being written, or left by a crash a while ago
            with contextlib.suppress(OSError):
                if time.time() - entry.stat().st_mtime > 3600:
                    _remove(entry)
            continue
        if entry.name.startswith(same_file) or not entry.is_dir():
            _remove(entry)
            continue
        try:
            entries.append((entry.stat().st_mtime, sum(f.stat().st_size for f in entry.iterdir()), entry))
        except OSError:
            continue
    total = sum(f.stat().st_size for f in new.iterdir())
    for _, size, entry in sorted(entries, reverse=True):
        total += size
        if total > ORT_CACHE_BYTES:
            _remove(entry)


def _remove(entry: Path) -> None:
    if entry.is_dir():
        shutil.rmtree(entry, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            entry.unlink()


def _optimized_cache_path(path: Path, opts: ort.SessionOptions) -> Path | None:
    if not settings.current().ort_cache or opts.graph_optimization_level == ort.GraphOptimizationLevel.ORT_DISABLE_ALL:
        return None
    try:
        st = os.stat(path)
    except OSError:
        return None
    import hashlib

    from .paths import cache_dir

    where = hashlib.sha256(os.path.abspath(path).encode()).hexdigest()[:12]
    key = "|".join(map(str, (st.st_size, st.st_mtime_ns, ort.__version__, int(opts.graph_optimization_level),
                             cpu_identity())))
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return cache_dir() / "ort" / f"{Path(path).stem}.{where}.{digest}"


@lru_cache(maxsize=1)
def cpu_identity() -> str:
    """The CPU as the optimised-graph cache and the int8 check (int8_check.py) tell CPUs apart:
    /proc/cpuinfo's model name and flags, and the instruction sets CPUID reports to this process,
    which onnxruntime's kernels and layouts follow (the patch embedding's Conv is stored in blocks of
    16 channels with AVX-512, 8 with AVX2). The two differ under an emulator, which passes the host's
    /proc/cpuinfo through: an image tower optimised with AVX-512 and loaded under an emulated
    AVX2-only CPU gave vectors at cosine -0.31 from fp32's."""
    import platform

    cpuid = "cpuid: " + " ".join(cpuid_features())
    try:
        with open("/proc/cpuinfo") as f:
            wanted = [line.strip() for line in f if line.startswith(("model name", "flags"))][:2]
        if wanted:
            return ";".join(wanted + [cpuid])
    except OSError:
        pass
    return f"{platform.machine()};{platform.processor()};{cpuid}"


@lru_cache(maxsize=1)
def cpuid_features() -> tuple[str, ...]:
    """The instruction-set extensions CPUID reports to this process: numpy's runtime dispatch table."""
    import numpy as np

    core = getattr(np, "_core", None) or getattr(np, "core")
    features = getattr(core._multiarray_umath, "__cpu_features__", {})
    return tuple(sorted(name for name, present in features.items() if present))


# Reasons CUDA failed in this process: once it has failed, later sessions skip the slow attempt.
_CUDA_FAILURE: list[str] = []
_CUDA_WARNED: list[bool] = []


def _cuda_unusable_reason() -> str | None:
    """Why CUDA cannot work here, as far as is known without trying: an earlier failure in this
    process, or a cheap check; None when it is worth a session attempt."""
    return _CUDA_FAILURE[0] if _CUDA_FAILURE else _no_gpu_reason()


def cuda_works() -> tuple[bool, str]:
    """For `mmsearch doctor`: can a CUDA session really be created here? (True, "") or (False, why)."""
    reason = _cuda_unusable_reason()
    if reason:
        return False, reason
    # A one-node graph (Identity) in ONNX's protobuf wire format, so that no `onnx` import is needed.
    _preload_cuda_libraries()
    try:
        with _quiet_onnxruntime():
            session = ort.InferenceSession(
                _identity_model(), session_options(1), providers=["CUDAExecutionProvider", "CPUExecutionProvider"]
            )
    except Exception as e:
        return False, first_line(e)
    if session.get_providers()[0] != "CUDAExecutionProvider":
        return False, "onnxruntime could not load its CUDA provider (driver or CUDA 13/cuDNN 9 libraries missing)"
    return True, ""


def _identity_model() -> bytes:
    """A serialized ModelProto: y = Identity(x), x float[1], opset 13, ir_version 7."""

    def varint(n: int) -> bytes:
        out = bytearray()
        while True:
            b = n & 0x7F
            n >>= 7
            out.append(b | (0x80 if n else 0))
            if not n:
                return bytes(out)

    def field(num: int, payload: bytes) -> bytes:  # length-delimited field
        return varint(num << 3 | 2) + varint(len(payload)) + payload

    def int_field(num: int, value: int) -> bytes:
        return varint(num << 3) + varint(value)

    dim = field(1, int_field(1, 1))  # TensorShapeProto.dim { dim_value: 1 }
    tensor_type = field(1, int_field(1, 1) + field(2, dim))  # TypeProto.Tensor {elem_type FLOAT, shape}

    def value_info(name: str) -> bytes:
        return field(1, name.encode()) + field(2, tensor_type)

    node = field(1, b"x") + field(2, b"y") + field(4, b"Identity")
    graph = field(1, node) + field(2, b"g") + field(11, value_info("x")) + field(12, value_info("y"))
    opset = field(8, int_field(2, 13))
    return int_field(1, 7) + field(7, graph) + opset
