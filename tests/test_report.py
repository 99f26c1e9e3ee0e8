"""``vitlens report``: every section, numbers equal to the analyses', embedded images.

One report of the zoo's ``vit-cls`` against ``resnet`` on 32 synthetic images is built
once (module fixture) and checked against the individual analysis functions on the same
images; a ResNet-only report runs through the command line. The browser check opens the
page in headless Chromium (skipped without it, unless ``VITLENS_REQUIRE_BOOK=1``).
"""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from _browser import CHROMIUM, CHROMIUM_FLAGS, REQUIRED

from vitlens import (
    ShapesConfig,
    ShapesDataset,
    cka_matrix,
    fewshot_linear_probe,
    head_subset_cka,
    load_model,
    localization_map,
    mean_attention_distance,
    pooled_features,
    residual_norm_ratios,
)
from vitlens.analyses.probes import dataset_labels
from vitlens.analyses.receptive import mass_area, sampled_receptive_field
from vitlens.cli import main
from vitlens.report import build_report, section_keys
from vitlens.streaming import RunOptions

RUN = RunOptions(batch_size=16, device="cpu", progress=False)


@pytest.fixture(scope="module")
def images():
    config = ShapesConfig(image_size=32)
    return ShapesDataset(32, split="test", config=config), ShapesDataset(
        32, split="train", config=config
    )


@pytest.fixture(scope="module")
def models():
    return load_model("vit-cls"), load_model("resnet-local")


@pytest.fixture(scope="module")
def report(models, images):
    vit, resnet = models
    test, train = images
    return build_report(
        vit,
        test,
        resnet,
        probe_data=train,
        name="vit-cls",
        against_name="resnet",
        settings={"shots": 1, "seeds": 2},
        run=RUN,
    )


@pytest.mark.slow
def test_every_section_runs_for_a_vit_against_a_resnet(report):
    assert [s.key for s in report.sections] == section_keys()
    assert all(s.status == "ok" for s in report.sections), [
        (s.key, s.reason) for s in report.sections if s.status != "ok"
    ]
    assert (report.model, report.against, report.num_images) == ("vit-cls", "resnet", 32)
    assert all(s.seconds > 0 and s.figures for s in report.sections)


@pytest.mark.slow
def test_numbers_equal_the_analysis_functions(report, models, images):
    vit, resnet = models
    test, train = images
    own = cka_matrix(vit, test, run=RUN)
    cka = report.section("cka")
    np.testing.assert_allclose(cka.arrays["cka_vit-cls"], own.matrix)
    assert cka.numbers["mean off-diagonal CKA, vit-cls"] == pytest.approx(own.mean_offdiagonal())
    against = cka_matrix(vit, test, resnet, run=RUN)
    np.testing.assert_allclose(report.section("cka_against").arrays["cka"], against.matrix)
    assert report.section("cka_against").numbers["mean CKA"] == pytest.approx(against.matrix.mean())

    distances = mean_attention_distance(vit, test, run=RUN)
    assert report.section("attention_distance").numbers[
        "mean distance per block (pixels)"
    ] == pytest.approx(distances.mean(1).tolist())

    subsets = head_subset_cka(vit, resnet, test, block=0, run=RUN)
    np.testing.assert_allclose(report.section("head_subsets").arrays["cka"], subsets.matrix)

    field = report.section("receptive_field")
    sampled = sampled_receptive_field(vit, test, sample_channels=32, run=RUN)  # the default
    areas = field.numbers["half-mass area per block (fraction of the image)"]
    assert areas == pytest.approx([mass_area(f.field) for f in sampled.values()])
    errors = field.numbers["standard error over the channel draw"]
    assert errors == pytest.approx([f.standard_error_of(mass_area) for f in sampled.values()])
    assert sum(e > 0 for e in errors) > len(errors) // 2  # 32 of 128 channels: a draw
    assert field.numbers["channels per layer"].startswith("32 of ")

    norms = residual_norm_ratios(vit, test, run=RUN)
    spatial = norms.mean_over_positions(norms.norm_ratio, prefix=False)
    skip = report.section("skip_norms").numbers
    assert skip["mean norm ratio, all branches"] == pytest.approx(float(spatial.mean()))
    prefix = norms.mean_over_positions(norms.norm_ratio, prefix=True)
    assert skip["mean norm ratio, class token"] == pytest.approx(float(prefix.mean()))

    loc = localization_map(vit, test, "blocks.7", run=RUN)
    section = report.section("localization")
    assert section.numbers["layer"] == "blocks.7"
    np.testing.assert_allclose(section.arrays["cka"], loc.numpy())
    patches = loc[1:].reshape(64, 64)
    assert section.numbers["mean CKA with own patch"] == pytest.approx(
        float(patches.diagonal().mean())
    )

    layers = [f"blocks.{i}" for i in range(8)]
    fit = pooled_features(vit, train, layers, pooling="first", run=RUN)
    held = pooled_features(vit, test, layers, pooling="first", run=RUN)
    last = fewshot_linear_probe(
        fit["blocks.7"], dataset_labels(train), held["blocks.7"], dataset_labels(test),
        shots=1, seeds=2,
    )  # fmt: skip
    probes = report.section("probe").numbers
    assert probes["shots, seeds, classes"] == "1, 2, 10"
    assert probes["accuracy at the last block, first"] == pytest.approx(float(last.mean))


