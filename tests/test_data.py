"""Tests for captum_rig.data: image files, image folders, local CIFAR-10, writing images."""

import os
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from captum_rig.data import (
    IMAGE_EXTENSIONS,
    MAX_PIXELS,
    ImageFiles,
    image_dataset,
    image_folder,
    image_format,
    load_cifar10,
    load_image,
    load_images,
    save_image,
)
from captum_rig.synthetic import make_shapes, write_cifar10_folder


def _rgb(h=12, w=16, seed=0):
    """A random uint8 (h, w, 3) array."""
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def cifar_root(tmp_path_factory):
    """A tiny CIFAR-10 folder in torchvision's format."""
    return write_cifar10_folder(tmp_path_factory.mktemp("cifar"), n_train=23, n_test=9, seed=0)


# load_image ----------------------------------------------------------------------------


def test_load_png_rgb_exact(tmp_path):
    """An RGB PNG comes back as (3, H, W) float32 equal to pixels / 255."""
    pixels = _rgb()
    Image.fromarray(pixels).save(tmp_path / "a.png")
    x = load_image(tmp_path / "a.png")
    expected = torch.from_numpy(pixels).permute(2, 0, 1).float() / 255
    assert x.shape == (3, 12, 16) and x.dtype == torch.float32, (x.shape, x.dtype)
    assert torch.allclose(x, expected), "pixel values differ from the file's / 255"


def test_load_jpeg(tmp_path):
    """A JPEG loads to [0, 1] close to the original pixels."""
    pixels = np.full((10, 10, 3), (200, 40, 90), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "a.jpg", quality=95)
    x = load_image(str(tmp_path / "a.jpg"))
    target = torch.tensor([200, 40, 90]).float().view(3, 1, 1) / 255
    assert float((x - target).abs().max()) < 0.05, "JPEG colours far off"


def test_load_greyscale_policy(tmp_path):
    """A greyscale image for an RGB model raises unless convert=True, which repeats it."""
    grey = np.arange(64, dtype=np.uint8).reshape(8, 8) * 3
    Image.fromarray(grey, mode="L").save(tmp_path / "g.png")
    with pytest.raises(ValueError, match=r"g\.png is greyscale \(mode L\) .*convert=True"):
        load_image(tmp_path / "g.png")
    x = load_image(tmp_path / "g.png", convert=True)
    assert x.shape == (3, 8, 8), x.shape
    assert torch.equal(x[0], x[1]) and torch.equal(x[1], x[2]), "channels should be equal"
    assert torch.allclose(x[0], torch.from_numpy(grey).float() / 255), "grey values off"
    single = load_image(tmp_path / "g.png", channels=1)
    assert single.shape == (1, 8, 8), single.shape
    native = load_image(tmp_path / "g.png", channels=None)
    assert native.shape == (1, 8, 8), native.shape


def test_load_colour_for_grey_model(tmp_path):
    """A colour image for a one-channel model raises unless convert=True (luma)."""
    Image.fromarray(_rgb()).save(tmp_path / "c.png")
    with pytest.raises(ValueError, match="is colour"):
        load_image(tmp_path / "c.png", channels=1)
    x = load_image(tmp_path / "c.png", channels=1, convert=True)
    rgb = load_image(tmp_path / "c.png")
    luma = 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]
    assert x.shape == (1, 12, 16) and torch.allclose(x[0], luma, atol=1e-6), "luma differs"


def test_load_rgba_and_palette(tmp_path):
    """Alpha is dropped; palette images become RGB."""
    rgba = np.dstack([_rgb(), np.full((12, 16), 7, np.uint8)])
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "a.png")
    x = load_image(tmp_path / "a.png")
    assert torch.allclose(x, torch.from_numpy(_rgb()).permute(2, 0, 1).float() / 255), "RGBA"
    Image.fromarray(_rgb()).convert("P").save(tmp_path / "p.png")
    assert load_image(tmp_path / "p.png").shape == (3, 12, 16), "palette image"


