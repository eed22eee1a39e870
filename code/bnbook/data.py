"""Fashion-MNIST, loaded offline-first and verified byte for byte.

``load_fashion_mnist`` reads the four original IDX files (gzip-compressed or
not) and returns the split of the book's seed notebook::

    (x_train, y_train), (x_valid, y_valid), (x_test, y_test)

* validation = the **first** 5,000 images of the official training set,
* train      = the remaining 55,000,
* test       = the official 10,000 test images.

Images are ``float32`` in ``[0, 1]`` with shape ``(n, 28, 28)``; labels are
``uint8`` class indices ``0..9`` (names in ``CLASS_NAMES``). With
``scaled=False`` the images are the files' own ``uint8`` grey levels ``0..255``,
a quarter of the memory (:func:`image_batches` scales them one
batch at a time, to the same float32 values).

Where the files come from, in this order:

1. ``data_dir`` argument, else the environment variable ``BNBOOK_DATA_DIR``.
   An explicit folder must hold the files: it is never silently skipped.
2. Debian's package ``dataset-fashion-mnist``: ``/usr/share/datasets/fashion-mnist``.
3. The Keras cache: ``$KERAS_HOME/datasets/fashion-mnist`` (default ``~/.keras``).
4. A download through ``keras.utils.get_file`` (needs internet).

Every file's **decompressed** bytes are checked against a SHA-256 digest
(the ``.gz`` wrappers differ between mirrors; their contents do not), so a
truncated or corrupted file raises ``DataError`` instead of training on
garbage. The decoded arrays are cached as ``.npy`` files (folder:
``BNBOOK_CACHE_DIR``, default ``~/.cache/bnbook``), named by those digests and
stamped with the source file they were verified from, so later kernels skip
the decompression and the SHA-256 unless the source file changed. The stamp
also holds the CRC-32 of the ``.npy`` file, checked when a kernel first maps
it: a cache damaged on disk (one flipped byte) is rebuilt from the verified
source, with one line on stderr that says so.
"""

from __future__ import annotations

import gzip
import hashlib
import mmap
import os
import sys
import threading
import weakref
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

if TYPE_CHECKING:
    import tensorflow as tf

__all__ = [
    "CLASS_NAMES",
    "DEBIAN_DIR",
    "DataError",
    "IdxFile",
    "FILES",
    "as_tensor",
    "find_data_dir",
    "image_batches",
    "DomainShift",
    "domain_shift",
    "load_fashion_mnist",
    "padded_row_sequences",
    "read_idx",
    "repeated_batches",
    "scale_pixels",
    "subset",
]

CLASS_NAMES: tuple[str, ...] = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
KERAS_ORIGIN = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/"
N_VALID = 5_000
IDX_IMAGES_MAGIC = 2051  # 0x00000803: unsigned bytes, 3 dimensions
IDX_LABELS_MAGIC = 2049  # 0x00000801: unsigned bytes, 1 dimension


class DataError(RuntimeError):
    """Fashion-MNIST is missing, incomplete or corrupted; the message says what to do."""


@dataclass(frozen=True)
class IdxFile:
    """One of the four original files: its name, digest and expected shape."""

    name: str
    sha256: str
    shape: tuple[int, ...]

    @property
    def magic(self) -> int:
        return IDX_IMAGES_MAGIC if len(self.shape) == 3 else IDX_LABELS_MAGIC

    @property
    def size(self) -> int:
        """Expected size in bytes: the header plus one byte per value."""
        return 4 + 4 * len(self.shape) + int(np.prod(self.shape))


FILES: dict[str, IdxFile] = {
    f.name: f
    for f in (
        IdxFile("train-images-idx3-ubyte",
                "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
                (60_000, 28, 28)),
        IdxFile("train-labels-idx1-ubyte",
                "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
                (60_000,)),
        IdxFile("t10k-images-idx3-ubyte",
                "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
                (10_000, 28, 28)),
        IdxFile("t10k-labels-idx1-ubyte",
                "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
                (10_000,)),
    )
}

HOW_TO_GET_DATA = (
    "Provide Fashion-MNIST in one of these ways:\n"
    "  * install Debian's package:  sudo apt-get install dataset-fashion-mnist\n"
    f"    (it puts the files in {DEBIAN_DIR});\n"
    "  * put the four files train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz,\n"
    "    t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz in a folder and set\n"
    "    BNBOOK_DATA_DIR=/that/folder (or pass data_dir=...);\n"
    "  * run once on a machine with internet access: the files are downloaded\n"
    "    into the Keras cache (~/.keras/datasets/fashion-mnist)."
)


