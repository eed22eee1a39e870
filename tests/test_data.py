"""The Fashion-MNIST loader: split, checksums, sources, and every bad-input path."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import keras
import numpy as np
import pytest

from bnbook import data
from bnbook.training import compile_sgd, fit, set_seed
from bnbook.data import (FILES, DataError, find_data_dir, image_batches, load_fashion_mnist, read_idx,
                         repeated_batches, scale_pixels, subset)
from tiny import small_model

LABELS = FILES["train-labels-idx1-ubyte"]


@pytest.fixture(scope="module")
def real_dir() -> Path:
    """The folder the loader finds on this machine (Debian's package in CI)."""
    return find_data_dir(download=False)


@pytest.fixture
def copy_of_real(real_dir: Path, tmp_path: Path) -> Path:
    """A private folder with the four real files, as .gz, safe to damage."""
    for name in FILES:
        source = real_dir / f"{name}.gz"
        if source.is_file():
            shutil.copyfile(source, tmp_path / f"{name}.gz")
        else:
            with gzip.open(tmp_path / f"{name}.gz", "wb") as out:
                out.write((real_dir / name).read_bytes())
    return tmp_path


@pytest.fixture
def nowhere(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No Debian package, an empty Keras cache, and no internet."""
    monkeypatch.setattr(data, "DEBIAN_DIR", tmp_path / "no-debian")
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "no-keras"))
    monkeypatch.setattr(data, "_download_to_keras_cache", lambda: None)


def _decompressed(folder: Path, name: str) -> bytes:
    return gzip.decompress((folder / f"{name}.gz").read_bytes())


def test_split_shapes_types_and_ranges() -> None:
    (x_train, y_train), (x_valid, y_valid), (x_test, y_test) = load_fashion_mnist()
    assert x_train.shape == (55_000, 28, 28) and y_train.shape == (55_000,)
    assert x_valid.shape == (5_000, 28, 28) and y_valid.shape == (5_000,)
    assert x_test.shape == (10_000, 28, 28) and y_test.shape == (10_000,)
    for x in (x_train, x_valid, x_test):
        assert x.dtype == np.float32
        assert x.min() == 0.0 and x.max() == 1.0
        assert not x.flags.writeable  # shared, memory-mapped: never changed in place
    for y in (y_train, y_valid, y_test):
        assert set(np.unique(y)) == set(range(len(data.CLASS_NAMES)))


def test_validation_is_the_first_5000_training_images(real_dir: Path) -> None:
    (x_train, y_train), (x_valid, y_valid), _ = load_fashion_mnist()
    raw_images = read_idx(data._candidate(real_dir, "train-images-idx3-ubyte"),
                          FILES["train-images-idx3-ubyte"])
    raw_labels = read_idx(data._candidate(real_dir, LABELS.name), LABELS)
    np.testing.assert_array_equal(y_valid, raw_labels[:5_000])
    np.testing.assert_array_equal(y_train, raw_labels[5_000:])
    np.testing.assert_array_equal(x_valid, raw_images[:5_000] / np.float32(255))
    np.testing.assert_array_equal(x_train[-1], raw_images[-1] / np.float32(255))


def test_unscaled_images_are_the_file_bytes_and_scale_to_the_float_images() -> None:
    scaled = load_fashion_mnist()
    raw = load_fashion_mnist(scaled=False)
    for (x, y), (pixels, labels) in zip(scaled, raw):
        assert pixels.dtype == np.uint8 and pixels.shape == x.shape and pixels.max() == 255
        np.testing.assert_array_equal(data.scale_pixels(pixels), x)
        np.testing.assert_array_equal(labels, y)


def test_a_cached_array_of_the_wrong_dtype_is_rebuilt(monkeypatch: pytest.MonkeyPatch,
                                                      tmp_path: Path) -> None:
    monkeypatch.setenv("BNBOOK_CACHE_DIR", str(tmp_path / "cache"))
    _, _, (x_test, _) = load_fashion_mnist()
    floats = next((tmp_path / "cache").glob("t10k-images*-float32.npy"))
    raw = floats.with_name(floats.name.replace("float32", "uint8"))
    raw.write_bytes(floats.read_bytes())  # float32 contents under the uint8 name
    for suffix in (".source", ".crc32"):
        raw.with_suffix(suffix).write_text(floats.with_suffix(suffix).read_text())
    _, _, (pixels, _) = load_fashion_mnist(scaled=False)
    assert pixels.dtype == np.uint8
    np.testing.assert_array_equal(data.scale_pixels(pixels), x_test)


def test_explicit_folder_and_environment_variable(copy_of_real: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    assert find_data_dir(copy_of_real) == copy_of_real
    monkeypatch.setenv("BNBOOK_DATA_DIR", str(copy_of_real))
    assert find_data_dir() == copy_of_real
    (_, y_train), _, _ = load_fashion_mnist()
    assert len(y_train) == 55_000


def test_uncompressed_files_are_accepted(copy_of_real: Path) -> None:
    for name in FILES:
        gz = copy_of_real / f"{name}.gz"
        (copy_of_real / name).write_bytes(gzip.decompress(gz.read_bytes()))
        gz.unlink()
    (_, y_train), _, (_, y_test) = load_fashion_mnist(copy_of_real)
    assert len(y_train) == 55_000 and len(y_test) == 10_000


def test_explicit_folder_without_files_is_an_error_not_a_fallback(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "train-labels-idx1-ubyte.gz").write_bytes(b"")
    with pytest.raises(DataError) as error:
        load_fashion_mnist(tmp_path)
    message = str(error.value)
    assert str(tmp_path) in message and "train-images-idx3-ubyte" in message
    assert "train-labels-idx1-ubyte," not in message  # present, so not listed as missing
    monkeypatch.setenv("BNBOOK_DATA_DIR", str(tmp_path / "missing"))
    with pytest.raises(DataError, match="given explicitly"):
        load_fashion_mnist()


@pytest.mark.usefixtures("nowhere")
def test_missing_everywhere_lists_every_way_to_provide_the_data() -> None:
    with pytest.raises(DataError) as error:
        load_fashion_mnist()
    message = str(error.value)
    for way in ("dataset-fashion-mnist", "BNBOOK_DATA_DIR", "internet"):
        assert way in message


@pytest.mark.usefixtures("nowhere")
def test_keras_cache_is_a_source(copy_of_real: Path, monkeypatch: pytest.MonkeyPatch,
                                 tmp_path: Path) -> None:
    cache = tmp_path / "no-keras" / "datasets" / "fashion-mnist"
    shutil.copytree(copy_of_real, cache)
    assert find_data_dir() == cache


def test_truncated_gzip_names_the_file(copy_of_real: Path) -> None:
    path = copy_of_real / f"{LABELS.name}.gz"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(DataError, match=LABELS.name):
        load_fashion_mnist(copy_of_real)


def test_truncated_idx_reports_expected_size(copy_of_real: Path) -> None:
    raw = _decompressed(copy_of_real, LABELS.name)
    with gzip.open(copy_of_real / f"{LABELS.name}.gz", "wb") as out:
        out.write(raw[:-100])
    with pytest.raises(DataError, match=f"expected {LABELS.size:,} bytes"):
        load_fashion_mnist(copy_of_real)


def test_flipped_byte_fails_the_checksum(copy_of_real: Path) -> None:
    raw = bytearray(_decompressed(copy_of_real, LABELS.name))
    raw[1000] = (raw[1000] + 1) % 10  # still a valid label: only the digest can tell
    with gzip.open(copy_of_real / f"{LABELS.name}.gz", "wb") as out:
        out.write(bytes(raw))
    with pytest.raises(DataError, match="SHA-256") as error:
        load_fashion_mnist(copy_of_real)
    assert LABELS.name in str(error.value) and LABELS.sha256 in str(error.value)


def test_wrong_magic_number(copy_of_real: Path) -> None:
    raw = bytearray(_decompressed(copy_of_real, LABELS.name))
    raw[3] = 0x03  # 2051, the images' magic, in a labels file
    with gzip.open(copy_of_real / f"{LABELS.name}.gz", "wb") as out:
        out.write(bytes(raw))
    with pytest.raises(DataError, match="magic number 2051 where 2049"):
        load_fashion_mnist(copy_of_real)


def test_images_swapped_for_labels_are_refused(copy_of_real: Path) -> None:
    shutil.copyfile(copy_of_real / "t10k-images-idx3-ubyte.gz",
                    copy_of_real / "t10k-labels-idx1-ubyte.gz")
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte"):
        load_fashion_mnist(copy_of_real)


def test_array_cache_is_reused_and_repaired(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("BNBOOK_CACHE_DIR", str(tmp_path / "cache"))
    first = [tuple(np.array(a) for a in split) for split in load_fashion_mnist()]  # unmapped copies
    cached = sorted((tmp_path / "cache").glob("*.npy"))
    assert len(cached) == len(FILES)  # float32 images, uint8 labels
    images = next(p for p in cached if p.name.startswith("t10k-images"))
    images.write_bytes(images.read_bytes()[:1000])  # damage it
    second = load_fashion_mnist()
    for (xa, ya), (xb, yb) in zip(first, second):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
    assert np.load(images).shape == (10_000, 28, 28)


def _flip_one_payload_byte(path: Path, offset_from_end: int) -> None:
    """Change one byte of a cached array in place, header and size intact."""
    raw = bytearray(path.read_bytes())
    raw[-offset_from_end] ^= 0x07
    path.write_bytes(bytes(raw))


def test_one_flipped_byte_in_the_cached_labels_is_caught_and_rebuilt_once(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """Issue 18: a damaged cached label array was trusted (label 72 read as 1 instead of 6)."""
    monkeypatch.setenv("BNBOOK_CACHE_DIR", str(tmp_path / "cache"))
    _, (_, y_valid), _ = load_fashion_mnist()
    truth = np.array(y_valid)
    labels = next((tmp_path / "cache").glob("train-labels-*.npy"))
    _flip_one_payload_byte(labels, 60_000 - 72)  # training label 72, in the validation split
    assert np.load(labels)[72] != truth[72]  # the damage is in the payload, the header intact
    data._VERIFIED.clear()  # a new kernel: nothing verified in this process yet
    capfd.readouterr()
    _, (_, y_valid), _ = load_fashion_mnist()
    np.testing.assert_array_equal(y_valid, truth)
    said = capfd.readouterr().err
    assert said.count("damaged") == 1 and labels.name in said
    data._VERIFIED.clear()
    load_fashion_mnist()  # rebuilt: verified, and nothing more is said
    assert capfd.readouterr().err == ""


def test_a_damaged_cached_image_is_caught_in_either_dtype(monkeypatch: pytest.MonkeyPatch,
                                                          tmp_path: Path) -> None:
    monkeypatch.setenv("BNBOOK_CACHE_DIR", str(tmp_path / "cache"))
    for scaled in (True, False):
        _, _, (x_test, _) = load_fashion_mnist(scaled=scaled)
        truth = np.array(x_test)
        dtype = "float32" if scaled else "uint8"
        images = next((tmp_path / "cache").glob(f"t10k-images-*-{dtype}.npy"))
        _flip_one_payload_byte(images, 1)  # the last pixel's last byte
        data._VERIFIED.clear()
        _, _, (x_test, _) = load_fashion_mnist(scaled=scaled)
        np.testing.assert_array_equal(x_test, truth)


def test_a_cache_is_checked_once_per_process_unless_it_changes(monkeypatch: pytest.MonkeyPatch,
                                                               tmp_path: Path) -> None:
    """A chapter that loads twice pays for one check; a file replaced since is checked again."""
    monkeypatch.setenv("BNBOOK_CACHE_DIR", str(tmp_path / "cache"))
    load_fashion_mnist(scaled=False)
    checked: list[Path] = []
    crc = data._file_crc32
    monkeypatch.setattr(data, "_file_crc32", lambda path: checked.append(path) or crc(path))
    load_fashion_mnist(scaled=False)
    assert checked == []
    labels = next((tmp_path / "cache").glob("t10k-labels-*.npy"))
    copy = labels.with_name("copy")
    shutil.copyfile(labels, copy)
    copy.replace(labels)  # same bytes, another file
    load_fashion_mnist(scaled=False)
    assert checked == [labels]


def test_a_cache_without_a_checksum_is_rebuilt_silently(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                        capfd: pytest.CaptureFixture[str]) -> None:
    """A cache made by the loader before checksums (no .crc32 beside it) is replaced, not reported."""
    monkeypatch.setenv("BNBOOK_CACHE_DIR", str(tmp_path / "cache"))
    load_fashion_mnist(scaled=False)
    crc = next((tmp_path / "cache").glob("t10k-labels-*.crc32"))
    crc.unlink()
    data._VERIFIED.clear()
    capfd.readouterr()
    load_fashion_mnist(scaled=False)
    assert capfd.readouterr().err == ""
    assert int(crc.read_text(), 16) == data._file_crc32(crc.with_suffix(".npy"))


def test_file_crc32_is_zlib_crc32_of_the_whole_file(tmp_path: Path) -> None:
    import zlib

    path = tmp_path / "bytes"
    payload = np.random.default_rng(0).bytes(10_000)
    path.write_bytes(payload)
    assert data._file_crc32(path, chunk_bytes=4096) == zlib.crc32(payload)
    path.write_bytes(payload[:-1] + bytes([payload[-1] ^ 1]))
    assert data._file_crc32(path) != zlib.crc32(payload)


def test_subset_is_reproducible_and_checks_its_size() -> None:
    x = np.arange(100, dtype=np.float32).reshape(100, 1)
    y = np.arange(100)
    xa, ya = subset(x, y, 10, seed=3)
    xb, yb = subset(x, y, 10, seed=3)
    np.testing.assert_array_equal(ya, yb)
    np.testing.assert_array_equal(xa[:, 0], ya)  # images and labels stay paired
    assert len(set(ya)) == 10
    assert not np.array_equal(subset(x, y, 10, seed=4)[1], ya)
    for bad in (0, 101):
        with pytest.raises(ValueError):
            subset(x, y, bad)


@pytest.mark.parametrize("dtype", ["uint8", "float32"])
def test_image_batches_train_exactly_like_fit_on_the_arrays(dtype: str) -> None:
    """uint8 pixels: the batches of fit on the scaled floats; float images: of fit on them."""
    pixels = np.random.default_rng(1).integers(0, 256, (1000, 28, 28), dtype=np.uint8)
    labels = (pixels[:, :14].mean(axis=(1, 2)) > pixels[:, 14:].mean(axis=(1, 2))).astype(np.uint8)
    images = pixels if dtype == "uint8" else scale_pixels(pixels)

    def weights_after(batches: bool) -> list[np.ndarray]:
        set_seed(3)
        model = compile_sgd(small_model(), 0.1)
        if batches:
            fit(model, image_batches(images, labels, batch_size=32, shuffle=True),
                epochs=2, verbose=False)
        else:
            fit(model, scale_pixels(pixels), labels, epochs=2, batch_size=32, verbose=False)
        return model.get_weights()

    for a, b in zip(weights_after(True), weights_after(False), strict=True):
        np.testing.assert_array_equal(a, b)


def test_repeated_batches_are_full_reshuffled_passes() -> None:
    x = np.arange(10, dtype=np.float32)[:, None]
    y = np.arange(10, dtype=np.uint8)
    batches = [b[1].numpy().tolist() for b in repeated_batches(x, y, 4, shuffle=True, seed=0).take(5)]
    assert all(len(b) == 4 for b in batches)           # the remainder of a pass is dropped
    assert len(set(batches[0] + batches[1])) == 8      # no repeat within a pass
    full = next(iter(repeated_batches(x, y, 10, shuffle=True, seed=0)))
    assert full[1].numpy().tolist() == list(range(10))  # the whole set, in order
    with pytest.raises(ValueError):
        next(iter(image_batches(x, y, batch_size=0)))


def test_domain_shifts() -> None:
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(5, 28, 28), dtype=np.uint8)
    x = scale_pixels(pixels)
    lit = data.domain_shift(pixels, "lighting")
    gain = (lit[:, :, -1] - lit[:, :, -1].mean()) / (x[:, :, -1] - x[:, :, -1].mean())
    np.testing.assert_allclose(lit[:, :, -1], x[:, :, -1], atol=1e-6)       # right edge: as before
    np.testing.assert_allclose(lit[:, :, 0], 0.35 * x[:, :, 0] + 0.3, atol=1e-6)
    assert np.all(np.isfinite(gain))
    np.testing.assert_allclose(data.domain_shift(x, "invert"), 1 - x)
    noisy = data.domain_shift(x, "noise", seed=1)
    assert noisy.min() >= 0 and noisy.max() <= 1 and 0.15 < np.abs(noisy - x).mean() < 0.3
    np.testing.assert_array_equal(noisy, data.domain_shift(x, "noise", seed=1))
    np.testing.assert_array_equal(data.domain_shift(x, "translate")[:, :, 2:], x[:, :, :-2])
    assert all(data.domain_shift(x, k).dtype == np.float32
               for k in ("lighting", "noise", "translate", "invert"))
    with pytest.raises(ValueError, match="unknown shift"):
        data.domain_shift(x, "blur")


def test_padded_row_sequences_keep_the_middle_rows_and_pad_the_end() -> None:
    rng = np.random.default_rng(0)
    x = rng.random((200, 28, 28), dtype=np.float32)
    sequences, lengths = data.padded_row_sequences(x, min_length=6, seed=3)
    assert sequences.shape == x.shape and lengths.min() >= 6 and lengths.max() <= 28
    assert len(np.unique(lengths)) > 15
    for i in (0, 1, 2):
        n, top = lengths[i], (28 - lengths[i]) // 2
        np.testing.assert_array_equal(sequences[i, :n], x[i, top:top + n])
        assert np.all(sequences[i, n:] == -1.0)
    again, _ = data.padded_row_sequences(x, min_length=6, seed=3)
    np.testing.assert_array_equal(again, sequences)
    with pytest.raises(ValueError, match="grey level"):
        data.padded_row_sequences(x, min_length=6, pad_value=0.0)
    with pytest.raises(ValueError, match="min_length"):
        data.padded_row_sequences(x, min_length=0)
def test_repeated_batches_scale_grey_levels_as_the_loader_does() -> None:
    pixels = np.arange(12, dtype=np.uint8).reshape(6, 2) * 20
    labels = np.arange(6, dtype=np.uint8)
    for batch_size in (3, 6):   # mini-batches and the full batch
        images, y = next(iter(repeated_batches(pixels, labels, batch_size, shuffle=False, seed=0)))
        assert images.dtype == np.float32
        np.testing.assert_array_equal(images.numpy(), scale_pixels(pixels[y.numpy()]))


def test_as_tensor_copies_a_read_only_array_once_and_forgets_it_with_the_array() -> None:
    import gc

    pixels = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    pixels.setflags(write=False)
    first = data.as_tensor(pixels)
    assert data.as_tensor(pixels) is first              # one copy, however often it is asked
    np.testing.assert_array_equal(first.numpy(), pixels)
    cached = len(data._TENSORS)
    del pixels
    gc.collect()
    assert len(data._TENSORS) == cached - 1           # the copy goes with its array


def test_as_tensor_converts_writeable_arrays_every_time() -> None:
    pixels = np.zeros((2, 3), dtype=np.float32)
    first = data.as_tensor(pixels)
    pixels[0, 0] = 1.0                                  # a writeable array may change ...
    assert data.as_tensor(pixels) is not first          # ... so it is converted afresh
    assert float(data.as_tensor(pixels)[0, 0]) == 1.0


def _file_pages_mb() -> float:
    """The file-backed memory this process has mapped in, in MB (Linux)."""
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status
                    if line.startswith("RssFile:")) / 1024


@pytest.fixture
def mapped_pixels(tmp_path: Path) -> np.ndarray:
    """57 MB of bytes mapped from a file, every page read, as the loader's arrays are."""
    np.save(tmp_path / "pixels.npy", np.arange(60_000_000, dtype=np.uint8) % 251)
    mapped = np.load(tmp_path / "pixels.npy", mmap_mode="r")
    assert int(mapped.sum(dtype=np.int64)) > 0
    return mapped


def test_as_tensor_hands_back_the_pages_of_a_file_mapped_array(mapped_pixels) -> None:
    pixels = mapped_pixels[1000:]                                      # a view, as the loader's
    before = _file_pages_mb()
    tensor = data.as_tensor(pixels)
    assert _file_pages_mb() < before - 40, "the 57 MB of file pages should have gone"
    np.testing.assert_array_equal(pixels[-5:], tensor.numpy()[-5:])    # still readable


def test_as_tensor_hands_back_only_the_pages_of_the_view_it_converts(mapped_pixels) -> None:
    before = _file_pages_mb()
    data.as_tensor(mapped_pixels[:30_000_000])                         # the first half
    dropped = before - _file_pages_mb()
    assert 20 < dropped < 40, f"{dropped:.0f} MB dropped; the half is 29 MB"
