"""Named blocks of shared memory, and a fixed-length list stored in one (layer 4).

:class:`SharedMemory` is a POSIX shared memory object (``shm_open``; on Linux
a file in ``/dev/shm``) mapped into this process.  Any process that knows its
name can attach to it, whether or not it belongs to this program.  A block
lives until some process calls ``unlink()``: the creating process registers
its name with the resource tracker (``track=True``, the default), which
unlinks it if the whole program exits without doing so, killed or not.

:class:`ShareableList` stores ints, floats, bools, None, str and bytes in
one block, with the standard library's memory layout (so either library can
attach to a list made by the other).

``_make_filename`` (how new blocks are named) is a compatibility hook that
CPython's test suite patches.
"""

from __future__ import annotations

import _posixshmem  # type: ignore[import-not-found]
import mmap
import os
import secrets
import struct
import types
from collections.abc import Iterable, Iterator
from functools import partial
from typing import Any, Callable, ClassVar

from . import resource_tracker

__all__ = ["ShareableList", "SharedMemory"]

_USE_POSIX = True

# FreeBSD (and perhaps other BSDs) accept names of at most 14 characters.
_SHM_SAFE_NAME_LENGTH = 14
# A leading slash is what POSIX requires of a portable name.
_SHM_NAME_PREFIX = "/psm_"

_O_CREX = os.O_CREAT | os.O_EXCL


def _make_filename() -> str:
    """Return a random name for a new block, with the leading slash."""
    nbytes = (_SHM_SAFE_NAME_LENGTH - len(_SHM_NAME_PREFIX)) // 2
    return _SHM_NAME_PREFIX + secrets.token_hex(nbytes)


class SharedMemory:
    """A block of shared memory that processes find by name.

    Args:
        name: The block to attach to, or (with ``create=True``) the name of
            the new block; None with ``create=True`` picks an unused name.
        create: Create a new block (FileExistsError if ``name`` is taken)
            instead of attaching to an existing one.
        size: The size of a new block in bytes (the system may round it up).
            Ignored when attaching: ``size`` is then the block's own size.
        track: Register a new block with the resource tracker, which unlinks
            it if the program ends without calling ``unlink()``.  Pass False
            for a block that must outlive the program; ``unlink()`` then
            leaves the tracker alone as well.

    Raises:
        ValueError: ``size`` is negative, zero with ``create=True``, or no
            ``name`` was given to attach to.
        FileNotFoundError: No block has that name (attaching).
        FileExistsError: A block already has that name (creating).

    ``buf`` is a memoryview of the block.  Call ``close()`` when this process
    is done with it, and ``unlink()`` once, in one process, when no process
    needs it any more.  Pickling sends the name: the receiver attaches.
    """

    # Class attributes so that close() and unlink() work on a half-built object.
    _name: str | None = None
    _fd = -1
    _mmap: mmap.mmap | None = None
    _buf: memoryview | None = None
    _size = 0
    _track = True
    # How a block is opened when attaching; subclasses may add os.O_CREAT.
    _flags = os.O_RDWR
    _mode = 0o600
    _prepend_leading_slash = True

    def __init__(
        self, name: str | None = None, create: bool = False, size: int = 0, *, track: bool = True
    ) -> None:
        if not size >= 0:
            raise ValueError("'size' must be a positive integer")
        if create:
            self._flags = _O_CREX | os.O_RDWR
            if size == 0:
                raise ValueError("'size' must be a positive number different from zero")
        if name is None and not self._flags & os.O_EXCL:
            raise ValueError("'name' can only be None if create=True")
        self._track = track

        if name is None:
            # Random names until one is free.
            while True:
                candidate = _make_filename()
                try:
                    fd = _posixshmem.shm_open(candidate, self._flags, mode=self._mode)
                except FileExistsError:
                    continue
                break
        else:
            candidate = "/" + name if self._prepend_leading_slash else name
            fd = _posixshmem.shm_open(candidate, self._flags, mode=self._mode)
        self._fd = fd
        self._name = candidate
        created = bool(self._flags & os.O_EXCL)
        # Only the creator registers: a process that merely attaches must not
        # have its tracker unlink the block when that process exits.  At once,
        # so that a process killed from here on leaks nothing.
        tracked = False
        try:
            if created and track:
                resource_tracker.register(candidate, "shared_memory")
                tracked = True
            if created:
                os.ftruncate(fd, size)
            size = os.fstat(fd).st_size
            self._mmap = mmap.mmap(fd, size)
        except BaseException:
            self.close()
            if created:
                _posixshmem.shm_unlink(candidate)
                if tracked:
                    resource_tracker.unregister(candidate, "shared_memory")
            raise
        self._size = size
        self._buf = memoryview(self._mmap)

    def __del__(self) -> None:
        try:
            self.close()
        except OSError:
            pass

    def __reduce__(self) -> Any:
        return type(self), (self.name, False, self.size)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, size={self.size})"

    @property
    def buf(self) -> memoryview:
        """A memoryview of the block (None once closed)."""
        return self._buf  # type: ignore[return-value]

    @property
    def name(self) -> str | None:
        """The name of the block, without the leading slash: what other processes pass."""
        name = self._name
        if name is not None and self._prepend_leading_slash and name.startswith("/"):
            return name[1:]
        return name

    @property
    def size(self) -> int:
        """The size of the block in bytes."""
        return self._size

    def close(self) -> None:
        """Unmap the block from this process (it stays for the others).

        Raises BufferError while views of ``buf`` (a numpy array, a slice)
        still exist.
        """
        if self._buf is not None:
            self._buf.release()
            self._buf = None
        if self._mmap is not None:
            self._mmap.close()
            self._mmap = None
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def unlink(self) -> None:
        """Delete the block's name: once every process has closed it, it is freed.

        Call it once, from one process.  Raises FileNotFoundError if the block
        was already unlinked.
        """
        if self._name:
            _posixshmem.shm_unlink(self._name)
            if self._track:
                resource_tracker.unregister(self._name, "shared_memory")


