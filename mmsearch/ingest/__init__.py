"""The index run: scan -> decode or extract (worker threads) -> encode -> commit -> save -> read words.

    run.py        the run: roots scanned and planned, moves and deletes, images then documents, the save,
                  then the OCR phase
    report.py     what a run tells: IndexReport, Progress, the phases an observer sees
    images.py     photos: read, hash, decode at draft scale on worker threads; encoded and committed in batches
    documents.py  documents: text extracted and chunked on worker threads; encoded and committed one by one
    ocr.py        the words in pictures and scanned pages, after the rest: committed batch by batch
    commit.py     the one place a file's row is written, for both kinds
    workers.py    a bounded ordered map over a thread pool, so memory stays flat

Durability: each batch of images, and each document however long, is committed to the catalog in one
transaction (file rows, items, vectors) before its vectors enter the graph in memory; the vector files
are saved once the images and documents are in (vectors.py says why), before the words are read, and
again after only where scanned pages added vectors. A crash loses none of the committed work: the
catalog holds every vector and the next run brings the graph in line with it. Work committed before a
crash is never encoded, or read, again.
"""

from __future__ import annotations

from .images import decode_plan
from .report import IndexReport, Observer, Progress, ProgressFn
from .run import Encoders, run_index

__all__ = ["Encoders", "IndexReport", "Observer", "Progress", "ProgressFn", "decode_plan", "run_index"]