def test_load_16_bit(tmp_path):
    """A 16-bit greyscale PNG is divided by 65535."""
    values = (np.arange(16, dtype=np.uint16).reshape(4, 4) * 4000).astype(np.uint16)
    Image.fromarray(values).save(tmp_path / "d.png")
    x = load_image(tmp_path / "d.png", channels=None)
    assert torch.allclose(x[0], torch.from_numpy(values.astype(np.float32)) / 65535), "16-bit"


@pytest.mark.parametrize(
    "size, resize, shape",
    [(32, None, (3, 32, 32)), ((20, 30), None, (3, 20, 30)), (8, 10, (3, 8, 8))],
)
def test_load_resize_and_centre_crop(tmp_path, size, resize, shape):
    """size/resize resize to cover and centre-crop, like Resize + CenterCrop."""
    Image.fromarray(_rgb(40, 60)).save(tmp_path / "a.png")
    x = load_image(tmp_path / "a.png", size=size, resize=resize)
    assert x.shape == shape, x.shape
    assert 0 <= float(x.min()) and float(x.max()) <= 1, "resized values left [0, 1]"


def test_load_matches_torchvision_preprocessing(tmp_path):
    """Resize(r) + CenterCrop(s) on the tensor equals load_image(size=s, resize=r)."""
    from torchvision import transforms as T

    Image.fromarray(_rgb(50, 70)).save(tmp_path / "a.png")
    raw = load_image(tmp_path / "a.png")
    expected = T.Compose([T.Resize(40, antialias=True), T.CenterCrop(32)])(raw)
    got = load_image(tmp_path / "a.png", size=32, resize=40)
    assert torch.allclose(got, expected.clamp(0, 1), atol=1e-6), "differs from torchvision"


def test_load_exif_orientation(tmp_path):
    """The EXIF orientation tag is applied (a rotated photo comes out upright)."""
    img = Image.fromarray(_rgb(6, 10))
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90° clockwise on display
    img.save(tmp_path / "r.jpg", exif=exif, quality=100)
    assert load_image(tmp_path / "r.jpg").shape == (3, 10, 6), "EXIF orientation ignored"


def test_load_bad_files(tmp_path):
    """Missing, non-image and truncated files raise ValueError naming the path."""
    with pytest.raises(ValueError, match=r"no such image file: .*missing\.png"):
        load_image(tmp_path / "missing.png")
    (tmp_path / "notes.png").write_text("not an image")
    with pytest.raises(ValueError, match=r"notes\.png is not an image file that Pillow can read"):
        load_image(tmp_path / "notes.png")
    Image.fromarray(_rgb(64, 64)).save(tmp_path / "full.png")
    data = (tmp_path / "full.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"cut\.png"):
        load_image(tmp_path / "cut.png")
    with pytest.raises(ValueError, match=r"is a folder, expected an image file"):
        load_image(tmp_path)


def test_load_bad_arguments(tmp_path):
    """Bad size, resize, channels and path types raise errors naming them."""
    Image.fromarray(_rgb()).save(tmp_path / "a.png")
    with pytest.raises(ValueError, match="channels must be 1, 3 or None"):
        load_image(tmp_path / "a.png", channels=4)
    with pytest.raises(ValueError, match="size must be >= 1"):
        load_image(tmp_path / "a.png", size=0)
    with pytest.raises(ValueError, match="size must be an int or a pair"):
        load_image(tmp_path / "a.png", size=(1, 2, 3))
    with pytest.raises(ValueError, match="resize must be >= max"):
        load_image(tmp_path / "a.png", size=32, resize=16)
    with pytest.raises(ValueError, match="resize needs size"):
        load_image(tmp_path / "a.png", resize=16)
    with pytest.raises(TypeError, match="path must be a str"):
        load_image(3)


def test_load_images_batch(tmp_path):
    """load_images stacks files; differing sizes need size=..."""
    Image.fromarray(_rgb(8, 8)).save(tmp_path / "a.png")
    Image.fromarray(_rgb(9, 9)).save(tmp_path / "b.png")
    with pytest.raises(ValueError, match="different shapes"):
        load_images([tmp_path / "a.png", tmp_path / "b.png"])
    x = load_images([tmp_path / "a.png", tmp_path / "b.png"], size=8)
    assert x.shape == (2, 3, 8, 8), x.shape
    with pytest.raises(ValueError, match="paths must not be empty"):
        load_images([])
    with pytest.raises(TypeError, match="paths must be a sequence"):
        load_images(tmp_path / "a.png")


# image_folder --------------------------------------------------------------------------


def test_image_folder(tmp_path):
    """ImageFolder layout gives (tensor, label) items with classes sorted by name."""
    for cls, seed in (("cat", 0), ("dog", 1)):
        (tmp_path / cls).mkdir()
        Image.fromarray(_rgb(20, 24, seed)).save(tmp_path / cls / f"{seed}.png")
    data = image_folder(tmp_path, size=16)
    assert data.classes == ["cat", "dog"] and len(data) == 2, (data.classes, len(data))
    x, y = data[1]
    assert x.shape == (3, 16, 16) and y == 1, (x.shape, y)


def test_image_folder_errors(tmp_path):
    """No folder, or a folder without images, raises ValueError naming it."""
    with pytest.raises(ValueError, match="does not exist"):
        image_folder(tmp_path / "nowhere")
    (tmp_path / "empty" / "cls").mkdir(parents=True)
    (tmp_path / "empty" / "cls" / "readme.txt").write_text("no images here")
    with pytest.raises(ValueError, match=r"image folder .*empty has no images"):
        image_folder(tmp_path / "empty")
    (tmp_path / "flat").mkdir()
    Image.fromarray(_rgb()).save(tmp_path / "flat" / "a.png")
    with pytest.raises(ValueError, match=r"flat has no images in the expected layout"):
        image_folder(tmp_path / "flat")


def test_image_folder_broken_file_raises_on_access(tmp_path):
    """A broken file in an image folder raises ValueError naming it when loaded."""
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "broken.png").write_bytes(b"\x89PNG garbage")
    data = image_folder(tmp_path)
    with pytest.raises(ValueError, match=r"broken\.png"):
        data[0]


