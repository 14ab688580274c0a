"""The SQLite outbox: order, acknowledgement, numbering across restarts, and disk errors."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from edgeinfer.serve.messages import UplinkError
from edgeinfer.serve.outbox import Outbox


def _put(box: Outbox, stream: str, n: int, size: int = 10) -> list[int]:
    seqs = []
    for _ in range(n):
        _id, seq, _row = box.put(stream, f"t/{stream}", lambda s, i: b"x" * size)
        seqs.append(seq)
    return seqs


def test_order_ack_and_numbering_survive_reopen(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite"
    box = Outbox(path)
    assert _put(box, "a", 3) == [0, 1, 2]
    assert _put(box, "b", 2) == [0, 1]
    rows = box.pending()
    assert [r[1] for r in rows] == ["t/a"] * 3 + ["t/b"] * 2
    assert box.ack([rows[0][0], rows[1][0], rows[2][0]]) == 3  # every row of "a" acknowledged
    assert box.backlog == 2
    assert box.pending(after=rows[2][0]) == rows[3:]
    box.close()
    box = Outbox(path)  # a restarted node: backlog kept, numbering continues
    assert box.backlog == 2
    assert box.next_seq("a") == 3 and box.next_seq("b") == 2
    assert _put(box, "a", 1) == [3]
    box.close()


def test_unwritable_path_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(UplinkError, match="does not exist") as err:
        Outbox(tmp_path / "missing" / "o.sqlite")
    assert "\n" not in str(err.value)
    ro = tmp_path / "ro"
    ro.mkdir()
    os.chmod(ro, 0o500)
    try:
        # as root permissions are not enforced: /proc refuses new files to everyone
        target = Path("/proc/edgeinfer-outbox.sqlite") if os.access(ro, os.W_OK) else ro / "o"
        with pytest.raises(UplinkError, match="not writable") as err:
            Outbox(target)
        assert "\n" not in str(err.value)
    finally:
        os.chmod(ro, 0o700)


def test_full_outbox_keeps_what_it_holds(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite", max_bytes=64 * 1024)
    stored = 0
    with pytest.raises(UplinkError, match="full") as err:
        for _ in range(10_000):
            _put(box, "a", 1, size=1000)
            stored += 1
    assert "\n" not in str(err.value) and f"the {stored} message(s)" in str(err.value)
    assert 10 < stored < 10_000
    assert box.backlog == stored
    assert len(box.pending(limit=100_000)) == stored
    rows = box.pending(limit=5)
    box.ack(r[0] for r in rows)  # acknowledgements free room for new messages
    assert _put(box, "a", 1) == [stored]
    box.close()
