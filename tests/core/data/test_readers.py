import shutil

import pytest
import torch

from stargan_core.data import (
    detect_format,
    read_dataset,
    read_imagefolder,
    read_rafd,
)
from stargan_core.data.dataset import FaceDataset
from stargan_core.domains import CELEBA_ATTRIBUTES
from stargan_core.io.celeba import read_celeba
from stargan_core.io.sample import DataFormatError
from stargan_core.preprocessing import Preprocessing
from stargan_core.targets import parse_target


def test_celeba_reader_uses_the_partition_file(celeba_root):
    samples = read_celeba(celeba_root)
    assert len(samples) == 120
    assert sum(s.split == "test" for s in samples) == 12
    assert set(samples[0].labels) == set(CELEBA_ATTRIBUTES)
    assert all(v in (0, 1) for v in samples[0].labels.values())
    assert samples[0].path.endswith("img_align_celeba/000001.jpg")


def test_celeba_without_partition_file_holds_out_a_seeded_test_split(celeba_root, tmp_path):
    root = tmp_path / "celeba"
    shutil.copytree(celeba_root, root)
    (root / "list_eval_partition.txt").unlink()
    first, second = read_celeba(root), read_celeba(root)
    test = [s.path for s in first if s.split == "test"]
    assert len(test) == 12  # the reference's 2,000, capped at a tenth of a small set
    assert test == [s.path for s in second if s.split == "test"]


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda lines: ["lots"] + lines[1:], ":1: expected the number of images, got 'lots'"),
        (lambda lines: lines[:5] + [lines[5] + " 1"] + lines[6:], ":6: expected an image name "
         "and 40 values, got 41 values"),
        (lambda lines: lines[:7] + [lines[7].replace(" 1", " 0", 1).replace("-1", " 0", 1)]
         + lines[8:], ":8: value of .* must be 1 or -1, got '0'"),
        (lambda lines: lines[:-1], ":1: the header announces 120 images but the file lists 119"),
        (lambda lines: lines[:4] + [lines[3]] + lines[5:],
         r":5: \S+ is listed again \(first on line 4\): remove one"),
    ],
)
def test_malformed_attribute_file_names_file_line_and_problem(celeba_root, tmp_path, mutate,
                                                               message):
    root = tmp_path / "celeba"
    shutil.copytree(celeba_root, root)
    attr = root / "list_attr_celeba.txt"
    attr.write_text("\n".join(mutate(attr.read_text().splitlines())) + "\n")
    with pytest.raises(DataFormatError, match="list_attr_celeba.txt" + message):
        read_celeba(root)


def test_celeba_images_missing_from_the_attribute_list_are_reported_not_dropped(celeba_root,
                                                                                tmp_path):
    root = tmp_path / "celeba"
    shutil.copytree(celeba_root, root)
    shutil.copy(root / "img_align_celeba" / "000001.jpg", root / "img_align_celeba" / "new.jpg")
    raw = read_dataset(str(root))
    assert len(raw.samples) == 120
    assert [(path.rsplit("/", 1)[-1], reason) for path, reason in raw.others] == [
        ("new.jpg", "not listed in list_attr_celeba.txt")]
    (root / "list_attr_celeba.txt").unlink()
    with pytest.raises(DataFormatError, match="looks like CelebA .* list_attr_celeba.txt is "
                                              "missing"):
        read_dataset(str(root))


def test_rafd_split_layout_with_original_names(rafd_root):
    samples, _ = read_rafd(rafd_root)
    assert len(samples) == 6 * 8 * 3
    assert sum(s.split == "test" for s in samples) == 2 * 8 * 3
    s = next(s for s in samples if "angry_left" in s.path)
    assert s.labels["expression"] == "angry"
    assert s.labels["gaze"] == "left" and s.labels["angle"] == "090"
    assert s.labels["gender"] in ("male", "female") and s.labels["identity"].isdigit()


def test_rafd_flat_folder_of_original_names(rafd_root, tmp_path):
    for path in rafd_root.rglob("*.jpg"):
        shutil.copy(path, tmp_path / path.name)
    samples, _ = read_rafd(tmp_path)
    assert len(samples) == 6 * 8 * 3
    held_out = {s.labels["identity"] for s in samples if s.split == "test"}
    assert held_out == {"03", "04", "05", "06"}  # the four highest-numbered identities
    assert detect_format(tmp_path) == "rafd"


def test_rafd_rejects_unknown_expression_folders(tmp_path):
    (tmp_path / "train" / "bored").mkdir(parents=True)
    (tmp_path / "train" / "bored" / "face.jpg").write_bytes(b"")
    with pytest.raises(DataFormatError, match="'bored' is not a RaFD expression"):
        read_rafd(tmp_path)


def test_imagefolder_domains_are_folder_names(celeba_root, tmp_path):
    images = sorted((celeba_root / "img_align_celeba").iterdir())
    for i, domain in enumerate(["cats", "dogs", "foxes"]):
        (tmp_path / domain).mkdir()
        for p in images[i * 4:(i + 1) * 4]:
            shutil.copy(p, tmp_path / domain / p.name)
    raw = read_dataset(tmp_path)
    assert raw.format == "imagefolder"
    assert raw.spec.domains == ("cats", "dogs", "foxes")
    assert len(read_imagefolder(tmp_path)[0]) == 12
    assert parse_target(raw.spec, "dogs").label_set == 0


def test_detect_format(celeba_root, rafd_root, tmp_path):
    assert detect_format(celeba_root) == "celeba"
    assert detect_format(rafd_root) == "rafd"
    with pytest.raises(DataFormatError, match="does not exist"):
        detect_format(tmp_path / "missing")


def test_celeba_transform_crops_178_then_resizes():
    image = torch.zeros(3, 218, 178, dtype=torch.uint8)
    image[:, :20] = 255  # the 20 rows that CelebA's centre crop removes
    image[:, -20:] = 255
    out = Preprocessing("celeba", 64)(image)
    assert out.shape == (3, 64, 64)
    assert out.max() == -1.0  # only the white bands were white: all cropped away


def test_face_dataset_yields_normalised_images_and_label_vectors(celeba_root):
    raw = read_dataset(celeba_root, domains=["Blond_Hair", "Male"])
    ds = FaceDataset(raw.split("train"), raw.spec, raw.format, 32)
    x, c = ds[0]
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32
    assert x.min() >= -1 and x.max() <= 1
    labels = raw.split("train")[0].labels
    assert c.tolist() == [labels["Blond_Hair"], labels["Male"]]


def test_choosing_domains_of_non_celeba_data_is_an_error(rafd_root):
    with pytest.raises(DataFormatError, match="CelebA only"):
        read_dataset(rafd_root, domains=["happy"])
