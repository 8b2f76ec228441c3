"""A ready ONNX model (models/layouts.py) made into a bundle (bundle.py), validated against the graph it
came from, without torch.

For each tower: the pulled graph is rewritten to the bundle's interface (models/graphs.py); where it
was exported at batch 1, a batch of inputs is run against the same inputs one at a time, and the
first rewrite that agrees is kept ("dynamic", then "reshape", then "trace": the batch followed through
the graph, models/batching.py); none: the tower runs one input at a time (the manifest's max_batch 1). A text tower that takes any length is run padded and unpadded:
"longest" padding where the two agree, else "max_length". Then the variants: attention fused where
onnxruntime's optimizer can (the counts go to the manifest), fp16 for CUDA and int8 for the CPU
(models/variants.py, the export step's settings).

The gates (models/gates.py, the export step's bars), each variant run as the runtime runs it (batches
of 16, or one at a time) on 64 captioned images and 80 texts, against the pulled fp32 graph run one
input at a time, its outputs normalised: fp32 >= 0.99999, fp16 >= 0.999, int8 >= 0.98 plus text->image
top-1 agreement; and for every variant a batch against the same inputs one at a time. fp32 must pass
(else nothing is installed); an fp16 or int8 variant that misses its bar is left out, and the manifest
says why (the runtime then uses fp32).
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from .. import arguments, paths
from ..runtime import FP16_CPU_DISABLED_OPTIMIZERS
from ..bundle import FORMAT_VERSION, MANIFEST, REFERENCES, Bundle, load_bundle, sha256_file
from ..errors import MmsearchError, first_line
from . import gates, graphs
from .batching import BatchTraceError
from .layouts import IMMICH, LayoutError, Source, read_source

N_IMAGES = 64  # captioned images (the top-1 check runs over their captions)
N_PROBE = 3  # inputs of the batch-versus-single proof that picks the batch rewrite
N_BATCH_CHECK = 8  # inputs of the batch-versus-single check of each variant
BATCH = 16  # the runtime's batches are larger; 16 is enough to prove a batch right
LONG_TEXT = ("a very long description of a busy street at night with many cars, bicycles, people walking, shops "
             "with bright signs, wet asphalt reflecting the lights, a bus stop, trees along the pavement, a dog on "
             "a leash, a child holding a balloon, and tall buildings in the distance under a cloudy sky")

Say = Callable[[str], None]


class GateError(MmsearchError):
    """A variant that missed its bar; the message names the variant, the tower, the figure and the bar."""


class ModelExists(MmsearchError):
    """A bundle of that name is installed already (from another source or commit)."""


# -- entry points ---------------------------------------------------------------------------------------


def pull(model: str, *, revision: str | None = None, name: str | None = None, progress: Say | None = None,
         bars: bool = True, force: bool = False, models_dir: Path | None = None, plan: Any = None) -> Path:
    """Download `model` (a catalogue short name or a hub repo id) and install it as a bundle under
    models_dir (default $MMSEARCH_HOME/models) as `name` (default: the short name, else the repo's
    name). A bundle of that name from the same commit is kept as it is; from another source, it is
    replaced only with force. `bars`: huggingface_hub's progress bars. `plan`: hub.plan's answer for
    this repository and revision, where the caller asked already."""
    from . import catalogue, hub

    say = progress or (lambda _m: None)
    entry = catalogue.find(model)
    repo = entry.repo if entry else arguments.hub_repo_id(model)
    name = arguments.model_name(name) if name else (entry.name if entry else repo.split("/")[-1])
    target = (models_dir or paths.models_dir()) / name
    plan = plan or hub.plan(repo, revision)
    for note in plan.notes:
        say(note)
    if _same_source(target, repo, plan.commit) and not force:
        say(f"{name} is installed already from {repo} at {plan.commit[:12]}: nothing to do")
        return target
    _check_free(target, force)
    if plan.cached_folder is None:
        say(f"downloading {repo} at {plan.commit[:12]} ({plan.layout} layout): {len(plan.files)} files, "
            f"{plan.total_bytes / 1e6:.1f} MB (files already in the Hugging Face cache are not fetched again)")
    t0 = time.perf_counter()
    folder, checked = hub.fetch(plan, progress=bars)
    seconds = time.perf_counter() - t0
    say(f"{len(checked)} files checked against the hub's checksums ({seconds:.1f}s)")
    source = read_source(folder, [f.path for f in plan.files], label=repo)
    provenance = {"repo": repo, "revision": revision, "commit": plan.commit, "files": checked,
                  "download_seconds": round(seconds, 1)}
    try:
        return build_bundle(source, target, name=name, label=repo, provenance=provenance, say=say, overwrite=force)
    except ModelExists:
        if _same_source(target, repo, plan.commit):  # another pull of the same model finished first
            return target
        raise


def import_folder(folder: str | os.PathLike[str], *, name: str | None = None, progress: Say | None = None,
                  force: bool = False, models_dir: Path | None = None) -> Path:
    """Install a folder in either layout (a clone or download of a hub repository) as a bundle."""
    say = progress or (lambda _m: None)
    src = Path(arguments.user_path(folder))
    if not src.is_dir():
        raise LayoutError(f"{src}: no such folder")
    name = arguments.model_name(name) if name else arguments.model_name(src.name)
    target = (models_dir or paths.models_dir()) / name
    _check_free(target, force)
    if (src / "manifest.json").is_file():
        return _install_bundle(src, target, say=say, overwrite=force)
    source = read_source(src)
    files = {}
    for rel in source.files:
        path = src / rel
        files[rel] = {"sha256": sha256_file(path), "bytes": path.stat().st_size}
    provenance = {"folder": str(src), "files": files}
    return build_bundle(source, target, name=name, label=str(src), provenance=provenance, say=say, overwrite=force)


def _install_bundle(src: Path, target: Path, *, say: Say, overwrite: bool) -> Path:
    """An mmsearch bundle (a manifest and the files it lists, from `mmsearch export`, a pull elsewhere or
    a source checkout's tests/fixtures/toyclip): every file checked against the manifest's checksums,
    then copied in as it is, so indexes built with it elsewhere accept this copy."""
    try:
        bundle = load_bundle(src)
        bundle.verify_all()
    except MmsearchError as e:
        raise LayoutError(f"{src}: an mmsearch bundle that does not check out: {e}") from None
    paths.make_parents(target)
    staging = target.parent / f".{target.name}.partial-{uuid.uuid4().hex[:8]}"
    try:
        staging.mkdir()
        for rel in [MANIFEST, *bundle.listed_files()]:
            (staging / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src / rel, staging / rel)
        _move_into_place(staging, target, overwrite)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    say(f"installed {target} (the mmsearch bundle {bundle.name}, checked against its manifest)")
    return target


def _same_source(target: Path, repo: str, commit: str) -> bool:
    try:
        manifest = load_bundle(target).manifest
    except MmsearchError:
        return False
    pulled = manifest.get("pulled") or {}
    return pulled.get("repo") == repo and pulled.get("commit") == commit


def _check_free(target: Path, force: bool) -> None:
    if target.exists() and any(target.iterdir()) and not force:
        raise ModelExists(f"{target}: a model named '{target.name}' is installed already; give another --name, "
                          "or --force to replace it")


# -- the bundle ---------------------------------------------------------------------------------------


def build_bundle(source: Source, out: Path, *, name: str, label: str, provenance: dict[str, Any], say: Say,
                 overwrite: bool = False) -> Path:
    """Write the bundle for `source` at `out`: built in a hidden folder beside it and renamed into place
    once complete, so nothing half-made is ever installed."""
    paths.make_parents(out)
    staging = out.parent / f".{out.name}.partial-{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    try:
        _Builder(source, staging, name=name, label=label, provenance=provenance, say=say).run()
        _move_into_place(staging, out, overwrite)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    say(f"installed {out}")
    return out


def _move_into_place(staging: Path, out: Path, overwrite: bool) -> None:
    if out.exists():
        if out.is_dir() and not any(out.iterdir()):
            out.rmdir()
        elif overwrite:  # the old bundle aside, the new one in, then the old one dropped
            old = out.parent / f".{out.name}.old-{uuid.uuid4().hex[:8]}"
            os.replace(out, old)
            os.replace(staging, out)
            shutil.rmtree(old, ignore_errors=True)
            return
        else:
            raise ModelExists(f"{out}: a model of that name appeared meanwhile; nothing was replaced")
    os.replace(staging, out)


class _Builder:
    def __init__(self, source: Source, dst: Path, *, name: str, label: str, provenance: dict[str, Any], say: Say):
        self.source, self.dst, self.name, self.label, self.provenance, self.say = (
            source, dst, name, label, provenance, say)
        self.scratch = dst / ".scratch"
        self.scratch.mkdir()
        self.conversion: dict[str, dict[str, Any]] = {}
        self.left_out: dict[str, str] = {}

    # the order of the work
    def run(self) -> None:
        t0 = time.perf_counter()
        src = self.source
        self.say(f"reading {self.label} ({src.layout} layout, {src.family})")
        self._write_tokenizer()
        self.image_section = {"input": "pixel_values", "output": "image_embeds", **src.image_spec}
        self.text_section: dict[str, Any] = {
            "inputs": list(src.text.inputs), "output": "text_embeds", "context_length": src.context_length,
            "padding": src.padding or "longest", "pad_id": src.pad_id, "tokenizer": "tokenizer.json"}
        if src.clean:
            self.text_section["clean"] = src.clean
        self.sessions: dict[str, Any] = {t: _cpu_session(src.folder / getattr(src, t).file) for t in ("image", "text")}
        if src.padding is None:
            self._decide_padding()
        self._prepare_inputs()

        fp32_plain: dict[str, Path] = {}
        for tower in ("image", "text"):
            fp32_plain[tower] = self._adapt(tower)
        files: dict[str, dict[str, Path]] = {v: {} for v in ("fp32", "fp16", "int8")}
        fused: dict[str, dict[str, dict[str, int]]] = {v: {} for v in ("fp32", "fp16", "int8")}
        figures: dict[str, dict[str, Any]] = {}
        from .variants import optimize, to_fp16, to_int8

        for tower in ("image", "text"):
            self.say(f"fusing the {tower} tower")
            path = self.dst / f"{tower}.fp32.onnx"
            model_type = self.source.text_model_type if tower == "text" else "clip"
            t = getattr(self.source, tower)
            known = t.heads > 0 and t.hidden > 0 and t.hidden % t.heads == 0
            try:
                counts = optimize(fp32_plain[tower], path, model_type=model_type, num_heads=t.heads if known else 0,
                                  hidden_size=t.hidden if known else 0, shape_inference=False)
                self._gate_fp32(tower, path)  # fusion must not change the vectors
                self.conversion[tower]["fusion"] = (f"onnxruntime transformer optimizer, model_type {model_type}, "
                                                    + (f"{t.heads} heads, hidden size {t.hidden}" if known else
                                                       "heads and hidden size from the graph"))
            except Exception as e:  # the optimizer fails on graphs it does not know, or changed the vectors
                why = first_line(e)
                shutil.copyfile(fp32_plain[tower], path)
                counts = _op_counts(path)
                self.conversion[tower]["fusion"] = f"none ({why})"
            files["fp32"][tower], fused["fp32"][tower] = path, counts
            self.say(f"{tower} tower: " + (", ".join(f"{k} {v}" for k, v in counts.items()) or "nothing fused"))
            self.say(f"converting the {tower} tower to fp16 and int8")
            for variant, make, start in (("fp16", lambda a, b: to_fp16(a, b, shape_inference=False), path),
                                         ("int8", to_int8, fp32_plain[tower])):
                files[variant][tower] = self.dst / f"{tower}.{variant}.onnx"
                try:
                    fused[variant][tower] = make(start, files[variant][tower])
                except Exception as e:  # a converter that fails on this graph costs the variant, not the model
                    self.left_out.setdefault(variant, f"{tower} tower: the conversion failed "
                                                      f"({type(e).__name__}: {first_line(e)})")

        for variant in ("fp32", "fp16", "int8"):
            if variant in self.left_out:
                self._leave_out(variant, files[variant])
                continue
            self.say(f"validating {variant} against the pulled fp32 graph")
            try:
                figures[variant] = self._validate(variant, files[variant])
            except GateError as e:
                if variant == "fp32":
                    raise
                self.left_out[variant] = str(e)
                self._leave_out(variant, files[variant])
                continue
            got = figures[variant]
            agree = got["batch_vs_single_min_cosine"]
            self.say(f"validated {variant} on {got['device']}: min cosine image {got['image_min_cosine']:.6f}, "
                     f"text {got['text_min_cosine']:.6f} (bar {got['min_cosine_bar']})"
                     + ("" if agree is None else f", a batch vs single calls {agree:.6f}"))
        shutil.rmtree(self.scratch, ignore_errors=True)
        self.say("writing the int8 check's references (a few inputs with the fp32 outputs)")
        references = self._write_references(files["fp32"])
        self._write_manifest(files, fused, figures, references, time.perf_counter() - t0)

    def _leave_out(self, variant: str, files: dict[str, Path]) -> None:
        """A variant that missed its bar or could not be made: not installed; the runtime uses fp32."""
        self.say(f"{variant} left out: {self.left_out[variant]}")
        for path in files.values():
            path.unlink(missing_ok=True)

    # tokenizer ---------------------------------------------------------------------------------------

    def _write_tokenizer(self) -> None:
        """The source's tokenizer.json, without its own padding and truncation (the runtime sets them
        from the manifest); for immich, with immich's clean_text in front as normalizers: whitespace
        runs to one space, trimmed, and for "canonicalize" punctuation removed and lower case
        (immich_ml/models/transforms.py clean_text)."""
        from tokenizers import Regex, Tokenizer, normalizers

        tok = Tokenizer.from_file(str(self.source.folder / self.source.tokenizer))
        tok.no_padding()
        tok.no_truncation()
        if self.source.layout == IMMICH:
            steps = [normalizers.Replace(Regex(r"\s+"), " "), normalizers.Strip()]
            if self.source.clean == "canonicalize":
                punctuation = "".join("\\" + c for c in "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")
                steps += [normalizers.Replace(Regex(f"[{punctuation}]"), ""), normalizers.Lowercase()]
            if tok.normalizer is not None:
                steps.append(tok.normalizer)
            tok.normalizer = normalizers.Sequence(steps)
        tok.save(str(self.dst / "tokenizer.json"))

    def _bundle(self) -> Bundle:
        """The bundle as the runtime will read it (for the tokenizer and the preprocessing)."""
        return Bundle(self.dst, {"name": self.name, "image": self.image_section, "text": self.text_section}, "")

    def _tokenizer(self, padding: str | None = None, length: int | None = None) -> Any:
        from ..encoder import load_tokenizer

        tok = load_tokenizer(self._bundle())
        if padding == "none":
            tok.no_padding()
        elif length:
            tok.enable_padding(pad_id=self.source.pad_id, length=length)
        return tok

    # inputs ------------------------------------------------------------------------------------------

    def _prepare_inputs(self) -> None:
        from ..int8_check import REFERENCE_TEXTS
        from ..preprocess import preprocess_image

        spec = self._bundle().image_spec
        pairs = gates.captioned_images(N_IMAGES, max(spec.size), seed=0)
        self.pixels = np.stack([preprocess_image(img, spec) for img, _ in pairs]).astype(np.float32)
        self.texts = [caption for _, caption in pairs] + list(REFERENCE_TEXTS) + [LONG_TEXT]
        self.n_captions = len(pairs)
        # the text feeds as the runtime makes them: batches of BATCH padded as the manifest says
        tok = self._tokenizer()
        self.text_batches = [self._encode(tok, self.texts[i : i + BATCH]) for i in range(0, len(self.texts), BATCH)]
        singles_tok = self._tokenizer()
        self.text_singles = [self._encode(singles_tok, [t]) for t in self.texts]
        self.image_ref = self._reference("image")
        self.text_ref = self._reference("text")

    def _encode(self, tok: Any, texts: list[str]) -> dict[str, np.ndarray]:
        encodings = tok.encode_batch(texts)
        feeds = {"input_ids": np.asarray([e.ids for e in encodings], dtype=np.int64)}
        if "attention_mask" in self.text_section["inputs"]:
            feeds["attention_mask"] = np.asarray([e.attention_mask for e in encodings], dtype=np.int64)
        return feeds

    def _source_feeds(self, tower: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The bundle's feeds under the source graph's names and dtypes (zeros where it wants more)."""
        t = getattr(self.source, tower)
        session = self.sessions[tower]
        types = {i.name: i.type for i in session.get_inputs()}
        out = {}
        for ours, theirs in t.inputs.items():
            out[theirs] = feeds[ours].astype(np.int32 if types[theirs] == "tensor(int32)" else feeds[ours].dtype)
        for name in t.zero_inputs:
            out[name] = np.zeros_like(feeds["input_ids"], dtype=np.int32 if types[name] == "tensor(int32)" else np.int64)
        return out

    def _run_source(self, tower: str, feeds: dict[str, np.ndarray]) -> np.ndarray:
        t = getattr(self.source, tower)
        return self.sessions[tower].run([t.output], self._source_feeds(tower, feeds))[0].astype(np.float32)

    def _reference(self, tower: str) -> np.ndarray:
        """The pulled fp32 graph's outputs, one input at a time (as immich runs it), normalised; and
        whether the source normalises them itself (its outputs already unit length)."""
        if tower == "image":
            raw = np.concatenate([self._run_source("image", {"pixel_values": self.pixels[i : i + 1]})
                                  for i in range(len(self.pixels))])
        else:
            raw = np.concatenate([self._run_source("text", feeds) for feeds in self.text_singles])
        norms = np.linalg.norm(raw, axis=1)
        if not np.isfinite(raw).all() or (norms == 0).any():
            raise GateError(f"{getattr(self.source, tower).file}: the pulled {tower} tower gives non-finite or zero "
                            "vectors on the validation inputs")
        self.conversion.setdefault(tower, {})
        self.conversion[tower]["normalised"] = ("by the source graph" if np.abs(norms - 1).max() < 1e-4
                                                else "added (the source's outputs are not unit length)")
        return raw / norms[:, None]

    def _decide_padding(self) -> None:
        """A text tower that takes any length: "longest" padding where ids padded to the context give
        the same vectors as the same ids unpadded (the source graph, one text at a time)."""
        from ..int8_check import REFERENCE_TEXTS

        texts = list(REFERENCE_TEXTS[:8]) + [LONG_TEXT]
        tight, padded = self._tokenizer(padding="none"), self._tokenizer(length=self.source.context_length)
        a = np.concatenate([self._run_source("text", self._encode(tight, [t])) for t in texts])
        b = np.concatenate([self._run_source("text", self._encode(padded, [t])) for t in texts])
        worst = float(gates.cosines(a, b).min())
        self.text_section["padding"] = "longest" if worst >= gates.PADDING_MIN_COSINE else "max_length"
        self.padding_figure = round(worst, 7)
        self.say(f"text padding: {self.text_section['padding']} (padded vs unpadded min cosine {worst:.6f})")

    # the batch dimension ---------------------------------------------------------------------------

    def _adapt(self, tower: str) -> Path:
        """The source graph with the bundle's interface, batch rewrite proven (see the module docstring)."""
        t = getattr(self.source, tower)
        src = self.source.folder / t.file
        first = next(i for i in self.sessions[tower].get_inputs() if i.name == next(iter(t.inputs.values())))
        frozen = first.shape[0] == 1
        normalise = self.conversion[tower]["normalised"].startswith("added")
        self.conversion[tower].update({
            "source_file": t.file,
            "source_inputs": {i.name: f"{i.type[7:-1]} {list(i.shape)}" for i in self.sessions[tower].get_inputs()},
            "source_output": t.output,
        })
        tried = []
        for mode in (("dynamic", "reshape", "trace") if frozen else ("dynamic",)):
            try:
                model, changed = graphs.adapt(src, tower, t, normalise=normalise, batch=mode)
            except BatchTraceError as e:
                tried.append(f"trace: {e}")
                continue
            if mode == "reshape" and not changed:
                tried.append("reshape: no Reshape holds a batch of 1")
                continue
            path = graphs.save(model, self.scratch / f"{tower}.{mode}.onnx")
            del model
            ok, why = self._batch_agrees(tower, path)
            if ok:
                self.conversion[tower]["batch"] = ("dynamic in the source" if not frozen else
                                                   f"made dynamic ({mode}): a batch of {N_PROBE} equals {N_PROBE} "
                                                   "single calls")
                self.say(f"{tower} tower: takes batches" + ("" if not frozen else f" (rewrite '{mode}', proven)"))
                return path
            tried.append(f"{mode}: {why}")
        model, _ = graphs.adapt(src, tower, t, normalise=normalise, batch="fixed")
        path = graphs.save(model, self.scratch / f"{tower}.fixed.onnx")
        section = self.image_section if tower == "image" else self.text_section
        section["max_batch"] = 1
        self.conversion[tower]["batch"] = "one input at a time (the graph is frozen at batch 1; " + "; ".join(tried) + ")"
        self.say(f"{tower} tower: frozen at batch 1, runs one input at a time ({'; '.join(tried)})")
        return path

    def _batch_agrees(self, tower: str, path: Path) -> tuple[bool, str]:
        try:
            session = _cpu_session(path)
            feeds = self._feeds(tower, slice(0, N_PROBE))
            batch = session.run([graphs.OUTPUTS[tower]], feeds)[0]
            single = np.concatenate([session.run([graphs.OUTPUTS[tower]], one)[0] for one in self._single_feeds(
                tower, range(N_PROBE))])
        except Exception as e:
            return False, f"a batch of {N_PROBE} fails ({_ort_failure(e)})"
        worst = float(gates.cosines(batch, single).min())
        if not worst >= gates.MIN_COSINE["fp32"]:
            return False, f"a batch of {N_PROBE} differs from single calls (min cosine {worst:.6f})"
        return True, ""

    def _feeds(self, tower: str, which: slice) -> dict[str, np.ndarray]:
        if tower == "image":
            return {"pixel_values": self.pixels[which]}
        return self._encode(self._tokenizer(), self.texts[which])

    def _single_feeds(self, tower: str, which: range) -> list[dict[str, np.ndarray]]:
        if tower == "image":
            return [{"pixel_values": self.pixels[i : i + 1]} for i in which]
        return [self.text_singles[i] for i in which]

    # the gates ---------------------------------------------------------------------------------------

    def _run(self, session: Any, tower: str) -> np.ndarray:
        from ..runtime import run_in_batches

        section = self.image_section if tower == "image" else self.text_section
        out = graphs.OUTPUTS[tower]
        if tower == "image":
            return np.concatenate([run_in_batches(session, out, {"pixel_values": self.pixels[i : i + BATCH]},
                                                  section.get("max_batch")) for i in range(0, len(self.pixels), BATCH)])
        return np.concatenate([run_in_batches(session, out, feeds, section.get("max_batch"))
                               for feeds in self.text_batches]).astype(np.float32)

    def _gate_fp32(self, tower: str, path: Path) -> None:
        got = self._run(_cpu_session(path), tower)
        ref = self.image_ref if tower == "image" else self.text_ref
        worst = float(np.nan_to_num(gates.cosines(got, ref), nan=-1).min())
        if worst < gates.MIN_COSINE["fp32"]:
            raise GateError(f"fp32 {tower} tower: min cosine vs the pulled graph {worst:.6f} < bar "
                            f"{gates.MIN_COSINE['fp32']}")

    def _validate(self, variant: str, files: dict[str, Path]) -> dict[str, Any]:
        bar = gates.MIN_COSINE[variant]
        devices: list[str] = []
        outs: dict[str, np.ndarray] = {}
        figures: dict[str, Any] = {}
        batch_vs_single: float | None = None  # None: neither tower takes batches, nothing to compare
        for tower in ("image", "text"):
            try:
                session, device = _variant_session(files[tower], variant)
            except Exception as e:  # e.g. an op without a kernel for this precision on this provider
                raise GateError(f"{variant} {tower} tower: onnxruntime cannot run it ({_ort_failure(e)})") from None
            devices.append(device)
            got = self._run(session, tower)
            outs[tower] = got
            ref = self.image_ref if tower == "image" else self.text_ref
            cos = gates.cosines(got, ref)
            if not np.isfinite(cos).all():
                raise GateError(f"{variant} {tower} tower: non-finite vectors on the validation inputs")
            figures[f"{tower}_min_cosine"] = round(float(cos.min()), 7)
            figures[f"{tower}_mean_cosine"] = round(float(cos.mean()), 7)
            if cos.min() < bar:
                worst = int(cos.argmin())
                what = f"text {self.texts[worst][:40]!r}" if tower == "text" else f"image #{worst}"
                raise GateError(f"{variant} {tower} tower: min cosine vs the pulled fp32 graph {cos.min():.6f} < bar "
                                f"{bar} (worst: {what}; mean {cos.mean():.6f} over {len(cos)})")
            # a batch against the same inputs one at a time
            section = self.image_section if tower == "image" else self.text_section
            if not section.get("max_batch"):
                batch = session.run([graphs.OUTPUTS[tower]], self._feeds(tower, slice(0, N_BATCH_CHECK)))[0]
                single = np.concatenate([session.run([graphs.OUTPUTS[tower]], one)[0]
                                         for one in self._single_feeds(tower, range(N_BATCH_CHECK))])
                agree = float(gates.cosines(batch, single).min())
                if agree < bar:
                    raise GateError(f"{variant} {tower} tower: a batch of {N_BATCH_CHECK} differs from single calls "
                                    f"(min cosine {agree:.6f} < bar {bar})")
                batch_vs_single = agree if batch_vs_single is None else min(batch_vs_single, agree)
        norms = np.linalg.norm(np.concatenate([outs["image"], outs["text"]]), axis=1)
        figures.update({
            "min_cosine_bar": bar,
            "images": int(len(self.pixels)),
            "texts": len(self.texts),
            "device": devices[0] if devices[0] == devices[1] else "/".join(devices),
            "reference": "the pulled fp32 graph, one input at a time, outputs normalised",
            "max_norm_error": round(float(np.abs(norms - 1).max()), 7),
            "batch_vs_single_min_cosine": None if batch_vs_single is None else round(batch_vs_single, 7),
        })
        if variant == "fp32" and getattr(self, "padding_figure", None) is not None:
            figures["text_padding_min_cosine"] = self.padding_figure
        if variant in gates.TOP1_AGREEMENT:
            figures.update(gates.top1_figures(self.text_ref, self.image_ref, outs["text"], outs["image"],
                                              self.n_captions))
            top1_bar = gates.TOP1_AGREEMENT[variant]
            figures["top1_bar"] = top1_bar
            if figures["top1_agreement_decided"] < top1_bar:
                raise GateError(f"{variant}: text->image top-1 agrees with the pulled graph for "
                                f"{figures['top1_agreement_decided']:.1%} of the {figures['top1_decided_texts']} "
                                f"captions it decides < bar {top1_bar:.0%}")
        return figures

    # references and manifest ---------------------------------------------------------------------------

    def _write_references(self, fp32: dict[str, Path]) -> dict[str, Any]:
        """references.npz: the int8 check's inputs (int8_check.reference_inputs) with the fp32 towers'
        outputs, so the check on each CPU needs no fp32 run of its own."""
        from .. import int8_check
        from ..runtime import run_in_batches

        bundle = self._bundle()
        arrays = int8_check.reference_inputs(bundle)
        if "attention_mask" not in self.text_section["inputs"]:
            del arrays["attention_mask"]
        for tower, path in fp32.items():
            session = _cpu_session(path)
            feeds = int8_check.tower_feeds(bundle, tower, arrays)
            section = self.image_section if tower == "image" else self.text_section
            arrays[f"{tower}_embeds"] = run_in_batches(session, graphs.OUTPUTS[tower], feeds,
                                                       section.get("max_batch")).astype(np.float32)
        np.savez_compressed(self.dst / REFERENCES, **arrays)  # type: ignore[arg-type]
        return {"file": REFERENCES, "images": int(len(arrays["images"])), "texts": int(len(arrays["input_ids"])),
                "min_cosine": gates.MIN_COSINE["int8"]}

    def _write_manifest(self, files: dict[str, dict[str, Path]], fused: dict[str, dict[str, dict[str, int]]],
                        figures: dict[str, dict[str, Any]], references: dict[str, Any], seconds: float) -> None:
        from .variants import INT8_OPTIONS

        variants: dict[str, Any] = {}
        for variant in ("fp32", "fp16", "int8"):
            if variant not in figures:
                continue
            variants[variant] = {"image": _entry(files[variant]["image"]), "text": _entry(files[variant]["text"]),
                                 "fused": fused[variant], "validation": figures[variant]}
            if variant == "int8":
                variants[variant]["quantization"] = {
                    "method": "onnxruntime.quantization.quantize_dynamic", "quantized_from": "the rewritten pulled graph",
                    **{k: v for k, v in INT8_OPTIONS.items() if k != "from_fused"}}
        dim = int(self.image_ref.shape[1])
        if self.text_ref.shape[1] != dim:
            raise LayoutError(f"{self.label}: image vectors have {dim} dimensions, text vectors {self.text_ref.shape[1]}")
        manifest = {
            "format_version": FORMAT_VERSION,
            "name": self.name,
            "family": self.source.family,
            "source": self.label,
            "layout": self.source.layout,
            "embedding_dim": dim,
            "logit_scale": None,  # not in an ONNX export (the runtime never uses it)
            "logit_bias": None,
            "image": self.image_section,
            "text": self.text_section,
            "variants": variants,
            "files": {p.name: {k: v for k, v in _entry(p).items() if k != "file"}
                      for p in (self.dst / "tokenizer.json", self.dst / REFERENCES)},
            "references": references,
            "conversion": self.conversion,
            "pulled": self.provenance,
            "opset": _opset(self.source.folder / self.source.image.file),
            "exporter": _versions(),
            "created": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "convert_seconds": round(seconds, 1),
        }
        if self.left_out:
            manifest["left_out"] = self.left_out
        tmp = self.dst / f"{MANIFEST}.tmp"
        tmp.write_text(json.dumps(manifest, indent=2) + "\n")
        os.replace(tmp, self.dst / MANIFEST)