def _candidate(folder: Path, name: str) -> Path | None:
    """The file ``name`` in ``folder``, compressed or not, if it is there."""
    for path in (folder / f"{name}.gz", folder / name):
        if path.is_file():
            return path
    return None


def _has_all_files(folder: Path) -> bool:
    return all(_candidate(folder, name) for name in FILES)


def _keras_cache_dir() -> Path:
    home = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras"))
    return home / "datasets" / "fashion-mnist"


def _download_to_keras_cache() -> Path | None:
    """Download the files with ``keras.utils.get_file``; ``None`` when offline."""
    try:
        import keras  # imported here: the loader must not need Keras otherwise

        for name in FILES:
            keras.utils.get_file(f"{name}.gz", origin=KERAS_ORIGIN + f"{name}.gz",
                                 cache_subdir="datasets/fashion-mnist")
    except Exception:  # noqa: BLE001 - any failure means "no download possible"
        return None
    return _keras_cache_dir()


def find_data_dir(data_dir: str | os.PathLike[str] | None = None, *,
                  download: bool = True) -> Path:
    """Return the first folder that holds all four files, in the documented order."""
    explicit = data_dir if data_dir is not None else os.environ.get("BNBOOK_DATA_DIR")
    if explicit:
        folder = Path(explicit).expanduser()
        if not _has_all_files(folder):
            missing = [n for n in FILES if _candidate(folder, n) is None]
            raise DataError(
                f"The folder {folder} (given explicitly) lacks {', '.join(missing)} "
                f"(.gz or uncompressed).\n{HOW_TO_GET_DATA}")
        return folder
    for folder in (DEBIAN_DIR, _keras_cache_dir()):
        if _has_all_files(folder):
            return folder
    downloaded = _download_to_keras_cache() if download else None
    if downloaded is not None and _has_all_files(downloaded):
        return downloaded
    raise DataError(f"Fashion-MNIST was not found anywhere.\n{HOW_TO_GET_DATA}")


def _read_bytes(path: Path) -> bytes:
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as fh:
                return fh.read()
        return path.read_bytes()
    except (OSError, EOFError) as err:  # gzip raises these on truncated or bad files
        raise DataError(f"{path} cannot be read as a gzip or IDX file ({err}). "
                        "The file is damaged: delete it and provide it again.\n"
                        f"{HOW_TO_GET_DATA}") from err


def read_idx(path: Path, spec: IdxFile) -> np.ndarray:
    """Read one IDX file and check size, magic number, shape and SHA-256 digest."""
    raw = _read_bytes(path)
    if len(raw) != spec.size:
        raise DataError(f"{path}: expected {spec.size:,} bytes once decompressed, "
                        f"found {len(raw):,}; the file is truncated or wrong.")
    magic = int.from_bytes(raw[:4], "big")
    if magic != spec.magic:
        raise DataError(f"{path}: IDX magic number {magic} where {spec.magic} was "
                        f"expected for {spec.name}; this is not that file.")
    dims = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big")
                 for i in range(len(spec.shape)))
    if dims != spec.shape:
        raise DataError(f"{path}: IDX header says shape {dims}, expected {spec.shape}.")
    digest = hashlib.sha256(raw).hexdigest()
    if digest != spec.sha256:
        raise DataError(f"{path}: SHA-256 of the decompressed bytes is {digest}, "
                        f"expected {spec.sha256}; the file is corrupted.")
    header = 4 + 4 * len(spec.shape)
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(spec.shape)