@pytest.mark.slow
def test_page_is_self_contained_with_every_section(report, tmp_path):
    page = report.save(tmp_path / "report.html").read_text()
    for section in report.sections:
        assert f'id="{section.key}"' in page and section.title in page
    sources = re.findall(r'src="([^"]*)"', page)
    assert len(sources) == sum(len(s.figures) for s in report.sections) == 9  # CKA: 2 models
    assert all(src.startswith("data:image/png;base64,") for src in sources)
    assert not re.search(r'(href|src)="(https?:)?//', page), "external resource"
    assert "<link" not in page and "<script" not in page and "@import" not in page
    assert "vit-cls" in page and "resnet" in page and "cpu" in page and "0.1.0" in page


@pytest.mark.slow
def test_a_resnet_report_marks_vit_only_sections_not_applicable(tmp_path, capsys):
    out = tmp_path / "resnet.html"
    argv = ["report", "resnet-local", "--data", "shapes", "--num-images", "24"]
    argv += ["--batch-size", "12"]
    argv += ["--seeds", "1", "--out", str(out), "--numbers", str(tmp_path / "n.npz")]
    assert main(argv) == 0
    page = out.read_text()
    for key in ("attention_distance", "head_subsets"):
        section = page.split(f'id="{key}"')[1].split("</section>")[0]
        assert "Not applicable" in section and "no attention" in section
    cka_against = page.split('id="cka_against"')[1].split("</section>")[0]
    assert "Skipped" in cka_against and "--against" in cka_against
    numbers = np.load(tmp_path / "n.npz")
    assert numbers["cka.cka_resnet-local"].shape == (37, 37)  # stem; 9 blocks: 3 inner + output
    assert "report:" in capsys.readouterr().out


def test_probes_without_labels_are_skipped_with_the_reason(models):
    vit, _ = models
    report = build_report(vit, torch.randn(8, 3, 32, 32), run=RUN.with_batch_size(8))
    probes = report.section("probe")
    assert probes.status == "skipped" and "no labels" in probes.reason
    assert report.section("cka_against").status == "skipped"


def test_an_unknown_model_is_one_line_on_stderr_and_exit_2(tmp_path, capsys):
    out = tmp_path / "r.html"
    assert main(["report", "no-such-model", "--data", "shapes", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("vitlens report: error:")
    assert "no-such-model" in err[0]
    assert not out.exists()


# --------------------------------------------------------------------------- browser


def _browser_unavailable() -> str | None:
    if CHROMIUM is None:
        return "no chromium on PATH (apt-get install chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install -e '.[test]')"
    return None


@pytest.mark.slow
def test_a_browser_shows_every_image(report, tmp_path):
    reason = _browser_unavailable()
    if reason:
        if REQUIRED:
            raise RuntimeError(f"browser check required but {reason}")
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    path = report.save(tmp_path / "report.html")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        page = browser.new_page()
        errors, requests = [], []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("request", lambda r: requests.append(r.url))
        page.goto(path.as_uri(), wait_until="load")
        images = page.eval_on_selector_all(
            "img", "els => els.map(e => e.complete && e.naturalWidth > 0)"
        )
        browser.close()
    assert images and all(images), f"broken images: {images}"
    assert not errors, errors
    assert all(url.startswith(("file:", "data:")) for url in requests), requests
