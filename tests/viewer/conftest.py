from pathlib import Path

import pytest
from PIL import Image
from skimage import data

from tests.helpers.images import bomb_png


@pytest.fixture(scope="session")
def photos(tmp_path_factory) -> Path:
    """An images folder: photos in four formats, a text file named .jpg, a bomb, a link out of it, a subfolder."""
    root = tmp_path_factory.mktemp("photos")
    Image.fromarray(data.chelsea()).save(root / "chelsea.png")
    Image.fromarray(data.coffee()).save(root / "coffee.jpg", quality=92)
    Image.fromarray(data.astronaut()).save(root / "astronaut.tif")
    (root / "sub").mkdir()
    Image.fromarray(data.rocket()).resize((500, 375)).save(root / "sub" / "rocket.jpg", quality=90)
    Image.new("RGB", (12000, 20), (90, 120, 40)).save(root / "strip.png")  # small, but long
    (root / "notes.jpg").write_text("this is not a picture\n")
    (root / "bomb.png").write_bytes(bomb_png(9000, 9000))
    outside = tmp_path_factory.mktemp("outside")
    Image.new("RGB", (8, 8)).save(outside / "secret.png")
    (root / "link.png").symlink_to(outside / "secret.png")
    (root / "readme.txt").write_text("not an image file name")
    return root
