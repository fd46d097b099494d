"""Tests for captum_rig.data (image files, folders, local CIFAR-10) and the normalization."""

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from captum_rig.data import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    Normalize,
    image_folder,
    load_cifar10,
    load_image,
    load_images,
    with_normalization,
)
from captum_rig.models import MODEL_NAMES, SmallCNN, cifar_model
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
    with pytest.raises(ValueError, match=r"g\.png is greyscale .*convert=True"):
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
    with pytest.raises(ValueError, match=r"missing\.png does not exist"):
        load_image(tmp_path / "missing.png")
    (tmp_path / "notes.png").write_text("not an image")
    with pytest.raises(ValueError, match=r"could not read image file .*notes\.png"):
        load_image(tmp_path / "notes.png")
    Image.fromarray(_rgb(64, 64)).save(tmp_path / "full.png")
    data = (tmp_path / "full.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"cut\.png"):
        load_image(tmp_path / "cut.png")
    with pytest.raises(ValueError, match=r"tmp\w* does not exist or is not a file|is not a file"):
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


# Normalize / with_normalization / models -----------------------------------------------


def test_normalize_matches_torchvision():
    """Normalize equals torchvision's Normalize, for (C, H, W) and (N, C, H, W)."""
    from torchvision import transforms as T

    x = torch.rand(2, 3, 5, 5)
    ours, theirs = Normalize(CIFAR10_MEAN, CIFAR10_STD), T.Normalize(CIFAR10_MEAN, CIFAR10_STD)
    assert torch.allclose(ours(x), theirs(x), atol=1e-6), "batch normalization differs"
    assert torch.allclose(ours(x[0]), theirs(x[0]), atol=1e-6), "single image differs"
    assert "mean" in dict(ours.named_buffers()), "mean should be a buffer"
    assert ours(x.double()).dtype == torch.float64, "dtype not kept"


def test_with_normalization():
    """with_normalization puts Normalize first, shares the model, leaves it unchanged."""
    model = nn.Conv2d(3, 2, 1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    net = with_normalization(model, (0.5, 0.5, 0.5), (0.2, 0.2, 0.2))
    x = torch.rand(2, 3, 4, 4)
    assert isinstance(net, nn.Sequential) and net[1] is model, "model not wrapped as is"
    assert torch.allclose(net(x), model((x - 0.5) / 0.2), atol=1e-6), "wrong output"
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), f"model parameter {k} changed"


@pytest.mark.parametrize(
    "mean, std, error, match",
    [
        ((0.5, 0.5), (0.2, 0.2, 0.2), ValueError, "one value per channel"),
        ((0.5,), (0.0,), ValueError, "std must be positive"),
        ((0.5,), (float("nan"),), ValueError, "std contains NaN"),
        ("abc", (1.0,), TypeError, "mean must be a sequence of floats"),
    ],
)
def test_normalize_errors(mean, std, error, match):
    """Bad mean/std raise errors naming them."""
    with pytest.raises(error, match=match):
        Normalize(mean, std)


def test_normalize_wrong_channels():
    """Input with the wrong channel count raises naming x."""
    with pytest.raises(ValueError, match="x must have shape"):
        Normalize((0.5,) * 3, (0.2,) * 3)(torch.rand(2, 1, 4, 4))
    with pytest.raises(TypeError, match="must be a torch.nn.Module"):
        with_normalization("model", (0.5,), (0.2,))


@pytest.mark.parametrize("name", ["small_cnn", "resnet18"])
def test_cifar_model_shapes(name):
    """CIFAR models map (N, 3, 32, 32) to (N, classes), normalization first."""
    model = cifar_model(name, num_classes=6).eval()
    with torch.no_grad():
        out = model(torch.rand(2, 3, 32, 32))
    assert out.shape == (2, 6), out.shape
    assert isinstance(model[0], Normalize), "Normalize should come first"


def test_cifar_model_errors():
    """Unknown names and bad class counts are rejected."""
    assert "resnet18" in MODEL_NAMES and "small_cnn" in MODEL_NAMES, MODEL_NAMES
    with pytest.raises(ValueError, match="name must be one of"):
        cifar_model("alexnet2")
    with pytest.raises(ValueError, match="num_classes must be >= 1"):
        SmallCNN(0)
