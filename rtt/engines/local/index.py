"""The local engine's per-profile indexes, kept in memory and derived from the SQLite file.

A send is stored as one message row and one frame row, whatever its number of recipients: a
row per recipient would cost a random B-tree insert per delivery (3-8 µs each, more than
everything else a delivery costs). Who holds which message, and where each profile's stream
stands, are instead indexes over those rows: 8 bytes per box entry and per retained stream
item, rebuilt from the file when the node starts. They are touched only on the database
thread, and a transaction's changes reach them only once it has committed. Both are keyed by
app, then profile, so the per-recipient work of a send is one string-keyed lookup.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable
from struct import Struct

Key = tuple[str, str]  # (app, profile)

POSITION_BITS = 24  # a stream ref is frame id << POSITION_BITS | the target's place in it
_POSITION_MASK = (1 << POSITION_BITS) - 1
# Every per-profile list is a bytearray of native int64s, not an array or an object: those are
# tracked by the garbage collector, and three per profile made each full collection of a node
# with 100 000 profiles a pause of tens of ms for every socket. A bytearray is never tracked,
# and neither is a dict holding only strings and bytearrays.
_INT = Struct("q")
_SIZE = _INT.size


def _ints(buf: bytes | bytearray) -> list[int]:
    return array("q", buf).tolist()


def _at(buf: bytearray, i: int) -> int:
    return int(_INT.unpack_from(buf, i * _SIZE)[0])


def _find(buf: bytearray, value: int) -> int:
    """The index of `value` in the sorted int64s of `buf`, or -1."""
    low, high = 0, len(buf) // _SIZE
    while low < high:
        middle = (low + high) // 2
        if _at(buf, middle) < value:
            low = middle + 1
        else:
            high = middle
    return low if low < len(buf) // _SIZE and _at(buf, low) == value else -1


def entry_key(msg_no: int, sent: bool) -> int:
    """A box entry: the message's row number, and whether it is the sender's copy."""
    return msg_no << 1 | sent


def split_ref(ref: int) -> tuple[int, int]:
    """(frame id, position of the target in that frame) of a stream ref."""
    return ref >> POSITION_BITS, ref & _POSITION_MASK


class Boxes:
    """Each profile's box entries, as sorted entry keys (messages are numbered in send order,
    so appending keeps them sorted)."""

    def __init__(self) -> None:
        self._of: dict[str, dict[str, bytearray]] = {}

    def add(self, app: str, profiles: Iterable[str], entry: int) -> None:
        of = self._of.setdefault(app, {})
        packed = _INT.pack(entry)
        for profile in profiles:
            entries = of.get(profile)
            if entries is None:
                of[profile] = bytearray(packed)
            else:
                entries += packed

    def has(self, app: str, profile: str, entry: int) -> bool:
        entries = self._of.get(app, {}).get(profile)
        return entries is not None and _find(entries, entry) >= 0

    def remove(self, app: str, profile: str, entry: int) -> None:
        entries = self._of.get(app, {}).get(profile)
        if entries:
            i = _find(entries, entry)
            if i >= 0:
                del entries[i * _SIZE : (i + 1) * _SIZE]

    def entries(self, app: str, profile: str) -> list[int]:
        return _ints(self._of.get(app, {}).get(profile, b""))


class Streams:
    """Each profile's retained stream items (seqs are gap-free, so a first seq and the frame
    refs in order say it all: one bytearray of int64s, the first seq then the refs), and how
    many items still point at each frame row.

    A frame row outlives the items trimmed from some of its targets while another still uses
    it, so the first seq each trimmed profile keeps (`kept_from`) is stored too: rebuilding
    must not revive what the sweep dropped."""

    def __init__(self) -> None:
        self._of: dict[str, dict[str, bytearray]] = {}
        self.users: dict[int, int] = {}  # frame id -> retained items pointing at it
        self.kept_from: dict[Key, int] = {}

    def latest(self, app: str, profile: str) -> int:
        """The profile's latest seq. Safe to read from another thread than the one changing the
        index: a stream only ever grows by one appended ref, or is replaced whole."""
        stream = self._of.get(app, {}).get(profile)
        return 0 if stream is None else _at(stream, 0) + len(stream) // _SIZE - 2

    def next_seqs(self, app: str, profiles: list[str]) -> list[int]:
        """The seq each (distinct) profile's next item gets."""
        of = self._of.get(app, {})
        seqs = []
        for profile in profiles:
            stream = of.get(profile)
            seqs.append(1 if stream is None else _at(stream, 0) + len(stream) // _SIZE - 1)
        return seqs

    def add_frame(self, app: str, frame_id: int, profiles: list[str], seqs: list[int]) -> list[int]:
        """Index one frame row: each target's item at its seq. An item that does not follow
        its profile's last one restarts that stream (older items were dropped while another
        profile kept their frame). Returns the frame ids no item uses any more."""
        of = self._of.setdefault(app, {})
        base, used, freed = frame_id << POSITION_BITS, 0, []
        for position, (profile, seq) in enumerate(zip(profiles, seqs, strict=True)):
            stream = of.get(profile)
            if stream is None or seq != _at(stream, 0) + len(stream) // _SIZE - 1:
                if seq < self.kept_from.get((app, profile), 0):
                    continue
                if stream is not None:
                    freed += self._release(_ints(stream[_SIZE:]))
                stream = of[profile] = bytearray(_INT.pack(seq))
            stream += _INT.pack(base | position)
            used += 1
        if used:
            self.users[frame_id] = used
        return freed

    def since(self, app: str, profile: str, after: int, limit: int) -> tuple[int, list[int]] | None:
        """(seq of the first ref, up to `limit` refs after `after`), or None if the items right
        after `after` were dropped or `after` is beyond the latest."""
        stream = self._of.get(app, {}).get(profile)
        if stream is None:
            return None if after > 0 else (1, [])
        start = after + 1 - _at(stream, 0)
        if start < 0 or start > len(stream) // _SIZE - 1:
            return None
        return after + 1, _ints(stream[(1 + start) * _SIZE : (1 + start + limit) * _SIZE])

    def profiles(self) -> list[Key]:
        """Every profile with a stream: what a sweep trims, a slice at a time."""
        return [(app, profile) for app, streams in self._of.items() for profile in streams]

    def trim(
        self, profiles: Iterable[Key], max_items: int, first_young_frame: int
    ) -> tuple[list[int], list[Key]]:
        """Drop items of these profiles beyond `max_items` per profile and items of frames
        older than `first_young_frame`, always keeping each profile's newest (its latest seq).
        Returns the frame ids no item uses any more, and the profiles whose `kept_from`
        moved."""
        freed: list[int] = []
        moved: list[Key] = []
        for app, profile in profiles:
            streams = self._of.get(app, {})
            stream = streams.get(profile)
            if stream is not None:
                refs = _ints(stream[_SIZE:])
                drop = max(0, len(refs) - max_items)
                while drop < len(refs) - 1 and refs[drop] >> POSITION_BITS < first_young_frame:
                    drop += 1
                if drop:
                    freed += self._release(refs[:drop])
                    first = _at(stream, 0) + drop
                    # replaced in one step (see `latest`)
                    streams[profile] = bytearray(_INT.pack(first)) + stream[(1 + drop) * _SIZE :]
                    self.kept_from[app, profile] = first
                    moved.append((app, profile))
        return freed, moved

    def _release(self, refs: Iterable[int]) -> list[int]:
        freed = []
        for ref in refs:
            frame_id = ref >> POSITION_BITS
            left = self.users[frame_id] - 1
            if left:
                self.users[frame_id] = left
            else:
                del self.users[frame_id]
                freed.append(frame_id)
        return freed