# load_cifar10 --------------------------------------------------------------------------


def test_cifar10_loads_generated_folder(cifar_root):
    """The local loader reads the generated folder: tensors in [0, 1], labels as written."""
    train, test = load_cifar10(cifar_root), load_cifar10(cifar_root, train=False)
    assert len(train) == 23 and len(test) == 9, (len(train), len(test))
    x, y = train[0]
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32, (x.shape, x.dtype)
    written = make_shapes(23, seed=0)
    expected = (written.images[0] * 255).round() / 255
    assert torch.allclose(x, expected, atol=1e-6), "pixels differ from what was written"
    assert [train[i][1] for i in range(23)] == written.labels.tolist(), "labels differ"
    assert train.classes[0] == "airplane", train.classes


def test_cifar10_accepts_batches_folder_and_transform(cifar_root):
    """root may be cifar-10-batches-py itself; transform runs after ToTensor."""
    data = load_cifar10(cifar_root / "cifar-10-batches-py", transform=lambda x: x * 0 + 0.5)
    assert torch.all(data[0][0] == 0.5), "transform not applied to the tensor"


def test_cifar10_missing(tmp_path, cifar_root):
    """A missing folder or file raises ValueError naming it; nothing is downloaded."""
    with pytest.raises(ValueError, match=r"CIFAR-10 not found .*nothing is downloaded"):
        load_cifar10(tmp_path)
    broken = tmp_path / "broken"
    write_cifar10_folder(broken, n_train=5, n_test=2)
    (broken / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(ValueError, match="lacks data_batch_3"):
        load_cifar10(broken)


def test_cifar10_corrupt_and_checksum(tmp_path):
    """A corrupt batch file and (with check_md5) a non-original file raise ValueError."""
    write_cifar10_folder(tmp_path, n_train=5, n_test=2)
    with pytest.raises(ValueError, match="checksum"):
        load_cifar10(tmp_path, check_md5=True)
    (tmp_path / "cifar-10-batches-py" / "data_batch_1").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="could not read CIFAR-10"):
        load_cifar10(tmp_path)