def _entry(path: Path) -> dict[str, Any]:
    return {"file": path.name, "sha256": sha256_file(path), "bytes": path.stat().st_size}


def _cpu_session(path: Path, disabled: tuple[str, ...] = ()) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 4  # a batch the graph refuses is an answer here, not an error to print
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"], disabled_optimizers=list(disabled))


# fp16 is made for CUDA and only checked on the CPU here, as runtime.py would open it there.
FP16_ON_CPU_DISABLED = FP16_CPU_DISABLED_OPTIMIZERS


def _ort_failure(e: Exception) -> str:
    """onnxruntime's error in a few words: the op and node that refused the batch."""
    import re

    text = str(e)
    m = re.search(r"running (\w+) node\. Name:'([^']*)'", text)
    if m:
        return f"its {m.group(1)} node {m.group(2)!r} refuses it"
    return first_line(e)[:100]


def _variant_session(path: Path, variant: str) -> tuple[Any, str]:
    """fp16 is validated on CUDA where a session really gets it (that is where it runs), else the CPU."""
    from ..runtime import create_session, expected_device

    if variant == "fp16" and expected_device("auto") == "cuda":
        return create_session(path, "auto")
    return _cpu_session(path, FP16_ON_CPU_DISABLED if variant == "fp16" else ()), "cpu"


def _op_counts(path: Path) -> dict[str, int]:
    from .variants import op_counts

    return op_counts(path)


def _opset(path: Path) -> int | None:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for package in ("mmsearch", "onnx", "onnxruntime", "huggingface_hub", "tokenizers"):
        try:
            out[package] = version(package)
        except PackageNotFoundError:
            if package == "onnxruntime":
                try:
                    out[package] = version("onnxruntime-gpu")
                except PackageNotFoundError:
                    pass
    return out