def _npy_cache_dir() -> Path:
    """``BNBOOK_CACHE_DIR``, else ``$XDG_CACHE_HOME/bnbook`` (default ``~/.cache/bnbook``)."""
    if os.environ.get("BNBOOK_CACHE_DIR"):
        return Path(os.environ["BNBOOK_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "bnbook"


def _source_stamp(path: Path) -> str:
    """Identifies the verified source file: its resolved path, size and mtime."""
    stat = path.stat()
    return f"{path.resolve()}\n{stat.st_size}\n{stat.st_mtime_ns}\n"


def scale_pixels(pixels: np.ndarray) -> np.ndarray:
    """Grey levels 0..255 (uint8) to float32 in [0, 1]: ``pixels / 255`` in float32."""
    return pixels.astype(np.float32) / np.float32(255.0)


def _load_array(folder: Path, spec: IdxFile, scaled: bool) -> np.ndarray:
    """The decoded file, from the ``.npy`` cache when it was made from this very file.

    The cache (uint8 as in the file, or float32 images scaled to [0, 1]) is
    named by the file's digest and dtype. Beside it, ``<name>.source`` holds the
    source's path, size and modification time, so a source that changed since,
    damaged or not, is read and verified again; ``<name>.crc32`` holds the
    CRC-32 of the ``.npy`` file as written, so a cache damaged since (one
    flipped byte is enough) is rebuilt from the verified source, with one line
    on stderr that says so.
    """
    path = _candidate(folder, spec.name)
    assert path is not None  # find_data_dir checked it
    dtype = np.dtype(np.float32 if scaled and len(spec.shape) == 3 else np.uint8)
    cached = _npy_cache_dir() / f"{spec.name}-{spec.sha256[:16]}-{dtype.name}.npy"
    source = _source_stamp(path)
    verdict = _verify_cache(cached, source)
    if verdict == "ok":
        array = _map_cache(cached, spec, dtype)
        if array is not None:
            return array
    elif verdict == "damaged":
        print(f"bnbook.data: the cached array {cached} does not match the CRC-32 stored beside "
              f"it (the file was damaged); rebuilding it from the verified {path}",
              file=sys.stderr, flush=True)
    array = read_idx(path, spec)
    if dtype == np.float32:
        array = scale_pixels(array)
    _write_cache(cached, array, source)
    mapped = _map_cache(cached, spec, dtype) if _verify_cache(cached, source) == "ok" else None
    if mapped is not None:
        return mapped
    array.setflags(write=False)
    return array


#: The ``.npy`` files this process has verified: path -> (inode, size, mtime in ns, CRC-32).
#: A kernel that loads the data twice checks each file once, unless it changed on disk.
_VERIFIED: dict[Path, tuple[int, int, int, int]] = {}


def _file_crc32(path: Path, chunk_bytes: int = 1 << 20) -> int:
    """CRC-32 (``zlib.crc32``) of a file's bytes, read in chunks of ``chunk_bytes``.

    Read with plain reads, not through a memory map, so that checking a cached
    array does not make all its pages part of the process's resident memory.
    CRC-32 detects every error burst of up to 32 bits, so any one damaged byte.
    """
    crc, buffer = 0, bytearray(chunk_bytes)
    view = memoryview(buffer)
    with open(path, "rb", buffering=0) as handle:
        while n := handle.readinto(buffer):
            crc = zlib.crc32(view[:n], crc)
    return crc


def _verify_cache(cached: Path, source: str) -> str:
    """``"ok"``; ``"stale"``: missing, made from another source file, or without a
    checksum (made by an older loader); ``"damaged"``: its CRC-32 no longer matches."""
    try:
        made_from = cached.with_suffix(".source").read_text()
        expected = int(cached.with_suffix(".crc32").read_text().strip(), 16)
        stat = cached.stat()
    except (OSError, ValueError):
        return "stale"
    if made_from != source:
        return "stale"
    key = (stat.st_ino, stat.st_size, stat.st_mtime_ns, expected)
    if _VERIFIED.get(cached) == key:
        return "ok"
    if _file_crc32(cached) != expected:
        _VERIFIED.pop(cached, None)
        return "damaged"
    _VERIFIED[cached] = key
    return "ok"


def _map_cache(cached: Path, spec: IdxFile, dtype: np.dtype) -> np.ndarray | None:
    """The cached array, memory-mapped read-only; ``None`` if missing or damaged.

    Mapping instead of reading keeps a chapter that uses a subset from paying
    for all 60,000 images, and lets processes share the same pages.
    """
    try:
        array = np.load(cached, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError):
        return None
    return array if array.shape == spec.shape and array.dtype == dtype else None


def _write_cache(path: Path, array: np.ndarray, source: str) -> None:
    """Write the array, its CRC-32 and its source stamp, each atomically (the same
    array always gives the same bytes, so writers in other processes agree); an
    unwritable cache folder just means no cache."""
    unique = f"{os.getpid()}-{threading.get_ident()}"
    tmp = {suffix: path.with_suffix(f".{unique}.tmp{suffix}") for suffix in (".npy", ".crc32", ".source")}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(tmp[".npy"], array, allow_pickle=False)
        crc = _file_crc32(tmp[".npy"])
        tmp[".crc32"].write_text(f"{crc:08x}\n")
        tmp[".source"].write_text(source)
        for suffix, written in tmp.items():
            written.replace(path.with_suffix(suffix))
        stat = path.stat()
        _VERIFIED[path] = (stat.st_ino, stat.st_size, stat.st_mtime_ns, crc)
    except OSError:
        for leftover in tmp.values():
            leftover.unlink(missing_ok=True)


Split = tuple[np.ndarray, np.ndarray]


def load_fashion_mnist(data_dir: str | os.PathLike[str] | None = None, *,
                       scaled: bool = True) -> tuple[Split, Split, Split]:
    """Return ``(x_train, y_train), (x_valid, y_valid), (x_test, y_test)``.

    Validation is the first 5,000 official training images, train the other
    55,000, test the official 10,000. Images: float32 in [0, 1], shape
    ``(n, 28, 28)``; with ``scaled=False``, the uint8 grey levels 0..255 of
    the files (``scale_pixels`` turns them into the float32 images). Labels:
    uint8 in 0..9. The arrays are read-only (mapped from the cache): copy one
    before changing it in place. Raises ``DataError`` with instructions when
    the data is missing or does not match its checksums.
    """
    folder = find_data_dir(data_dir)
    x_full = _load_array(folder, FILES["train-images-idx3-ubyte"], scaled)
    y_full = _load_array(folder, FILES["train-labels-idx1-ubyte"], scaled)
    x_test = _load_array(folder, FILES["t10k-images-idx3-ubyte"], scaled)
    y_test = _load_array(folder, FILES["t10k-labels-idx1-ubyte"], scaled)
    return ((x_full[N_VALID:], y_full[N_VALID:]),
            (x_full[:N_VALID], y_full[:N_VALID]),
            (x_test, y_test))


def subset(x: np.ndarray, y: np.ndarray, n: int, *, seed: int = 0) -> Split:
    """``n`` examples drawn without replacement by a fixed permutation of ``seed``.

    Experiments that do not need all 55,000 images use this, so that every
    chapter draws its subsets the same reproducible way.
    """
    if not 0 < n <= len(x):
        raise ValueError(f"n must be between 1 and {len(x)}, got {n}")
    index = np.random.default_rng(seed).permutation(len(x))[:n]
    return x[index], y[index]


# --------------------------------------------------------------------------- input pipelines
_TENSORS: dict[int, tuple[weakref.ref, Any]] = {}


def as_tensor(array: Any) -> tf.Tensor:
    """``array`` as a TensorFlow tensor, copied once per read-only NumPy array.

    ``tf.convert_to_tensor`` copies a NumPy array every time, and a dataset
    that ``fit`` has iterated can keep its copy alive, so a page that fits
    several models on the same 55,000 images would hold the images several
    times over. The loader's arrays are read-only, so their contents cannot
    change: for such an array this returns the same tensor on every call, for
    as long as the array lives. Writeable arrays, tensors and other inputs are
    converted as usual.

    An array mapped from a file (the loader's ``.npy`` cache) is read into the
    tensor, after which its pages need not stay in this process's memory:
    they are handed back (``madvise(MADV_DONTNEED)``) and read again from the
    file, transparently, if the array is used later.
    """
    import tensorflow as tf

    if not isinstance(array, np.ndarray) or array.flags.writeable:
        return tf.convert_to_tensor(array)
    key = id(array)
    cached = _TENSORS.get(key)
    if cached is not None and cached[0]() is array:
        return cached[1]
    tensor = tf.convert_to_tensor(array)
    _hand_back_pages(array)
    forget = weakref.ref(array, lambda _, key=key: _TENSORS.pop(key, None))
    _TENSORS[key] = (forget, tensor)
    return tensor


def _hand_back_pages(array: np.ndarray) -> None:
    """Drop from this process the file pages that a memory-mapped, contiguous ``array``
    occupies (whole pages only); reading the array again maps them back in."""
    mapping = getattr(array, "_mmap", None)   # set on np.memmap arrays and their views
    if not (isinstance(mapping, mmap.mmap) and hasattr(mmap, "MADV_DONTNEED")
            and array.flags.c_contiguous and array.nbytes):
        return
    base = np.frombuffer(mapping, dtype=np.uint8).__array_interface__["data"][0]
    start = array.__array_interface__["data"][0] - base
    first = -(-start // mmap.PAGESIZE) * mmap.PAGESIZE            # round up to a page
    last = (start + array.nbytes) // mmap.PAGESIZE * mmap.PAGESIZE  # round down
    if last > first:
        mapping.madvise(mmap.MADV_DONTNEED, first, last - first)


def image_batches(pixels: np.ndarray | tf.Tensor, labels: np.ndarray | tf.Tensor, *,
                  batch_size: int = 32, shuffle: bool = False) -> tf.data.Dataset:
    """The batches ``model.fit`` trains on, given the images as ``pixels``.

    The order is the one ``fit`` draws from arrays: Keras' array adapter
    permutes all indices with ``tf.random.shuffle`` inside the dataset and cuts
    the permutation into batches, the last one partial. Seed before calling
    (``bnbook.training.set_seed``): under a global seed the shuffle's seed is
    fixed when the dataset is made, and each epoch (each new pass over the
    dataset) starts the shuffle again from that seed, so every epoch draws the
    **same** permutation, as a seeded ``fit(x, y, shuffle=True)`` does in Keras
    3; different seeds draw different permutations.

    * uint8 ``pixels`` (``load_fashion_mnist(scaled=False)``): each batch is
      gathered from the bytes and divided by 255 in float32, as
      :func:`scale_pixels` does, so the batches are those of
      ``fit(scale_pixels(pixels), labels)``, while the training set sits in
      memory as 43 MB of bytes instead of 172 MB of floats.
    * float ``pixels``: the batches of ``fit(pixels, labels)`` itself. Made
      before training, for instance under a lock while other threads train,
      the dataset fixes its shuffling order there, not inside ``fit``.

    Same numbers either way (the tests compare the weights).
    """
    import tensorflow as tf

    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    pixels, labels = as_tensor(pixels), as_tensor(labels)
    scale = pixels.dtype == tf.uint8
    n = int(pixels.shape[0])
    n_full = n // batch_size * batch_size

    def permutation(_: tf.Tensor) -> tf.Tensor:  # as keras' ArrayDataAdapter
        indices = tf.range(n, dtype=tf.int64)
        return tf.random.shuffle(indices) if shuffle else indices

    def batch_indices(indices: tf.Tensor) -> tf.data.Dataset:
        batches = tf.data.Dataset.from_tensor_slices(
            tf.reshape(indices[:n_full], [-1, batch_size]))
        if n_full < n:
            rest = tf.data.Dataset.from_tensors(indices[n_full:])
            batches = batches.concatenate(rest)
        return batches

    def gather(indices: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        images = tf.gather(pixels, indices)
        if scale:
            images = tf.cast(images, tf.float32) / tf.constant(255.0, tf.float32)
        return images, tf.gather(labels, indices)

    n_batches = -(-n // batch_size)
    return (tf.data.Dataset.range(1).map(permutation).prefetch(1)
            .flat_map(batch_indices)
            .map(gather, num_parallel_calls=tf.data.AUTOTUNE)
            # Keras then knows the epoch's length
            .apply(tf.data.experimental.assert_cardinality(n_batches))
            .prefetch(tf.data.AUTOTUNE))


def repeated_batches(pixels: Any, labels: Any, batch_size: int, *, shuffle: bool,
                     seed: int) -> tf.data.Dataset:
    """An endless stream of full batches: shuffled passes over the data, one after the other.

    For runs measured in optimizer steps rather than epochs: each pass is
    reshuffled (``seed`` fixes the sequence of orders) and cut into full
    batches of ``batch_size``; the remainder of a pass is dropped. A
    ``batch_size`` of at least the number of examples gives the whole set as
    one batch at every step (full-batch gradient descent). uint8 ``pixels``
    (grey levels) are scaled to [0, 1] batch by batch, as :func:`image_batches`
    and :func:`scale_pixels` do.
    """
    import tensorflow as tf

    pixels, labels = tf.convert_to_tensor(pixels), tf.convert_to_tensor(labels)
    if batch_size >= len(pixels):
        dataset = tf.data.Dataset.from_tensors((pixels, labels)).repeat()
    else:
        dataset = tf.data.Dataset.from_tensor_slices((pixels, labels))
        if shuffle:
            dataset = dataset.shuffle(len(pixels), seed=seed, reshuffle_each_iteration=True)
        dataset = dataset.repeat().batch(batch_size, drop_remainder=True)
    if pixels.dtype == tf.uint8:
        dataset = dataset.map(lambda images, y: (tf.cast(images, tf.float32)
                                                 / tf.constant(255.0, tf.float32), y))
    return dataset


DomainShift = Literal["lighting", "noise", "translate", "invert"]


def domain_shift(x: np.ndarray, kind: DomainShift, *, seed: int = 0) -> np.ndarray:
    """Images of ``x`` (uint8 grey levels or floats in [0, 1]) moved to another domain, float32.

    * ``"lighting"``: uneven light, ``a * x + b`` with a per-pixel gain ``a``
      rising from 0.35 at the left edge to 1 at the right one and an offset
      ``b`` falling from 0.3 to 0: a positive affine map of every pixel;
    * ``"noise"``: Gaussian noise of standard deviation 0.3 added to every
      pixel (drawn with ``seed``), clipped to [0, 1];
    * ``"translate"``: every image moved 2 pixels to the right (the two
      columns that leave the frame come back on the left, where the images
      are background);
    * ``"invert"``: ``1 - x``, a per-pixel affine map with gain -1.
    """
    images = scale_pixels(x) if x.dtype == np.uint8 else np.asarray(x, dtype=np.float32)
    if images.shape[1:] != (28, 28):
        raise ValueError(f"expected images of shape (n, 28, 28), got {images.shape}")
    if kind == "lighting":
        ramp = np.linspace(0.0, 1.0, 28, dtype=np.float32)[None, None, :]
        return (0.35 + 0.65 * ramp) * images + 0.3 * (1.0 - ramp)
    if kind == "noise":
        noise = np.random.default_rng(seed).normal(0.0, 0.3, images.shape).astype(np.float32)
        return np.clip(images + noise, 0.0, 1.0)
    if kind == "translate":
        return np.roll(images, 2, axis=2)
    if kind == "invert":
        return 1.0 - images
    raise ValueError(f"unknown shift {kind!r}; use 'lighting', 'noise', 'translate' or 'invert'")


def padded_row_sequences(x: np.ndarray, *, min_length: int, seed: int = 0,
                         pad_value: float = -1.0) -> tuple[np.ndarray, np.ndarray]:
    """Each image as a sequence of its rows, of random length, padded at the end.

    Image ``i`` keeps its middle ``L_i`` rows, ``L_i`` drawn uniformly from
    ``min_length`` to 28 with ``seed``; they become time steps ``0 .. L_i - 1``
    (28 features each, grey levels in [0, 1]), and steps ``L_i .. 27`` are
    padding, every feature ``pad_value`` (a value no pixel takes, so a model
    can tell padding from a black row). Returns ``(sequences, lengths)``,
    shapes ``(n, 28, 28)`` float32 and ``(n,)`` int.
    """
    if not 1 <= min_length <= 28:
        raise ValueError(f"min_length must be between 1 and 28, got {min_length}")
    if 0.0 <= pad_value <= 1.0:
        raise ValueError(f"pad_value {pad_value} is a grey level; choose one outside [0, 1]")
    images = scale_pixels(x) if x.dtype == np.uint8 else np.asarray(x, dtype=np.float32)
    lengths = np.random.default_rng(seed).integers(min_length, 29, size=len(images))
    sequences = np.full(images.shape, pad_value, dtype=np.float32)
    for length in np.unique(lengths):
        rows = lengths == length
        top = (28 - length) // 2
        sequences[rows, :length] = images[rows, top:top + length]
    return sequences, lengths


def main() -> None:
    """``python -m bnbook.data``: find, verify and describe the data set."""
    folder = find_data_dir()
    (x_train, _), (x_valid, _), (x_test, _) = load_fashion_mnist(folder)
    print(f"Fashion-MNIST verified (SHA-256) from {folder}: "
          f"{len(x_train):,} train, {len(x_valid):,} validation, {len(x_test):,} test images.")


if __name__ == "__main__":
    main()
