"""Won et al. 2020 taggers: parity with the upstream outputs, and strict key-by-key conversion."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import SHARED

from musictag import hub
from musictag.convert.won2020 import CheckpointMismatchError, convert, state_dict_for
from musictag.inference import load_tagger
from musictag.nets import build_model
from musictag.registry import available_models, get_card
from musictag.weights import read_weights

WON = SHARED / "reference-checkpoints" / "won2020"
WITH_FILES = ["mtat/fcn", "mtat/crnn", "mtat/musicnn", "msd/fcn", "msd/crnn",
              "jamendo/fcn", "jamendo/crnn", "jamendo/musicnn"]


def needs_shared() -> None:
    if not (WON / "reference_outputs.npz").is_file():
        pytest.skip("../shared/reference-checkpoints/won2020 is not here")


@pytest.fixture(scope="module")
def reference():
    needs_shared()
    with np.load(WON / "reference_outputs.npz") as data:
        return {key: data[key] for key in data.files}


@pytest.mark.parametrize("key", WITH_FILES)
def test_imported_checkpoint_reproduces_the_upstream_outputs(key, reference, tmp_path,
                                                             monkeypatch):
    monkeypatch.setenv(hub.CACHE_ENV, str(tmp_path))
    dataset, arch = key.split("/")
    card = get_card(f"won2020-{dataset}-{arch}")
    written = hub.import_file(card, WON / dataset / f"{arch}.pth")
    assert written == hub.converted_path(card)
    _, stored = read_weights(written)
    assert stored["provenance"]["checksum_verified"] is True
    assert stored["licence_notice"].startswith("MIT License")

    tagger = load_tagger(card.name, device="cpu")
    inputs = reference[f"inputs_{card.window_samples}"]
    scores = tagger.predict(inputs)
    assert np.abs(scores - reference[key]).max() < 1e-4
    if arch == "musicnn":  # the cheapest: forward() gives logits, embed() the dense1 features
        with torch.no_grad():
            logits = tagger.backend.model(torch.from_numpy(inputs)).numpy()
        assert np.abs(1 / (1 + np.exp(-logits)) - reference[key]).max() < 1e-4
        assert tagger.backend.embed(inputs).shape == (2, card.arch["dense_units"])


def upstream_conv_block(prefix: str, c_in: int, c_out: int, kernel: tuple[int, ...]) -> dict:
    """The keys of an upstream ``Conv_1d``/``Conv_2d``: conv with bias, then BatchNorm."""
    return {f"{prefix}.conv.weight": (c_out, c_in, *kernel), f"{prefix}.conv.bias": (c_out,),
            **upstream_bn(f"{prefix}.bn", c_out)}


def upstream_bn(prefix: str, channels: int) -> dict:
    return {f"{prefix}.weight": (channels,), f"{prefix}.bias": (channels,),
            f"{prefix}.running_mean": (channels,), f"{prefix}.running_var": (channels,),
            f"{prefix}.num_batches_tracked": ()}


def upstream_linear(prefix: str, n_in: int, n_out: int) -> dict:
    return {f"{prefix}.weight": (n_out, n_in), f"{prefix}.bias": (n_out,)}


CHANNELS = [1, 128, 128, 128, 256, 256, 256, 256, 256, 256, 512, 512]


def upstream_sample_shapes() -> dict:
    """SampleCNN as the upstream README lays it out (written from it, not from our module)."""
    shapes = upstream_conv_block("layer1", 1, 128, (3,))
    for n in range(2, 11):
        shapes.update(upstream_conv_block(f"layer{n}", CHANNELS[n - 1], CHANNELS[n], (3,)))
    shapes.update(upstream_conv_block("layer11", 512, 512, (1,)))
    shapes.update(upstream_linear("dense", 512, 50))
    return shapes


def upstream_se_shapes() -> dict:
    shapes: dict = {}
    for n in range(1, 12):
        c_in, c_out = CHANNELS[n - 1], CHANNELS[n]
        kernel = 1 if n == 11 else 3
        block = f"layer{n}"
        shapes.update({f"{block}.conv_1.weight": (c_out, c_in, kernel),
                       f"{block}.conv_1.bias": (c_out,), **upstream_bn(f"{block}.bn_1", c_out),
                       f"{block}.conv_2.weight": (c_out, c_out, kernel),
                       f"{block}.conv_2.bias": (c_out,), **upstream_bn(f"{block}.bn_2", c_out),
                       **upstream_linear(f"{block}.dense1", c_out, c_out),
                       **upstream_linear(f"{block}.dense2", c_out, c_out)})
        if n == 1 or c_in != c_out:  # layer1 has stride 3: a projected shortcut
            shapes.update({f"{block}.conv_3.weight": (c_out, c_in, kernel),
                           f"{block}.conv_3.bias": (c_out,),
                           **upstream_bn(f"{block}.bn_3", c_out)})
    shapes.update(upstream_linear("dense1", 512, 512))
    shapes.update(upstream_bn("bn", 512))
    shapes.update(upstream_linear("dense2", 512, 50))
    return shapes


def random_state(shapes: dict) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    state = {}
    for key, shape in shapes.items():
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(7)
        elif key.endswith("running_var"):
            state[key] = torch.rand(shape, generator=generator) + 0.5
        else:
            state[key] = torch.randn(shape, generator=generator) * 0.05
    return state


def n_parameters(shapes: dict) -> int:
    return sum(int(np.prod(shape)) for key, shape in shapes.items()
               if not key.endswith(("running_mean", "running_var", "num_batches_tracked")))


@pytest.mark.parametrize(("arch", "shapes", "n_params"), [
    ("sample", upstream_sample_shapes(), 1_869_874),
    ("se", upstream_se_shapes(), 6_951_858),
])
def test_sample_level_conversion_matches_every_upstream_key(arch, shapes, n_params, tmp_path):
    assert n_parameters(shapes) == n_params
    state = random_state(shapes)
    path = tmp_path / "best_model.pth"
    torch.save(state, path)
    for dataset in ("mtat", "msd", "jamendo"):
        card = get_card(f"won2020-{dataset}-{arch}")
        converted = convert(path, card)
        assert sorted(converted) == sorted(shapes)
    model = build_model(card.arch).eval()
    model.load_state_dict({k: torch.from_numpy(v) for k, v in converted.items()})
    assert torch.equal(model.state_dict()["layer11.bn.running_mean" if arch == "sample"
                                          else "layer11.bn_2.running_mean"],
                       state["layer11.bn.running_mean" if arch == "sample"
                             else "layer11.bn_2.running_mean"])
    with torch.no_grad():
        logits = model(torch.randn(2, card.window_samples))
        embedding = model.embed(torch.randn(1, card.window_samples))
    assert logits.shape == (2, 50) and embedding.shape == (1, 512)


def test_msd_musicnn_takes_the_wider_upstream_back_end():
    card = get_card("won2020-msd-musicnn")
    shapes = {k: tuple(v.shape) for k, v in build_model(card.arch).state_dict().items()}
    assert shapes["layer1.conv.weight"] == (512, 561, 7)
    assert shapes["dense1.weight"] == (500, 2 * (561 + 3 * 512))
    assert shapes["layers.0.conv.weight"] == (204, 1, 67, 7)
    assert shapes["layers.1.conv.weight"] == (204, 1, 38, 7)


def test_missing_left_over_and_misshapen_keys_are_refused():
    arch = {"name": "won2020_samplecnn"}
    state = random_state(upstream_sample_shapes())
    missing = dict(state)
    del missing["layer4.conv.bias"]
    with pytest.raises(CheckpointMismatchError, match=r"1 key\(s\) missing \(layer4.conv.bias"):
        state_dict_for(missing, arch)
    extra = {**state, "module.extra": torch.zeros(1)}
    with pytest.raises(CheckpointMismatchError, match=r"1 left over \(module.extra"):
        state_dict_for(extra, arch)
    wrong = {**state, "dense.weight": torch.zeros(10, 512)}
    with pytest.raises(CheckpointMismatchError, match=r"dense.weight \(10, 512\)"):
        state_dict_for(wrong, arch)


def test_front_end_buffers_must_match_the_cards_mel_settings():
    needs_shared()
    state = torch.load(WON / "mtat" / "fcn.pth", map_location="cpu", weights_only=True)
    state_dict_for(state, get_card("won2020-mtat-fcn").arch)
    bad = {**state, "spec.mel_scale.fb": state["spec.mel_scale.fb"] * 1.01}
    with pytest.raises(CheckpointMismatchError, match="mel settings do not match"):
        state_dict_for(bad, get_card("won2020-mtat-fcn").arch)
    no_buffers = {k: v for k, v in state.items() if not k.startswith("spec.")}
    with pytest.raises(CheckpointMismatchError, match="spec.spectrogram.window"):
        state_dict_for(no_buffers, get_card("won2020-mtat-fcn").arch)


def test_pickled_objects_are_not_loaded(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"layer1.conv.weight": torch.zeros(1), "payload": print}, path)
    with pytest.raises(CheckpointMismatchError, match="not a readable PyTorch checkpoint"):
        convert(path, get_card("won2020-mtat-sample"))


def test_cards_carry_the_upstream_facts():
    cards = {card.name: card for card in available_models() if card.name.startswith("won2020-")}
    assert len(cards) == 15
    windows = {"fcn": 464000, "crnn": 464000, "musicnn": 48000, "sample": 59049, "se": 59049}
    for card in cards.values():
        arch = card.provenance["upstream_arch"]
        assert card.window_samples == windows[arch]
        assert card.sample_rate_hz == 16000
        assert card.averaging == {"rule": "evenly_spaced", "n_windows": 16}
        assert card.weights["url"].startswith(
            "https://github.com/minzwon/sota-music-tagging-models/raw/"
            "36aa13b7205ff156cf4dcab60fd69957da453151/models/")
        assert card.weights["converter"] == "won2020"
        assert card.licence == "MIT" and "Minz Won" in card.licence_notice
        assert 0.79 < card.reported["roc_auc"] < 0.92
    jamendo = cards["won2020-jamendo-fcn"].labels
    assert jamendo == sorted(jamendo)
    if (WON / "upstream_blobs.tsv").is_file():
        rows = [line.split("\t") for line in (WON / "upstream_blobs.tsv").read_text().splitlines()]
        blobs = {path: sha1 for sha1, _, path in rows[1:]}
        for card in cards.values():
            assert card.weights["git_blob_sha1"] == blobs[card.provenance["path"]]
        for dataset in ("mtat", "msd", "jamendo"):
            tags = (WON / "tags" / f"{dataset}.txt").read_text().splitlines()
            assert cards[f"won2020-{dataset}-fcn"].labels == [t for t in tags if t]
