"""What the viewer reads: uploads judged by their content and size, files confined to the images folder."""

import pytest

from camloc.errors import BadImage, InputTooLarge
from camloc.viewer.files import confined, list_images, read_image


def test_uploads_are_read_by_their_content(photos):
    image, kind = read_image((photos / "coffee.jpg").read_bytes(), "coffee.png", 10**6)
    assert (image.size, image.mode, kind) == ((600, 400), "RGB", "JPEG")  # the name says PNG; the bytes say JPEG
    image, kind = read_image((photos / "astronaut.tif").read_bytes(), "a.tif", 10**6)
    assert (image.size, kind) == ((512, 512), "TIFF")
    with pytest.raises(BadImage, match=r"^notes.jpg: not a readable image: its content is in no image format"):
        read_image((photos / "notes.jpg").read_bytes(), "notes.jpg", 10**6)
    with pytest.raises(InputTooLarge, match=r"^bomb.png: 9000x9000 pixels is over the limit of 40,000,000 pixels$"):
        read_image((photos / "bomb.png").read_bytes(), "bomb.png", 40_000_000)
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n"  # PIL could hand this to Ghostscript: never tried
    with pytest.raises(BadImage, match="no image format PIL reads"):
        read_image(eps, "x.eps", 10**6)


@pytest.mark.parametrize(
    "relative, error, message",
    [
        ("../outside/secret.png", PermissionError, "outside the images folder"),
        ("/etc/passwd", PermissionError, "outside the images folder"),
        ("link.png", PermissionError, "outside the images folder"),  # a symlink out is followed, then refused
        ("sub/../../x.png", PermissionError, "outside the images folder"),
        ("missing.png", FileNotFoundError, "no such image"),
        ("readme.txt", FileNotFoundError, "no such image"),
        ("sub", FileNotFoundError, "no such image"),
        ("", FileNotFoundError, "no such image"),
        ("a\x00.png", FileNotFoundError, "no such image"),
    ],
)
def test_only_image_files_inside_the_folder_can_be_named(photos, relative, error, message):
    with pytest.raises(error, match=message):
        confined(photos.resolve(), relative)


def test_the_folder_lists_its_images_only(photos):
    root = photos.resolve()
    assert confined(root, "sub/rocket.jpg") == root / "sub" / "rocket.jpg"
    listed = ["astronaut.tif", "bomb.png", "chelsea.png", "coffee.jpg", "notes.jpg", "strip.png", "sub/rocket.jpg"]
    assert list_images(root) == listed
    assert list_images(root, limit=2) == ["astronaut.tif", "bomb.png"]
