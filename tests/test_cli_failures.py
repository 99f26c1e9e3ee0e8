"""Every CLI subcommand's failure modes: one line on stderr, a non-zero exit, nothing written.

Issue #16 items 2, 6 and 8. Each case runs ``vitlens`` in-process; an exception that
escapes (a traceback) fails the test, as does a figure written before the error.
"""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
from PIL import Image

from vitlens.cli import main
from vitlens.models import zoo_dir

SMALL = ["--num-images", "8", "--random-weights", "--batch-size", "8"]
SHAPES = ["--data", "shapes", *SMALL]

ANALYSES = {
    "cka": ["cka", "vit-cls", "mixer-pt"],
    "attention-distance": ["attention-distance", "vit-cls"],
    "head-subsets": ["head-subsets", "vit-cls", "mixer-pt"],
    "receptive-field": ["receptive-field", "vit-cls", "--layers", "blocks.0"],
    "skip-norms": ["skip-norms", "vit-cls"],
    "localization": ["localization", "vit-cls", "--layer", "blocks.1"],
    "probe": ["probe", "vit-cls", "--shots", "1", "--seeds", "1"],
    "layerwise-cka": ["layerwise-cka", "vit-cls", "vit-cls-data3"],
}


def fails_with_one_line(capsys, argv, match: str) -> str:
    status = main(argv)
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert status != 0, f"{argv} exited 0"
    assert "Traceback" not in err
    assert len(err.splitlines()) == 1, f"stderr is not one line: {err!r}"
    assert err.startswith("vitlens ") and ": error: " in err
    assert match in err, f"{match!r} not in {err!r}"
    return err


def _folder(root, classes=("a", "b"), per_class=3, corrupt=None):
    rng = np.random.default_rng(0)
    for cls in classes:
        (root / cls).mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / cls / f"{i}.png")
    if corrupt:
        (root / classes[0] / "broken.png").write_bytes(b"\x89PNG not really")
    return root


# ------------------------------------------------------------------ analyses: outputs first


