"""Search quality on a held-out toy world, through the real `mmsearch index` and `mmsearch query`.

    python -m benchmarks.quality [--n 500] [--seed 2024] [--variants fp32,int8] [--json FILE]
                                 [--model tests/fixtures/toyclip] [--cli-queries 10 | --all-cli]
                                 [--work DIR] [--max-size 4000] [--check]

1. Draws a toy world (benchmarks.toyworld) with a seed the model never trained on, with one caption
   document per picture (`--caption-docs`) and a few .txt/.md/.pdf documents.
2. For each variant, indexes it with the `mmsearch index ... --variant V --json` command (images,
   caption documents and the other documents: one collection).
3. Asks every picture's caption for images (text->image) and every picture for documents
   (image->text), and scores Recall@1/5/10: the share of queries with a right answer among the
   first k. A picture is a right answer to a caption when it matches every attribute the caption
   names (so all pictures a caption fits count); a document is a right answer to a picture when the
   picture matches every attribute of its caption (a caption document) or of one of the captions it
   quotes (the .txt/.md/.pdf).

Queries go through `mmsearch query ... --json`. A process per query costs its start-up (0.2 s to
0.5 s: 2,000 queries, all of --n 500 in both directions for two variants, take about 8 minutes on
2 cores), so by default the first --cli-queries captions and pictures of each direction go through
the command and the rest through the same code in-process (`mmsearch.api.Index.search`, which the
command calls); the command's answers are checked against the in-process ones (same paths, same
order). --all-cli sends every query through the command.

Bars (500 pictures, fp32): text->image Recall@5 >= 0.80, image->text Recall@5 >= 0.70; every other
variant within 0.03 of fp32 on each. --check exits 1 when a bar is missed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks import toyworld as tw

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MODEL = ROOT / "tests" / "fixtures" / "toyclip"
KS = (1, 5, 10)
BARS = {"t2i_R@5": 0.80, "i2t_R@5": 0.70}
VARIANT_TOLERANCE = 0.03


def mmsearch_command() -> list[str]:
    """The installed `mmsearch` script next to this Python, else the module it runs."""
    exe = Path(sys.executable).with_name("mmsearch")
    if exe.exists():
        return [str(exe)]
    found = shutil.which("mmsearch")
    return [found] if found else [sys.executable, "-m", "mmsearch"]


def _run(args: list[str], timeout: float = 1800) -> str:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    res = subprocess.run(mmsearch_command() + args, capture_output=True, text=True, timeout=timeout, env=env,
                         cwd=ROOT)
    if res.returncode != 0:
        raise RuntimeError(f"mmsearch {' '.join(args[:2])} ... failed ({res.returncode}):\n{res.stderr[-3000:]}")
    return res.stdout


class Judge:
    """Which results are right answers, from captions.jsonl and docs.jsonl."""

    def __init__(self, world: Path):
        self.world = world.resolve()
        self.rows, self.docs = tw.load(world)
        self.by_path = {r["path"]: r for r in self.rows}
        self.by_caption_doc = {r["caption_doc"]: r for r in self.rows if r.get("caption_doc")}
        self.doc_claims = {d["path"]: [self.by_path[p]["claims"] for p in d["describes"]] for d in self.docs}

    def rel(self, path: str) -> str:
        p = Path(path)
        try:
            return p.resolve().relative_to(self.world).as_posix()
        except ValueError:
            return p.as_posix()

    def image_relevant(self, query: dict[str, Any], path: str) -> bool:
        row = self.by_path.get(self.rel(path))
        return row is not None and tw.matches(query["claims"], row["objects"])

    def document_relevant(self, query: dict[str, Any], path: str) -> bool:
        rel = self.rel(path)
        row = self.by_caption_doc.get(rel)
        if row is not None:
            return tw.matches(row["claims"], query["objects"])
        return any(tw.matches(c, query["objects"]) for c in self.doc_claims.get(rel, ()))


def recall(hits: list[list[bool]]) -> dict[str, float]:
    return {f"R@{k}": round(sum(any(h[:k]) for h in hits) / max(1, len(hits)), 4) for k in KS}


def _cli_query(index_dir: Path, variant: str, *, text: str | None = None, image: Path | None = None,
               type_: str, k: int) -> list[dict[str, Any]]:
    args = ["query"] + ([text] if text is not None else ["--image", str(image)])
    args += ["--index", str(index_dir), "-k", str(k), "--type", type_, "--variant", variant, "--device", "cpu", "--json"]
    return json.loads(_run(args, timeout=300))


def evaluate_variant(world: Path, judge: Judge, model: Path, variant: str, work: Path, *, cli_queries: int,
                     all_cli: bool, k: int = max(KS), log=print, index_args: tuple[str, ...] = ()) -> dict[str, Any]:
    index_dir = work / f"index-{variant}"
    if index_dir.exists():
        shutil.rmtree(index_dir)
    t0 = time.monotonic()
    summary = json.loads(_run(["index", str(world / "images"), str(world / "captions"), str(world / "docs"),
                               "--index", str(index_dir), "--model", str(model), "--variant", variant,
                               "--device", "cpu", "--no-ocr", "--json", *index_args]))  # the model's quality alone
    index_s = time.monotonic() - t0
    log(f"{variant}: indexed in {index_s:.1f}s: " + json.dumps({k_: v for k_, v in summary.items() if k_ != "errors"})
        + (f", {len(summary.get('errors') or [])} errors" if summary.get("errors") else ""))

    rows = judge.rows
    answers: list[list[str]] = []  # every query's result paths, in order (to compare two indexes' answers)
    n_cli = len(rows) if all_cli else min(cli_queries, len(rows))
    t2i_hits, i2t_hits = [], []
    mismatches: list[str] = []
    t1 = time.monotonic()
    api_index = None
    if not all_cli:
        from mmsearch.api import Index

        api_index = Index(index_dir, model=model, device="cpu", variant=variant, readonly=True)
    try:
        for i, row in enumerate(rows):
            image = world / row["path"]
            api_t = api_i = None
            if not all_cli:
                api_t = [h.to_dict() for h in api_index.search(row["caption"], k=k, type="image")]
                api_i = [h.to_dict() for h in api_index.search(image=image, k=k, type="document")]
            if i < n_cli:
                cli_t = _cli_query(index_dir, variant, text=row["caption"], type_="image", k=k)
                cli_i = _cli_query(index_dir, variant, image=image, type_="document", k=k)
                for name, cli, api in (("text", cli_t, api_t), ("image", cli_i, api_i)):
                    if api is not None and [h["path"] for h in cli] != [h["path"] for h in api]:
                        mismatches.append(f"{row['path']} ({name} query): cli {[Path(h['path']).name for h in cli]} "
                                          f"!= api {[Path(h['path']).name for h in api]}")
                res_t, res_i = cli_t, cli_i
            else:
                res_t, res_i = api_t, api_i
            answers += [[judge.rel(h["path"]) for h in res_t], [judge.rel(h["path"]) for h in res_i]]
            t2i_hits.append([h["kind"] == "image" and judge.image_relevant(row, h["path"]) for h in res_t])
            i2t_hits.append([h["kind"] == "document" and judge.document_relevant(row, h["path"]) for h in res_i])
    finally:
        if api_index is not None:
            api_index.close()
    query_s = time.monotonic() - t1
    out = {
        "t2i": recall(t2i_hits),
        "i2t": recall(i2t_hits),
        "queries": len(rows),
        "cli_queries": n_cli,
        "cli_mismatches": mismatches,
        "index": summary,
        "index_seconds": round(index_s, 1),
        "query_seconds": round(query_s, 1),
        "answers": answers,
    }
    log(f"{variant}: text->image {out['t2i']}, image->text {out['i2t']} ({query_s:.1f}s; "
        f"{n_cli} of each through the CLI, {len(mismatches)} disagreements)")
    return out


def failures(result: dict[str, Any]) -> list[str]:
    """The bars this result misses (empty: all met)."""
    out = []
    variants = result["variants"]
    base = variants.get("fp32")
    for v, r in variants.items():
        if r["index"].get("errors"):
            out.append(f"{v}: {len(r['index']['errors'])} files failed to index: {r['index']['errors'][:3]}")
        if r["cli_mismatches"]:
            out.append(f"{v}: the CLI and the API disagree on {len(r['cli_mismatches'])} queries: {r['cli_mismatches'][:2]}")
    if base is not None:
        for key, bar in BARS.items():
            d, m = key.split("_")
            if base[d][m] < bar:
                out.append(f"fp32 {d} {m} = {base[d][m]:.3f} < {bar}")
        for v, r in variants.items():
            if v == "fp32":
                continue
            for key in BARS:
                d, m = key.split("_")
                if r[d][m] < base[d][m] - VARIANT_TOLERANCE:
                    out.append(f"{v} {d} {m} = {r[d][m]:.3f}, more than {VARIANT_TOLERANCE} below fp32 ({base[d][m]:.3f})")
    return out


def run_quality(n: int = 500, seed: int = 2024, variants: tuple[str, ...] = ("fp32", "int8"),
                model: Path = DEFAULT_MODEL, work: Path | None = None, cli_queries: int = 10,
                all_cli: bool = False, max_size: int | None = None, log=print,
                index_args: tuple[str, ...] = ()) -> dict[str, Any]:
    """index_args: added to every `mmsearch index` (e.g. --engine ray --ray-address HOST:PORT)."""
    model = Path(model).resolve()
    info_file = model / "train_info.json"
    train_info = json.loads(info_file.read_text()) if info_file.exists() else {}
    tmp = None
    if work is None:
        tmp = tempfile.TemporaryDirectory(prefix="mmsearch-quality-")
        work = Path(tmp.name)
    work = Path(work)
    try:
        world = work / "world"
        if world.exists():
            shutil.rmtree(world)
        t0 = time.monotonic()
        tw.generate(world, n, seed, caption_docs=True, max_size=max_size)
        log(f"drew {n} held-out pictures (seed {seed}) in {time.monotonic() - t0:.1f}s")
        judge = Judge(world)
        result: dict[str, Any] = {
            "n": n, "seed": seed, "model": str(model), "train_seed": train_info.get("seed"),
            "max_size": max_size, "variants": {},
        }
        for v in variants:
            result["variants"][v] = evaluate_variant(world, judge, model, v, work, cli_queries=cli_queries,
                                                     all_cli=all_cli, log=log, index_args=index_args)
        result["bars"] = {"fp32": BARS, "variant_tolerance": VARIANT_TOLERANCE}
        result["failures"] = failures(result)
        return result
    finally:
        if tmp is not None:
            tmp.cleanup()


def table(result: dict[str, Any]) -> str:
    lines = [f"toy world: {result['n']} pictures, seed {result['seed']}, model {result['model']}", "",
             f"{'variant':8} {'direction':12} " + " ".join(f"{'R@' + str(k):>6}" for k in KS)]
    for v, r in result["variants"].items():
        for d, name in (("t2i", "text->image"), ("i2t", "image->text")):
            lines.append(f"{v:8} {name:12} " + " ".join(f"{r[d]['R@' + str(k)]:6.3f}" for k in KS))
    lines.append("")
    lines.append("bars: " + ("all met" if not result["failures"] else "MISSED: " + "; ".join(result["failures"])))
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.quality", description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--seed", type=int, default=2024)
    ap.add_argument("--variants", default="fp32,int8")
    ap.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    ap.add_argument("--json", type=Path, default=None, help="also write the result here")
    ap.add_argument("--work", type=Path, default=None, help="keep the world and indexes here (default: a temp dir)")
    ap.add_argument("--cli-queries", type=int, default=10, help="queries per direction sent through the CLI")
    ap.add_argument("--all-cli", action="store_true", help="every query through `mmsearch query` (slow)")
    ap.add_argument("--max-size", type=int, default=None, help="cap picture sizes (default: up to 4000x3000)")
    ap.add_argument("--check", action="store_true", help="exit 1 when a bar is missed")
    args = ap.parse_args(argv)

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    result = run_quality(args.n, args.seed, tuple(v for v in args.variants.split(",") if v), args.model, args.work,
                         args.cli_queries, args.all_cli, args.max_size, log)
    print(table(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    return 1 if args.check and result["failures"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