def test_load_float_and_one_bit_modes(tmp_path):
    """Float (F) images are clipped to [0, 1]; 1-bit images give 0/1; both stay grey."""
    values = np.array([[-0.5, 0.25], [0.75, 2.0]], dtype=np.float32)
    Image.fromarray(values, mode="F").save(tmp_path / "f.tif")
    x = load_image(tmp_path / "f.tif", channels=None)
    assert x.shape == (1, 2, 2), x.shape
    assert torch.equal(x[0], torch.tensor([[0.0, 0.25], [0.75, 1.0]])), x
    bits = np.array([[0, 255], [255, 0]], dtype=np.uint8)
    Image.fromarray(bits).convert("1").save(tmp_path / "b.png")
    assert torch.equal(load_image(tmp_path / "b.png", channels=None)[0], torch.tensor(bits) / 255)


def test_load_resize_rounds_like_torchvision(tmp_path):
    """A shorter-side resize whose long side is not whole matches torchvision's Resize."""
    from torchvision import transforms as T

    Image.fromarray(_rgb(47, 71)).save(tmp_path / "a.png")
    raw = load_image(tmp_path / "a.png")
    expected = T.Compose([T.Resize(33, antialias=True), T.CenterCrop(32)])(raw).clamp(0, 1)
    got = load_image(tmp_path / "a.png", size=32, resize=33)
    assert torch.allclose(got, expected, atol=1e-6), "differs from torchvision"


# ImageFiles / image_dataset ------------------------------------------------------------


def _folder(root, layout):
    """Writes {relative path: (h, w)} random images (text for .txt) under root; returns root."""
    for i, (name, (h, w)) in enumerate(layout.items()):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        if name.endswith(".txt"):
            (root / name).write_text("not an image")
        else:
            Image.fromarray(_rgb(h, w, seed=i)).save(root / name)
    return root


def test_image_files_items_and_labels(tmp_path):
    """ImageFiles reads each file with load_image; labels pair with files in order."""
    root = _folder(tmp_path, {"a.png": (8, 8), "b.png": (8, 8)})
    files = ImageFiles([root / "a.png", root / "b.png"], labels=[4, 2], classes=["x"])
    assert len(files) == 2 and files.classes == ["x"], files.classes
    x, y = files[1]
    assert y == 2 and torch.equal(x, load_image(root / "b.png")), "item differs from the file"
    assert torch.equal(ImageFiles([root / "a.png"])[0], load_image(root / "a.png")), "no label"
    with pytest.raises(ValueError, match="labels must have one entry per path"):
        ImageFiles([root / "a.png"], labels=[1, 2])


def test_image_files_refuse_mixed_sizes_without_size(tmp_path):
    """Files of different sizes raise naming both (batches could not stack); size= fixes it."""
    root = _folder(tmp_path, {"a.png": (8, 8), "b.png": (9, 8)})
    paths = [root / "a.png", root / "b.png"]
    with pytest.raises(ValueError, match=r"b\.png is \(3, 9, 8\) but .*a\.png is \(3, 8, 8\)"):
        ImageFiles(paths)[1]
    assert ImageFiles(paths, size=8)[1].shape == (3, 8, 8), "size= brings them to one size"


def test_image_dataset_class_folders(tmp_path):
    """Class subfolders give labels in sorted order, as torchvision's ImageFolder does."""
    root = _folder(tmp_path, {"dog/1.png": (8, 8), "cat/1.png": (8, 8), "cat/2.jpg": (8, 8)})
    (root / ".hidden").mkdir()  # not a class
    data, labelled = image_dataset(root)
    folder = image_folder(root)
    assert labelled and data.classes == folder.classes == ["cat", "dog"], data.classes
    assert [data[i][1] for i in range(3)] == [y for _, y in folder.samples] == [0, 0, 1]
    assert all(torch.equal(data[i][0], folder[i][0]) for i in range(3)), "images differ"


def test_image_dataset_flat_folder_and_size(tmp_path):
    """A flat folder gives images without labels; size/resize/channels reach load_image."""
    root = _folder(tmp_path, {"a.png": (20, 30), "b.PNG": (10, 12), "notes.txt": (1, 1)})
    data, labelled = image_dataset(str(root), size=8, channels=1, convert=True)
    assert not labelled and len(data) == 2, (labelled, len(data))
    expected = load_image(root / "b.PNG", size=8, channels=1, convert=True)
    assert torch.equal(data[1], expected), "item differs from load_image"


