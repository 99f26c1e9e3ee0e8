"""Profiles pick models and images by role; the glue helper works outside a book build."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from vitlens.book import finding, glue
from vitlens.book.profiles import PROFILES, get_profile
from vitlens.book.verdicts import Verdict, exceeds
from vitlens.core.stats import Estimate
from vitlens.models import PAPER_MODELS, ZOO_ARCHS, load_model, read_manifest
from vitlens.models.zoo import split_zoo_key, zoo_key


def test_default_profile_is_tiny_and_environment_selects(monkeypatch):
    monkeypatch.delenv("VITLENS_PROFILE", raising=False)
    assert get_profile().name == "tiny"
    monkeypatch.setenv("VITLENS_PROFILE", "paper")
    assert get_profile().name == "paper"
    assert get_profile("tiny").name == "tiny"


def test_unknown_profile_and_role_are_refused():
    with pytest.raises(ValueError, match="profiles: \\['paper', 'tiny'\\]"):
        get_profile("huge")
    with pytest.raises(ValueError, match="no model for role 'alexnet'"):
        get_profile("tiny").model("alexnet")


def test_both_profiles_cast_the_same_roles_with_known_models():
    assert set(PROFILES["tiny"].models) == set(PROFILES["paper"].models)
    tiny, paper = PROFILES["tiny"], PROFILES["paper"]
    assert {split_zoo_key(m)[0] for m in tiny.models.values() if m is not None} <= set(ZOO_ARCHS)
    assert {m for m in paper.models.values() if m is not None} <= set(PAPER_MODELS)
    for profile in (tiny, paper):
        assert {r for r, m in profile.models.items() if m is None} == set(profile.missing)


def test_every_tiny_model_is_trained_and_shipped():
    trained = read_manifest()
    untrained = {r: m for r, m in PROFILES["tiny"].models.items() if m and m not in trained}
    assert not untrained, f"tiny-profile roles without a shipped checkpoint: {untrained}"


def test_every_tiny_seed_is_trained_and_shipped():
    trained = read_manifest()
    tiny = PROFILES["tiny"]
    missing = [
        (role, seed)
        for role, seeds in tiny.seeds.items()
        for seed in seeds
        if zoo_key(tiny.models[role], seed) not in trained
    ]
    assert not missing, f"tiny-profile role seeds without a shipped checkpoint: {missing}"


def test_over_seeds_pairs_the_seeded_roles_and_combines_their_estimates():
    tiny = replace(
        PROFILES["tiny"],
        models={**PROFILES["tiny"].models, "vit": "vit-cls", "resnet": "resnet-local"},
        seeds={},
    )
    seeded = replace(tiny, seeds={"vit": (0, 1, 2)})
    calls = []

    def measure(vit, resnet):
        calls.append((vit, resnet))
        value = float(vit.head.weight.double().sum())
        return Estimate(value, value - 0.01, value + 0.02, "bootstrap over images")

    combined = seeded.over_seeds(measure, "vit", "resnet")
    assert len(calls) == 3
    weights = [float(vit.head.weight.double().sum()) for vit, _ in calls]
    assert len(set(weights)) == 3  # three different trainings of the ViT
    assert all(resnet is calls[0][1] for _, resnet in calls)  # one ResNet, loaded once
    for seed, weight in zip((0, 1, 2), weights, strict=True):
        reference = float(load_model("vit-cls", seed=seed).head.weight.double().sum())
        assert weight == pytest.approx(reference)
    assert combined.value == pytest.approx(np.mean(weights))
    assert combined.low < combined.value - 0.01 and combined.high > combined.value + 0.02
    assert combined.source.startswith(
        "t interval over 3 training seeds of vit-cls, one of resnet-local (per seed:"
    )
    # every call hands over the same loaded copies, so a chapter's per-model cache is shared
    seeded.over_seeds(measure, "vit", "resnet")
    first_call, second_call = calls[:3], calls[3:6]
    assert all(
        m is n
        for a, b in zip(first_call, second_call, strict=True)
        for m, n in zip(a, b, strict=True)
    )
    del calls[3:]
    # a first seed already measured (for a figure) is not measured again
    given = Estimate(weights[0], weights[0] - 0.01, weights[0] + 0.02, "bootstrap over images")
    again = seeded.over_seeds(measure, "vit", "resnet", first=given)
    assert len(calls) == 5 and again == combined
    with pytest.raises(ValueError, match="not those models' own"):
        replace(tiny, seeds={"vit": (1, 2)}).over_seeds(measure, "vit", "resnet", first=given)
    # the seeds' models, outside a measure, are the copies the measure was handed
    assert [id(m) for m in seeded.seed_models("vit")] == [id(vit) for vit, _ in calls[:3]]
    assert seeded.seed_models("resnet") == [calls[0][1]]
    # and so are the models a figure loads: the named model is its first seed's copy
    assert seeded.model("vit") is calls[0][0] and seeded.model("resnet") is calls[0][1]
    assert seeded.model("vit", seed=2) is calls[2][0]
    # without seeds the one estimate comes back as it is
    single = tiny.over_seeds(measure, "vit", "resnet")
    assert single.source == "bootstrap over images" and len(calls) == 6
    assert tiny.over_seeds(measure, "vit", "resnet", first=given) is given and len(calls) == 6
    with pytest.raises(ValueError, match="seeds \\(0, 1, 2\\), not seed 5"):
        seeded.model("vit", seed=5)
    with pytest.raises(ValueError, match="different numbers of seeds"):
        replace(seeded, seeds={"vit": (0, 1, 2), "vit-seed": (1, 2)}).over_seeds(
            measure, "vit", "vit-seed"
        )
    # a measure that decides the claim gets the seeds' verdicts combined part by part
    decided = seeded.over_seeds(
        lambda vit, resnet: exceeds("weights", measure(vit, resnet), 0.0), "vit", "resnet"
    )
    assert isinstance(decided, Verdict) and decided.parts[0].estimate == combined
    with pytest.raises(ValueError, match="at least 2 distinct"):
        replace(tiny, seeds={"vit": (0,)})
    with pytest.raises(ValueError, match="no model"):
        replace(PROFILES["paper"], seeds={"vit-seed": (0, 1)})


def test_run_coverage_says_whether_the_intervals_cover_the_training_run():
    tiny = PROFILES["tiny"]
    seeded = replace(tiny, seeds={"vit": (0, 1, 2), "resnet": (0, 1, 2)})
    assert seeded.run_coverage("vit", "resnet") == (
        f"and the training run (3 training seeds each of {tiny.models['vit']}, "
        f"{tiny.models['resnet']})"
    )
    assert seeded.run_coverage("vit", "vit-small").endswith(
        f"of {tiny.models['vit']}; one model of {tiny.models['vit-small']})"
    )
    assert replace(tiny, seeds={}).run_coverage("vit", "resnet") == (
        "but not the training run (one trained model of each)"
    )
    with pytest.raises(ValueError, match="at least one role"):
        tiny.run_coverage()


def test_the_books_cast_page_is_what_the_profiles_give():
    from pathlib import Path
    from unittest import mock

    from vitlens.book.profiles import ROLES, cast_table

    root = Path(__file__).resolve().parent.parent
    assert (root / "book" / "_cast.md").read_text() == cast_table(), (
        "book/_cast.md is not what the profiles give: python scripts/write_cast.py"
    )
    assert "```{include} _cast.md\n```" in (root / "book" / "intro.md").read_text()
    assert set(ROLES) == set(PROFILES["tiny"].models)
    assert "`vit-pt` (3 training seeds)" in cast_table()
    with mock.patch.dict(ROLES, clear=True), pytest.raises(ValueError, match="description"):
        cast_table()


def test_a_role_without_a_model_says_why():
    paper = get_profile("paper")
    assert not paper.has("vit-noskip-early") and paper.has("vit")
    with pytest.raises(ValueError, match="no public checkpoint of a ViT trained without"):
        paper.model("vit-noskip-early")


def test_present_keeps_the_roles_a_profile_has_in_the_order_given():
    paper, tiny = get_profile("paper"), get_profile("tiny")
    assert tiny.present("vit-large", "vit", "vit-small") == ["vit-large", "vit", "vit-small"]
    assert paper.present("vit-seed", "vit", "vit-noskip-early", "resnet") == ["vit", "resnet"]
    assert paper.present("vit-seed") == [] and paper.present() == []
    assert tiny.present("alexnet", "vit") == ["vit"]


def test_a_premise_says_why_once_per_distinct_reason():
    paper, tiny = get_profile("paper"), get_profile("tiny")
    assert tiny.premise("vit-noskip-early", "vit-noskip-late").met
    assert paper.premise("vit", "resnet") == tiny.premise("vit-seed")
    noskip = paper.premise("vit-noskip-early", "vit-noskip-late", name="models without skips")
    assert not noskip.met
    assert noskip.reason == f"no models without skips: {paper.missing['vit-noskip-early']}"
    both = paper.premise("vit", "vit-seed", "vit-tuned-same", "vit-tuned-new")
    assert both.reason == f"{paper.missing['vit-seed']}; {paper.missing['vit-tuned-new']}"
    assert "casts no role 'alexnet'" in tiny.premise("alexnet").reason
    silent = replace(paper, missing={})
    assert "has no model for role 'vit-seed'" in silent.premise("vit-seed").reason
    with pytest.raises(ValueError):
        tiny.premise()


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_data_scale_runs_from_least_to_most_data_over_available_roles(name):
    profile = PROFILES[name]
    images = [n for _, n in profile.data_scale]
    assert len(images) >= 2 and images == sorted(set(images))
    assert all(profile.has(role) for role, _ in profile.data_scale)
    assert profile.data_scale[-1][0] == "vit"


def test_tiny_images_are_held_out_shapes():
    from vitlens.data import ShapesDataset, SyntheticDataset

    tiny = get_profile("tiny")
    images = tiny.images(tiny.model("vit"), num_images=8)
    assert len(images) == 8 and images.split == "test"
    image, label = images[0]
    assert image.shape == (3, 32, 32) and 0 <= int(label) < 10
    # the same images the profile drew before it went through load_images
    assert torch.equal(images.batch.images, ShapesDataset(8, split="test", seed=0).batch.images)
    second = tiny.transfer_images(tiny.model("vit"), 6)
    before = SyntheticDataset("junctions", 6, split="test", seed=0)
    assert torch.equal(second.batch.images, before.batch.images)


def test_glue_prints_outside_a_book_build(capsys, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "myst_nb", None)  # as on Colab: myst-nb not installed
    assert glue("answer", 42) == 42
    assert "answer = 42" in capsys.readouterr().out


def test_finding_glues_claim_statistic_and_verdict_and_refuses_other_verdicts(capsys, monkeypatch):
    from types import SimpleNamespace

    from vitlens.book.claims import CLAIMS
    from vitlens.book.verdicts import exceeds
    from vitlens.core.stats import Estimate

    monkeypatch.setitem(__import__("sys").modules, "myst_nb", None)
    verdict = exceeds("CKA difference", Estimate(0.3, 0.02, 0.4, "bootstrap over 4 batches"), 0.05)
    assert finding("ch2_fig1", verdict) == "partly holds"
    printed = capsys.readouterr().out
    assert f"ch2_fig1_claim = {CLAIMS['ch2_fig1']!r}" in printed
    assert "ch2_fig1_statistic = 'CKA difference 0.30 [0.02, 0.40]" in printed
    assert "bootstrap over 4 batches" in printed
    assert "ch2_fig1_verdict = 'partly holds'" in printed
    with pytest.raises(ValueError, match=r"must be one of .*'holds'.*got 'yes'"):
        finding("ch2_fig1", SimpleNamespace(outcome="yes", text=lambda: "CKA 0.8"))
    with pytest.raises(KeyError, match="no paper claim"):
        finding("fig99", verdict)


def test_glue_turns_numpy_and_torch_scalars_into_python_numbers(capsys, monkeypatch):
    import numpy as np

    monkeypatch.setitem(__import__("sys").modules, "myst_nb", None)
    assert type(glue("a", np.float64(0.25))) is float
    assert type(glue("b", np.float32(0.5))) is float
    assert type(glue("c", torch.tensor(3))) is int
    assert "a = 0.25" in capsys.readouterr().out


def test_evaluation_sample_is_fixed_distinct_and_spans_a_class_sorted_folder():
    from torch.utils.data import TensorDataset

    from vitlens.data.sampling import evaluation_sample

    labels = torch.arange(10).repeat_interleave(100)  # like ImageFolder: sorted by class
    folder = TensorDataset(torch.arange(1000), labels)
    sample = evaluation_sample(folder, 200)
    indices = list(sample.indices)
    assert indices == list(evaluation_sample(folder, 200).indices)  # same seed, same sample
    assert len(set(indices)) == 200 and indices != sorted(indices)
    counts = torch.bincount(labels[indices], minlength=10)
    assert counts.min() >= 10, f"class counts {counts.tolist()}: the sample misses classes"
    assert list(evaluation_sample(folder, 200, seed=1).indices) != indices
    for bad in (0, 1001):
        with pytest.raises(ValueError, match=r"num_images must be in 1\.\.1000"):
            evaluation_sample(folder, bad)


def test_paper_images_are_a_shuffled_sample_of_imagenette(monkeypatch, tmp_path):
    from torch.utils.data import TensorDataset

    labels = torch.arange(10).repeat_interleave(30)
    fake_val = TensorDataset(torch.zeros(300, 3, 4, 4), labels)
    monkeypatch.setattr("vitlens.data.sources.imagenette", lambda root, model, split: fake_val)
    monkeypatch.setenv("VITLENS_DATA", str(tmp_path))
    images = get_profile("paper").images(model=None, num_images=50)
    assert len(images) == 50
    assert len(set(labels[list(images.indices)].tolist())) == 10


def test_paper_profile_states_its_download_before_loading_anything():
    from vitlens.book.profiles import PROFILES

    paper = PROFILES["paper"]
    cost = paper.cost()
    for name in filter(None, paper.models.values()):
        assert name in cost
    assert 2.5 < sum(paper.weights_gb(r) for r in paper.models if paper.has(r)) < 4.0
    assert "nothing to download" in PROFILES["tiny"].cost()


def test_the_tiny_profile_second_task_is_junctions_none_of_its_models_trained_on():
    from vitlens.analyses.probes import dataset_labels

    tiny = PROFILES["tiny"]
    images = tiny.transfer_images(tiny.model("vit"), 20)
    assert images.name == "junctions" and len(images) == 20
    assert dataset_labels(images).tolist() == [i % 10 for i in range(20)]
    trained_on = {e["data"]["dataset"] for e in read_manifest().values() if "init_from" not in e}
    assert "junctions" not in trained_on  # only the fine-tuned models have seen it
    assert PROFILES["paper"].transfer_source == "cifar10"
    with pytest.raises(ValueError, match="has no second task"):
        replace(tiny, transfer_source=None).transfer_images(tiny.model("vit"), 4)


def test_synthetic_dataset_renders_either_dataset_like_the_shapes_dataset():
    from vitlens.data import ShapesDataset, SyntheticDataset

    shapes, by_name = ShapesDataset(4, split="test"), SyntheticDataset("shapes", 4, split="test")
    assert torch.equal(shapes[3][0], by_name[3][0]) and int(by_name[3][1]) == 3
    assert by_name.classes == shapes.classes
    with pytest.raises(ValueError, match="unknown dataset 'fractals'"):
        SyntheticDataset("fractals", 4)
    with pytest.raises(ValueError, match="positive number of samples"):
        SyntheticDataset("junctions", 0)


def test_per_model_measures_each_loaded_model_once_and_takes_what_the_figures_measured():
    from vitlens.book.profiles import per_model

    tiny = get_profile("tiny")
    vit, resnet = tiny.model("vit"), tiny.model("resnet")
    calls = []

    def measure(model):
        calls.append(model)
        return float(sum(p.double().sum() for p in model.parameters()))

    measured = per_model(measure, known={vit: "from the figure"})
    assert measured(vit) == "from the figure" and calls == []
    first = measured(resnet)
    assert measured(resnet) == first and calls == [resnet]
    # another seed is another loaded model: measured on its own
    other = tiny.model("resnet", seed=tiny.training_seeds("resnet")[1])
    assert measured(other) != first and calls == [resnet, other]
