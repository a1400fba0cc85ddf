import hashlib

import numpy as np
from PIL import Image

from stargan_core.data import read_rafd
from stargan_core.io.celeba import read_celeba
from stargan_core.synthetic import write_celeba, write_rafd


def digest(root):
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(p.relative_to(root).as_posix().encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    a = write_celeba(tmp_path / "a", num_images=10, seed=5)
    b = write_celeba(tmp_path / "b", num_images=10, seed=5)
    c = write_celeba(tmp_path / "c", num_images=10, seed=6)
    assert digest(a) == digest(b) != digest(c)


def test_celeba_layout_is_celebas(celeba_root):
    lines = (celeba_root / "list_attr_celeba.txt").read_text().splitlines()
    assert lines[0] == "120"
    assert len(lines[1].split()) == 40
    assert lines[2].split()[0] == "000001.jpg" and len(lines[2].split()) == 41
    with Image.open(celeba_root / "img_align_celeba" / "000001.jpg") as im:
        assert im.size == (178, 218) and im.format == "JPEG"


def test_celeba_labels_match_the_drawing(celeba_root):
    samples = read_celeba(celeba_root)
    for s in samples:
        hair = [s.labels[a] for a in ("Black_Hair", "Blond_Hair", "Brown_Hair")]
        assert sum(hair) == 1  # exactly one drawn hair colour
        assert s.labels["No_Beard"] == 1 - s.labels["Male"]
    # Both values of every rendered attribute occur.
    for attr in ("Male", "Young", "Smiling", "Black_Hair", "Blond_Hair", "Brown_Hair"):
        assert {s.labels[attr] for s in samples} == {0, 1}


def test_blond_hair_is_visibly_lighter_than_black_hair(celeba_root):
    def hair_brightness(sample):
        with Image.open(sample.path) as im:
            return np.asarray(im.convert("L").crop((75, 60, 103, 75))).mean()

    samples = read_celeba(celeba_root)
    blond = [hair_brightness(s) for s in samples if s.labels["Blond_Hair"]]
    black = [hair_brightness(s) for s in samples if s.labels["Black_Hair"]]
    assert min(blond) > max(black) + 50


def test_rafd_layout_has_all_expressions(tmp_path):
    write_rafd(tmp_path, num_identities=2, seed=0, test_identities=1)
    samples, _ = read_rafd(tmp_path)
    assert len({s.labels["expression"] for s in samples}) == 8
    assert {s.split for s in samples} == {"train", "test"}
    with Image.open(samples[0].path) as im:
        assert im.size == (256, 256)
