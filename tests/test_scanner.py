"""The scan's plan against the catalog, on its own: what is new, changed, unchanged, missing, moved."""

from __future__ import annotations

from mmsearch.catalog import FileRow
from mmsearch.scanner import FoundFile, plan


def row(id: int, path: str, size: int = 10, mtime: int = 1, digest: str | None = None, status: str = "indexed") -> FileRow:
    return FileRow(id, path, path, size, mtime, digest or f"h{id}", "image", status)


def test_plan_streams_through_lookups_and_keeps_only_changes():
    # ids far apart: the seen-set grows as needed
    mine = [row(3, "/r/a.jpg"), row(1_000, "/r/b.jpg"), row(2_000_003, "/r/gone.jpg"), row(9, "/r/err.jpg", status="error"),
            row(7, "/r/old-name.jpg", size=55, digest="same")]
    elsewhere = row(400, "/r/sub/c.jpg")  # indexed under another root that overlaps this one
    by_path = {r.fs_path: r for r in [*mine, elsewhere]}
    found = [FoundFile("/r/a.jpg", 10, 1, "image"), FoundFile("/r/b.jpg", 11, 2, "image"),  # b changed
             FoundFile("/r/sub/c.jpg", 10, 1, "image"), FoundFile("/r/err.jpg", 10, 1, "image"),
             FoundFile("/r/new.jpg", 5, 1, "image"), FoundFile("/r/new-name.jpg", 55, 3, "image")]
    lookups: list[int] = []

    def lookup(paths):
        lookups.append(len(paths))
        return {p: by_path[p] for p in paths if p in by_path}

    p = plan(iter(found), lookup, lambda: iter(mine), lambda path: "same" if path.endswith("new-name.jpg") else "x")
    assert p.unchanged == 2 and [r.fs_path for r in p.failed] == ["/r/err.jpg"]  # a.jpg and the other root's c.jpg; err.jpg stays as it is
    assert [(f.path, r.id) for f, r in p.changed] == [("/r/b.jpg", 1_000)]
    assert [f.path for f in p.new] == ["/r/new.jpg"]
    assert [(f.path, r.id) for f, r in p.moved] == [("/r/new-name.jpg", 7)]  # same content, new name
    assert [r.id for r in p.missing] == [2_000_003]
    assert sum(lookups) == len(found)


def test_plan_looks_up_in_batches():
    found = (FoundFile(f"/r/{i}.jpg", 1, 1, "image") for i in range(1_234))
    sizes: list[int] = []
    p = plan(found, lambda paths: sizes.append(len(paths)) or {}, lambda: iter(()), lambda path: None)
    assert len(p.new) == 1_234 and max(sizes) <= 500 and sum(sizes) == 1_234


def test_a_file_that_could_not_be_read_is_retried_without_a_touch():
    """chmod (or a remount) makes a file readable without changing its mtime: a file in error that was
    never read (no content hash) is tried again; one whose content failed to decode is not."""
    unread = FileRow(1, "/r/locked.jpg", "/r/locked.jpg", 10, 1, None, "image", "error")
    corrupt = row(2, "/r/corrupt.jpg", status="error")
    found = [FoundFile("/r/locked.jpg", 10, 1, "image"), FoundFile("/r/corrupt.jpg", 10, 1, "image")]
    rows = {r.fs_path: r for r in (unread, corrupt)}
    p = plan(iter(found), lambda paths: {q: rows[q] for q in paths if q in rows}, lambda: iter(rows.values()),
             lambda path: None)
    assert [f.path for f, _ in p.changed] == ["/r/locked.jpg"] and p.failed == [corrupt]


class _CountingRow(FileRow):
    """A FileRow that counts comparisons: moves must be matched by id, not searched for in a list."""

    compared = 0

    def __eq__(self, other):
        _CountingRow.compared += 1
        return super().__eq__(other)

    __hash__ = FileRow.__hash__


def test_moves_are_planned_in_linear_time():
    n = 3_000
    old = [_CountingRow(i + 1, f"/r/old/{i}.jpg", f"/r/old/{i}.jpg", 100 + i, 1, f"h{i}", "image", "indexed")
           for i in range(n)]
    found = [FoundFile(f"/r/new/{i}.jpg", 100 + i, 2, "image") for i in reversed(range(n))]
    _CountingRow.compared = 0
    p = plan(iter(found), lambda paths: {}, lambda: iter(old), lambda path: f"h{path.rsplit('/', 1)[1][:-4]}")
    assert len(p.moved) == n and not p.missing and not p.new
    assert all(f.path.rsplit("/", 1)[1] == r.fs_path.rsplit("/", 1)[1] for f, r in p.moved)
    assert _CountingRow.compared < n  # list.remove per move compared ~n*n/2 rows


def test_an_index_kept_among_the_photos_is_not_indexed(tmp_path, toyclip):
    """`mmsearch index ~/photos --index ~/photos/index`: the index's thumbnails are not photos."""
    from engine_helpers import make_collection, picture
    from mmsearch import Index

    photos = tmp_path / "photos"
    make_collection(photos, n_images=2, docs={})
    with Index(photos / "index", model=toyclip) as idx:
        (photos / "index" / "thumbs").mkdir()
        picture(9).save(photos / "index" / "thumbs" / "thumb.jpg")
        first = idx.index([photos])
        found = {h.path for h in idx.search("x", mode="vector", k=10)}
        assert first.added == 2 and not [p for p in found if p.startswith(str(photos / "index"))]