@pytest.mark.parametrize("command", sorted(ANALYSES))
def test_bad_outputs_are_refused_before_any_work(command, tmp_path, capsys):
    base = [*ANALYSES[command], *SHAPES]
    fails_with_one_line(
        capsys, [*base, "--out", str(tmp_path / "no" / "such" / "f.png")], "does not exist"
    )
    fails_with_one_line(
        capsys,
        [*base, "--out", str(tmp_path / "f.png"), "--numbers", str(tmp_path / "n.txt")],
        ".npz or .csv",
    )
    fails_with_one_line(capsys, [*base, "--out", str(tmp_path / "f.xyz")], "cannot write '.xyz'")
    (tmp_path / "dir.png").mkdir()
    fails_with_one_line(capsys, [*base, "--out", str(tmp_path / "dir.png")], "is a folder")
    (tmp_path / "dir.png").rmdir()
    assert list(tmp_path.iterdir()) == []  # no figure without its numbers
    # a bad model, a bad --data
    fails_with_one_line(
        capsys,
        [
            ANALYSES[command][0],
            "no-such-model",
            *ANALYSES[command][2:],
            *SHAPES,
            "--out",
            str(tmp_path / "f.png"),
        ],
        "unknown model",
    )
    fails_with_one_line(
        capsys,
        [
            *ANALYSES[command],
            "--data",
            str(tmp_path / "nowhere"),
            *SMALL,
            "--out",
            str(tmp_path / "f.png"),
        ],
        "neither a named dataset",
    )
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes to read-only folders")
def test_a_read_only_out_folder_is_refused(tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        fails_with_one_line(
            capsys,
            [*ANALYSES["skip-norms"], *SHAPES, "--out", str(locked / "f.png")],
            "cannot be written",
        )
    finally:
        locked.chmod(0o700)


def test_a_read_only_out_file_is_refused(tmp_path, capsys):
    if os.geteuid() == 0:
        pytest.skip("root writes to read-only files")
    out = tmp_path / "f.png"
    out.write_bytes(b"")
    out.chmod(0o400)
    fails_with_one_line(
        capsys, [*ANALYSES["skip-norms"], *SHAPES, "--out", str(out)], "cannot be written"
    )


def test_a_folder_without_write_permission_is_refused(tmp_path, capsys, monkeypatch):
    """The same check as above where the tests run as root (who may write anywhere)."""
    import vitlens.cli.analyses as cli

    monkeypatch.setattr(cli.os, "access", lambda path, mode: False)
    argv = [*ANALYSES["skip-norms"], *SHAPES, "--out", str(tmp_path / "f.png")]
    fails_with_one_line(capsys, argv, "cannot be written (no write permission)")
    assert list(tmp_path.iterdir()) == []


def test_out_without_suffix_writes_and_prints_png(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main([*ANALYSES["skip-norms"], *SHAPES, "--out", "data"]) == 0
    out = capsys.readouterr().out
    assert "figure: data.png\n" in out and "numbers: data.npz" in out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.npz", "data.png"]


@pytest.mark.parametrize("command", sorted(ANALYSES))
def test_a_corrupt_image_is_one_line(command, tmp_path, capsys):
    images = _folder(tmp_path / "images", corrupt=True)
    argv = [*ANALYSES[command], "--data", str(images), *SMALL, "--out", str(tmp_path / "f.png")]
    if command == "probe":
        argv += ["--test-data", str(images)]
    fails_with_one_line(capsys, argv, "broken.png")
    assert not (tmp_path / "f.png").exists()


@pytest.mark.parametrize("command", ["cka", "head-subsets", "layerwise-cka"])
def test_models_of_different_input_sizes_are_refused_up_front(command, tmp_path, capsys):
    argv = [*ANALYSES[command][:2], "resnet18", *SHAPES, "--out", str(tmp_path / "f.png")]
    fails_with_one_line(capsys, argv, "different input sizes")


def test_out_of_range_tokens_are_refused_before_the_computation(tmp_path, capsys):
    argv = [*ANALYSES["localization"], *SHAPES, "--out", str(tmp_path / "f.png")]
    fails_with_one_line(capsys, [*argv, "--tokens", "3", "65"], "--tokens [65] out of range")
    fails_with_one_line(capsys, [*argv, "--tokens", "-1"], "--tokens [-1] out of range")
    assert list(tmp_path.iterdir()) == []


def test_a_bad_manifest_is_one_line_in_analyses(tmp_path, capsys):
    (tmp_path / "zoo").mkdir()
    (tmp_path / "zoo" / "manifest.json").write_text("{not json")
    argv = ["skip-norms", "vit-cls", "--data", "shapes", "--num-images", "8"]
    fails_with_one_line(
        capsys,
        [*argv, "--zoo", str(tmp_path / "zoo"), "--out", str(tmp_path / "f.png")],
        "not valid JSON",
    )


# ------------------------------------------------------------------ probe: labels by name


def test_probe_test_labels_follow_class_names_not_folder_positions(tmp_path):
    from vitlens.analyses.probes import dataset_labels, labels_by_class_name
    from vitlens.data import image_folder

    train = image_folder(_folder(tmp_path / "train", ("a", "b", "c")), transform=lambda im: im)
    test = image_folder(_folder(tmp_path / "test", ("b",)), transform=lambda im: im)
    assert dataset_labels(test).tolist() == [0, 0, 0]  # ImageFolder: by folder position
    assert labels_by_class_name(train, test, dataset_labels(test)).tolist() == [1, 1, 1]
    unknown = image_folder(_folder(tmp_path / "other", ("z",)), transform=lambda im: im)
    with pytest.raises(ValueError, match=r"test classes \['z'\] are not among"):
        labels_by_class_name(train, unknown, dataset_labels(unknown))


def test_probe_command_scores_a_one_class_test_folder_by_name(tmp_path, capsys):
    train = _folder(tmp_path / "train", ("a", "b"), per_class=4)
    test = _folder(tmp_path / "test", ("z",))
    argv = [
        "probe",
        "vit-cls",
        "--data",
        str(train),
        "--test-data",
        str(test),
        *SMALL,
        "--shots",
        "1",
        "--seeds",
        "1",
        "--out",
        str(tmp_path / "f.png"),
    ]
    fails_with_one_line(capsys, argv, "test classes ['z'] are not among the training classes")


# ------------------------------------------------------------------ zoo commands


def _zoo_copy(tmp_path, names=("vit-pt-small",)):
    folder = tmp_path / "zoo"
    folder.mkdir()
    manifest = json.loads((zoo_dir() / "manifest.json").read_text())
    manifest["models"] = {n: manifest["models"][n] for n in names}
    for entry in manifest["models"].values():
        shutil.copy(zoo_dir() / entry["file"], folder / entry["file"])
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder, manifest


@pytest.mark.parametrize("sub", ["verify", "list"])
def test_zoo_with_a_mistyped_folder_fails(sub, tmp_path, capsys):
    fails_with_one_line(capsys, ["zoo", "--zoo", str(tmp_path / "zooo"), sub], "does not exist")


def test_zoo_verify_with_an_empty_manifest_fails(tmp_path, capsys):
    (tmp_path / "manifest.json").write_text(json.dumps({"format": 1, "models": {}}))
    fails_with_one_line(capsys, ["zoo", "--zoo", str(tmp_path), "verify"], "nothing to verify")
    (tmp_path / "manifest.json").unlink()
    fails_with_one_line(capsys, ["zoo", "--zoo", str(tmp_path), "verify"], "nothing to verify")


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda m: "{truncated", "not valid JSON"),
        (lambda m: {**m, "format": 2}, "format 2; this version of vitlens reads format 1"),
        (lambda m: {"format": 1}, "no 'models' table"),
        (
            lambda m: {**m, "models": {"vit-pt-small": {"file": "vit-pt-small.safetensors"}}},
            "lacks ['sha256']",
        ),
        (
            lambda m: {
                **m,
                "models": {
                    "vit-pt-small": {
                        **m["models"]["vit-pt-small"],
                        "file": "../vit-pt-small.safetensors",
                    }
                },
            },
            "not a plain file name inside the zoo folder",
        ),
        (
            lambda m: {
                **m,
                "models": {"vit-pt-small": {**m["models"]["vit-pt-small"], "file": "/etc/passwd"}},
            },
            "not a plain file name",
        ),
    ],
)
@pytest.mark.parametrize("sub", ["verify", "list"])
def test_zoo_refuses_a_bad_manifest_in_one_line(sub, change, match, tmp_path, capsys):
    folder, manifest = _zoo_copy(tmp_path)
    changed = change(manifest)
    text = changed if isinstance(changed, str) else json.dumps(changed)
    (folder / "manifest.json").write_text(text)
    fails_with_one_line(capsys, ["zoo", "--zoo", str(folder), sub], match)


def test_zoo_verify_reports_an_incomplete_entry(tmp_path, capsys):
    folder, manifest = _zoo_copy(tmp_path)
    del manifest["models"]["vit-pt-small"]["verify"]
    (folder / "manifest.json").write_text(json.dumps(manifest))
    assert main(["zoo", "--zoo", str(folder), "verify"]) == 1
    out = capsys.readouterr().out
    assert "FAIL vit-pt-small: manifest entry is incomplete (no 'verify')" in out


def test_zoo_train_of_an_unknown_model_fails(tmp_path, capsys):
    assert main(["zoo", "--zoo", str(tmp_path), "train", "no-such"]) == 2
    assert "unknown zoo models ['no-such']" in capsys.readouterr().err