def test_image_dataset_cifar10(cifar_root):
    """cifar10:PATH is load_cifar10 (test split by default), resized when size is given."""
    data, labelled = image_dataset(f"cifar10:{cifar_root}")
    reference = load_cifar10(cifar_root, train=False)
    assert labelled and len(data) == 9, len(data)
    assert torch.equal(data[3][0], reference[3][0]) and data[3][1] == reference[3][1]
    small, _ = image_dataset(f"cifar10:{cifar_root}", train=True, size=16)
    assert len(small) == 23 and small[0][0].shape == (3, 16, 16), small[0][0].shape
    grey, _ = image_dataset(f"cifar10:{cifar_root}", channels=1, convert=True)
    assert grey[0][0].shape == (1, 32, 32), grey[0][0].shape
    with pytest.raises(ValueError, match="CIFAR-10 is colour"):
        image_dataset(f"cifar10:{cifar_root}", channels=1)


@pytest.mark.parametrize(
    "layout, source, match",
    [
        ({}, "missing", r"image folder .*missing does not exist"),
        ({"notes.txt": (1, 1)}, ".", "no images"),
        ({"cat/a.png": (8, 8), "dog/notes.txt": (1, 1)}, ".", r"class folder .*dog has no"),
        ({}, "cifar10:nowhere", "CIFAR-10 not found"),
    ],
)
def test_image_dataset_errors(tmp_path, layout, source, match):
    """Missing folders, folders without images, empty class folders: ValueError naming them."""
    _folder(tmp_path, layout)
    source = source if source.startswith("cifar10:") else tmp_path / source
    with pytest.raises(ValueError, match=match):
        image_dataset(source)
    with pytest.raises(TypeError, match="source must be a str"):
        image_dataset(3)


def test_image_extensions_cover_torchvision():
    """Every extension torchvision's ImageFolder reads (but .pgm) is read here too."""
    from torchvision.datasets.folder import IMG_EXTENSIONS

    assert set(IMG_EXTENSIONS) <= set(IMAGE_EXTENSIONS), set(IMG_EXTENSIONS) - set(IMAGE_EXTENSIONS)


# save_image ----------------------------------------------------------------------------


def test_save_image_round_trip(tmp_path):
    """An 8-bit image saved as PNG loads back equal; grey stays grey; JPEG by extension."""
    x = torch.from_numpy(_rgb()).permute(2, 0, 1).float() / 255
    save_image(x, tmp_path / "x.png")
    assert torch.allclose(load_image(tmp_path / "x.png"), x, atol=1e-7), "PNG not lossless"
    save_image(x[:1], tmp_path / "g.png")
    assert Image.open(tmp_path / "g.png").mode == "L", "greyscale should stay greyscale"
    save_image(x, tmp_path / "x.JPG")
    assert Image.open(tmp_path / "x.JPG").format == "JPEG"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.png", "x.JPG", "x.png"], "temps"


def test_save_image_clip_or_rescale(tmp_path):
    """Values are clipped to [0, 1], or with rescale=True min..max is stretched to 0..255."""
    x = torch.tensor([[[-0.5, 0.0], [0.25, 0.5]]])
    save_image(x, tmp_path / "c.png")
    save_image(x, tmp_path / "r.png", rescale=True)
    clipped, stretched = (
        np.asarray(Image.open(tmp_path / "c.png")),
        np.asarray(Image.open(tmp_path / "r.png")),
    )
    assert clipped.tolist() == [[0, 0], [64, 128]], clipped
    assert stretched.tolist() == [[0, 128], [191, 255]], stretched


def test_save_image_errors(tmp_path):
    """Unknown extensions and bad shapes raise ValueError; nothing is written."""
    with pytest.raises(ValueError, match=r"x\.xyz must end in one of .*\.png"):
        save_image(torch.rand(3, 4, 4), tmp_path / "x.xyz")
    with pytest.raises(ValueError, match=r"image must be a \(C, H, W\) tensor"):
        save_image(torch.rand(2, 4, 4), tmp_path / "x.png")
    assert image_format("a/b.tiff") == "TIFF"
    assert not list(tmp_path.iterdir()), "nothing should be written"