#
# ShareableList
#

_encoding = "utf8"


class _UnsupportedType(TypeError, KeyError):
    """A value of a type ShareableList cannot store.

    Also a KeyError, the exception the standard library raises there.
    """

    __str__ = BaseException.__str__


# How each item is decoded: its "back transform" code, stored per item.
_AS_IS, _STR, _BYTES, _NONE = 0, 1, 2, 3


def _transform_code(value: Any) -> int:
    if isinstance(value, str):
        return _STR
    if isinstance(value, bytes):
        return _BYTES
    if value is None:
        return _NONE
    return _AS_IS


_BACK_TRANSFORMS: dict[int, Callable[[Any], Any]] = {
    _AS_IS: lambda value: value,
    _STR: lambda value: value.rstrip(b"\x00").decode(_encoding),
    _BYTES: lambda value: value.rstrip(b"\x00"),
    _NONE: lambda value: None,
}


class ShareableList:
    """A list of fixed length, stored in a :class:`SharedMemory` block.

    Items are int (64-bit), float, bool, None, str or bytes; an item may be
    replaced by one of another type, but a str or bytes item never by a
    longer one than its slot holds (a multiple of 8 bytes, at least one byte
    longer than the initial value).  Strings lose trailing NUL characters.

    Args:
        sequence: The initial items; None (with ``name``) attaches to an
            existing list instead.
        name: The block's name (None: a new, random one when creating).

    ``shm`` is the block: call ``shm.close()`` when done and
    ``shm.unlink()`` once when no process needs the list any more.
    Pickling sends the name.

    Memory layout (the standard library's)::

        8 bytes           number of items N
        (N + 1) * 8       offset of each item in the data area, then its end
        ...               the data area
        N * 8             struct format of each item
        N                 back-transform code of each item
    """

    _types_mapping: ClassVar[dict[type, str]] = {
        int: "q",
        float: "d",
        bool: "xxxxxxx?",
        str: "%ds",
        bytes: "%ds",
        type(None): "xxxxxx?x",
    }
    _alignment = 8
    _back_transforms_mapping = _BACK_TRANSFORMS

    @staticmethod
    def _extract_recreation_code(value: Any) -> int:
        return _transform_code(value)

    def __init__(self, sequence: Iterable[Any] | None = None, *, name: str | None = None):
        if name is None or sequence is not None:
            items = [] if sequence is None else list(sequence)
            formats = [self._format_for(item) for item in items]
            self._list_len = len(items)
            offsets = [0]
            for fmt in formats:
                offsets.append(offsets[-1] + self._slot_size(fmt))
            self._allocated_offsets = offsets
            size = struct.calcsize(
                "q"
                + self._format_size_metainfo
                + "".join(formats)
                + self._format_packing_metainfo
                + self._format_back_transform_codes
            )
            self.shm = SharedMemory(name, create=True, size=size)
            self._write_new(items, formats)
        else:
            self.shm = SharedMemory(name)
            self._list_len = len(self)
            self._allocated_offsets = list(
                struct.unpack_from(self._format_size_metainfo, self.shm.buf, 8)
            )

    def _format_for(self, value: Any) -> str:
        if isinstance(value, (str, bytes)):
            # The standard library sizes a str slot by its characters; we do
            # too (the formats then agree), unless its UTF-8 would not fit.
            length = len(value)
            if isinstance(value, str):
                size = len(value.encode(_encoding))
                if size > self._alignment * (length // self._alignment + 1):
                    length = size
            return f"{self._alignment * (length // self._alignment + 1)}s"
        for klass in type(value).__mro__:  # bool before int; int and float subclasses
            fmt = self._types_mapping.get(klass)
            if fmt is not None:
                return fmt
        raise _UnsupportedType(
            f"ShareableList cannot store {type(value).__name__!r} items "
            "(int, float, bool, None, str and bytes only)"
        )

    def _slot_size(self, fmt: str) -> int:
        return int(fmt[:-1]) if fmt.endswith("s") else self._alignment

    def _write_new(self, items: list[Any], formats: list[str]) -> None:
        buf = self.shm.buf
        struct.pack_into(
            "q" + self._format_size_metainfo, buf, 0, self._list_len, *self._allocated_offsets
        )
        struct.pack_into(
            "".join(formats),
            buf,
            self._offset_data_start,
            *(item.encode(_encoding) if isinstance(item, str) else item for item in items),
        )
        struct.pack_into(
            self._format_packing_metainfo,
            buf,
            self._offset_packing_formats,
            *(fmt.encode(_encoding) for fmt in formats),
        )
        struct.pack_into(
            self._format_back_transform_codes,
            buf,
            self._offset_back_transform_codes,
            *(_transform_code(item) for item in items),
        )

    # -- the layout ---------------------------------------------------------

    @property
    def _format_size_metainfo(self) -> str:
        return "q" * (self._list_len + 1)

    @property
    def _format_packing_metainfo(self) -> str:
        return "8s" * self._list_len

    @property
    def _format_back_transform_codes(self) -> str:
        return "b" * self._list_len

    @property
    def _offset_data_start(self) -> int:
        return (self._list_len + 2) * 8

    @property
    def _offset_packing_formats(self) -> int:
        return self._offset_data_start + self._allocated_offsets[-1]

    @property
    def _offset_back_transform_codes(self) -> int:
        return self._offset_packing_formats + self._list_len * 8

    def _position(self, position: int) -> int:
        """``position`` as an index in range(len), or IndexError."""
        index = position + self._list_len if position < 0 else position
        if not 0 <= index < self._list_len:
            raise IndexError("Requested position out of range.")
        return index

    def _get_packing_format(self, position: int) -> str:
        index = self._position(position)
        (fmt,) = struct.unpack_from("8s", self.shm.buf, self._offset_packing_formats + index * 8)
        return fmt.rstrip(b"\x00").decode(_encoding)

    def _get_back_transform(self, position: int) -> Callable[[Any], Any]:
        index = self._position(position)
        (code,) = struct.unpack_from("b", self.shm.buf, self._offset_back_transform_codes + index)
        return _BACK_TRANSFORMS[code]

    def _set_packing_format_and_transform(self, position: int, fmt: str, value: Any) -> None:
        index = self._position(position)
        buf = self.shm.buf
        struct.pack_into("8s", buf, self._offset_packing_formats + index * 8, fmt.encode(_encoding))
        struct.pack_into(
            "b", buf, self._offset_back_transform_codes + index, _transform_code(value)
        )

    # -- the sequence protocol ---------------------------------------------

    def __getitem__(self, position: int) -> Any:
        try:
            index = self._position(position)
        except IndexError:
            raise IndexError("index out of range") from None
        offset = self._offset_data_start + self._allocated_offsets[index]
        (value,) = struct.unpack_from(self._get_packing_format(index), self.shm.buf, offset)
        return self._get_back_transform(index)(value)

    def __setitem__(self, position: int, value: Any) -> None:
        try:
            index = self._position(position)
        except IndexError:
            raise IndexError("assignment index out of range") from None
        start = self._allocated_offsets[index]
        if isinstance(value, (str, bytes)):
            slot = self._allocated_offsets[index + 1] - start
            encoded = value.encode(_encoding) if isinstance(value, str) else value
            if len(encoded) > slot:
                raise ValueError("bytes/str item exceeds available storage")
            current = self._get_packing_format(index)
            fmt = current if current.endswith("s") else f"{slot}s"
        else:
            fmt = self._format_for(value)
            encoded = value
        self._set_packing_format_and_transform(index, fmt, value)
        struct.pack_into(fmt, self.shm.buf, self._offset_data_start + start, encoded)

    def __len__(self) -> int:
        return struct.unpack_from("q", self.shm.buf, 0)[0]

    def __iter__(self) -> Iterator[Any]:
        for index in range(self._list_len):
            yield self[index]

    def __reduce__(self) -> Any:
        return partial(type(self), name=self.shm.name), ()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({list(self)}, name={self.shm.name!r})"

    @property
    def format(self) -> str:
        """The struct format of all the items, concatenated."""
        return "".join(self._get_packing_format(i) for i in range(self._list_len))

    def count(self, value: Any) -> int:
        """Return the number of items equal to ``value``."""
        return sum(value == item for item in self)

    def index(self, value: Any) -> int:
        """Return the position of the first item equal to ``value``; ValueError if none."""
        for position, item in enumerate(self):
            if value == item:
                return position
        raise ValueError(f"{value!r} not in this container")

    def __class_getitem__(cls, item: Any) -> types.GenericAlias:
        return types.GenericAlias(cls, item)
