"""The index run: one flow of named steps (run.py), each a producer of records that commit.py writes.

    run.py        the flow: roots scanned and planned, moves and deletes, then the steps in order
                  (images, documents, vectors saved, words in pictures, vectors saved again)
    context.py    what a run carries (Run: catalog, vectors, models, report, progress, cancel,
                  observer) and what the plan left to do (Work)
    records.py    what producers make: a Record per file, Words for what the OCR step reads
    commit.py     the one place a run writes: a batch of records in one transaction, then the graph
    images.py     photos on this machine: read, hash, decode at draft scale on worker threads, encoded in batches
    documents.py  documents on this machine: text extracted and chunked on worker threads, encoded as committed
    ocr.py        the words in pictures and scanned pages, after the rest
    distributed.py, ray_tasks.py, shards.py   the same records made on a Ray cluster (--engine ray)
    report.py     what a run tells: IndexReport, Progress, the steps an observer sees
    workers.py    a bounded ordered map over a thread pool, so memory stays flat

Durability: each batch of images, and each document however long, is committed to the catalog in one
transaction (file rows, items, vectors) before its vectors enter the graph in memory; the vector files
are saved once the images and documents are in (vectors.py says why), before the words are read, and
again after only where scanned pages added vectors. A crash loses none of the committed work: the
catalog holds every vector and the next run brings the graph in line with it. Work committed before a
crash is never encoded, or read, again.
"""

from __future__ import annotations

from .context import Encoders, Run
from .images import decode_plan
from .report import IndexReport, Observer, Progress, ProgressFn
from .run import run_index

__all__ = ["Encoders", "IndexReport", "Observer", "Progress", "ProgressFn", "Run", "decode_plan", "run_index"]