# hostile inputs ------------------------------------------------------------------------


def test_big_image_refused_from_its_header(tmp_path, monkeypatch):
    """Above max_pixels the file is refused before decoding, the message naming the limit."""
    Image.new("L", (4100, 4100)).save(tmp_path / "big.png")
    assert MAX_PIXELS == 4096 * 4096

    def no_decoding(self):
        raise AssertionError("decoded a refused image")

    with monkeypatch.context() as m:
        m.setattr(Image.Image, "load", no_decoding)
        with pytest.raises(ValueError, match=r"big.png is 4100×4100 = 16,810,000 pixels"):
            load_image(tmp_path / "big.png")
    assert load_image(tmp_path / "big.png", max_pixels=None, channels=None).shape == (
        1, 4100, 4100,
    )  # fmt: skip
    assert load_image(tmp_path / "big.png", size=8, channels=None).shape == (1, 8, 8), (
        "size: shrunk, allowed"
    )


def test_max_pixels_bounds(tmp_path):
    """max_pixels is inclusive, applies to size too, and must be a positive int."""
    Image.fromarray(_rgb(10, 12)).save(tmp_path / "a.png")
    assert load_image(tmp_path / "a.png", max_pixels=120).shape == (3, 10, 12)
    with pytest.raises(ValueError, match="more than max_pixels = 119"):
        load_image(tmp_path / "a.png", max_pixels=119)
    with pytest.raises(ValueError, match=r"size 20×20 is more than max_pixels"):
        load_image(tmp_path / "a.png", size=20, max_pixels=399)
    with pytest.raises(ValueError, match="max_pixels"):
        load_image(tmp_path / "a.png", max_pixels=0)


def test_image_dataset_passes_max_pixels(tmp_path):
    """Folders read through image_dataset honour max_pixels on access."""
    (tmp_path / "c").mkdir()
    Image.fromarray(_rgb(10, 12)).save(tmp_path / "c" / "a.png")
    data, _ = image_dataset(tmp_path, max_pixels=100)
    with pytest.raises(ValueError, match="more than max_pixels = 100"):
        data[0]
    assert image_dataset(tmp_path)[0][0][0].shape == (3, 10, 12)


def test_image_dataset_source_that_is_a_file(tmp_path):
    """A file as source says it is a file and what source takes."""
    Image.fromarray(_rgb()).save(tmp_path / "a.png")
    with pytest.raises(ValueError, match="a.png is a file, but source takes a folder"):
        image_dataset(tmp_path / "a.png")


class _WritesAFile:
    """Unpickling this calls open(path, "w"): what a crafted CIFAR-10 batch could do."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.mark.parametrize("name", ["test_batch", "batches.meta"])
def test_cifar10_crafted_pickle_runs_no_code(tmp_path, name):
    """A batch or meta file that would run code is refused, naming the file; nothing runs."""
    write_cifar10_folder(tmp_path, n_train=5, n_test=2)
    victim = tmp_path / "written-by-the-pickle"
    with open(tmp_path / "cifar-10-batches-py" / name, "wb") as f:
        pickle.dump({"data": _WritesAFile(victim), "labels": [0], "label_names": []}, f)
    with pytest.raises(ValueError, match=f"{name}: it names .*open, but a CIFAR-10 batch"):
        load_cifar10(tmp_path, train=False)
    assert not victim.exists(), "the crafted pickle ran"


def test_cifar10_safe_loader_equals_plain_pickle(cifar_root):
    """The restricted unpickler reads the same arrays and labels as pickle.load does."""
    data = load_cifar10(cifar_root, train=False)
    with open(os.path.join(cifar_root, "cifar-10-batches-py", "test_batch"), "rb") as f:
        batch = pickle.load(f, encoding="latin1")
    pixels = np.asarray(batch["data"]).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    np.testing.assert_array_equal(data.data, pixels)
    assert data.targets == list(batch["labels"])
    with open(os.path.join(cifar_root, "cifar-10-batches-py", "batches.meta"), "rb") as f:
        assert data.classes == pickle.load(f, encoding="latin1")["label_names"]
