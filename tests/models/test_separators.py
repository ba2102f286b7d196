"""Separator models: outputs, sizes, width, warm starts that grow them, and the class head."""

from dataclasses import replace

import pytest
import torch

from latentlab.checkpoint import model_record
from latentlab.config import Config
from latentlab.data.mixtures import MixturePairs
from latentlab.errors import UserError
from latentlab.experiments import separation, shared
from latentlab.files import save_atomic
from latentlab.losses import permutation_invariant_mse
from latentlab.models import SEPARATORS, MLPAutoencoder
from latentlab.training.best import warm_start

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("name", list(SEPARATORS))
def test_separators_reproduce_the_mixture_and_train(name):
    torch.manual_seed(0)
    model = SEPARATORS[name]((3, 32, 32))
    x1, x2 = torch.rand(2, 4, 3, 32, 32)
    m = (x1 + x2) / 2
    first, second = model.separate(m)
    assert first.shape == second.shape == m.shape
    assert torch.allclose((first + second) / 2, m, atol=1e-6)
    assert first.min() >= 0 and first.max() <= 1 and second.min() >= 0 and second.max() <= 1
    model.train()
    d, kl = model(m)
    loss = (m + d - x1).pow(2).mean() + kl.mean()
    loss.backward()
    assert torch.isfinite(loss)
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum()]
    assert not missing


@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 28, 28), (3, 20, 12)])
def test_separators_accept_any_image_size(shape):
    for cls in SEPARATORS.values():
        model = cls(shape)
        m = torch.rand(2, *shape)
        first, second = model.separate(m)
        assert first.shape == m.shape
        assert torch.allclose((first + second) / 2, m, atol=1e-6)


@pytest.mark.parametrize("name", ["unet", "resunet", "two-decoder-ae"])
def test_width_option_sets_the_separator_width(name):
    default = separation.build(Config(experiment="separator", model=name), (3, 32, 32))
    narrow = separation.build(Config(experiment="separator", model=name, width=8), (3, 32, 32))
    assert narrow.hparams()["width"] == 8 != default.hparams()["width"]
    assert shared.num_parameters(narrow) < shared.num_parameters(default)


def saved_separator(path, width, seed, **metrics):
    model = separation.build(Config(experiment="separator", width=width, seed=seed), (3, 16, 16))
    save_atomic(model_record(model, {}, metrics=metrics), path)
    return model


def test_init_from_copies_the_weights_of_a_finished_separator(tmp_path):
    earlier = saved_separator(tmp_path / "earlier.pth", 8, seed=1, train_seconds=60.0,
                              test_psnr=20.5, val_psnr_vs_time=[[60.0, 20.5]], test_ssim=0.7)
    model = separation.build(Config(experiment="separator", width=8, seed=2), (3, 16, 16))
    assert not torch.equal(model.head.weight, earlier.head.weight)
    record = warm_start(model, tmp_path / "earlier.pth")
    for name, value in earlier.state_dict().items():
        assert torch.equal(model.state_dict()[name], value), name
    assert record == {"path": str(tmp_path / "earlier.pth"), "train_seconds": 60.0,
                      "test_psnr": 20.5, "val_psnr_vs_time": [[60.0, 20.5]]}


def test_init_from_adds_or_drops_a_class_head(tmp_path):
    earlier = saved_separator(tmp_path / "plain.pth", 8, seed=1)
    config = Config(experiment="separator", width=8, seed=2, class_weight=0.5)
    headed = separation.build(config, (3, 16, 16), n_classes=10)
    fresh_head = headed.class_head.weight.clone()
    warm_start(headed, tmp_path / "plain.pth")
    for name, value in earlier.state_dict().items():
        assert torch.equal(headed.state_dict()[name], value), name
    assert torch.equal(headed.class_head.weight, fresh_head)  # new: keeps its init
    save_atomic(model_record(headed, {}), tmp_path / "headed.pth")
    plain = separation.build(replace(config, class_weight=0.0), (3, 16, 16))
    warm_start(plain, tmp_path / "headed.pth")
    assert torch.equal(plain.head.weight, earlier.head.weight)


def test_init_from_refuses_another_architecture_or_a_missing_file(tmp_path):
    saved_separator(tmp_path / "wide.pth", 16, seed=0)
    narrower = separation.build(Config(experiment="separator", width=8), (3, 16, 16))
    with pytest.raises(UserError, match="--width .*may only grow"):
        warm_start(narrower, tmp_path / "wide.pth")
    resunet = separation.build(Config(experiment="separator", model="resunet", width=8),
                               (3, 16, 16))
    save_atomic(model_record(resunet, {}), tmp_path / "resunet.pth")
    wider_resunet = separation.build(Config(experiment="separator", model="resunet", width=16),
                                     (3, 16, 16))
    with pytest.raises(UserError, match="ResUNetSeparator"):  # only a U-Net grows wider
        warm_start(wider_resunet, tmp_path / "resunet.pth")
    autoencoder = MLPAutoencoder((3, 16, 16), latent_dim=4)
    save_atomic(model_record(autoencoder, {}), tmp_path / "autoencoder.pth")
    narrow = separation.build(Config(experiment="separator", width=8), (3, 16, 16))
    with pytest.raises(UserError, match="MLPAutoencoder"):
        warm_start(narrow, tmp_path / "autoencoder.pth")
    with pytest.raises(UserError, match="--init-from .* does not exist"):
        Config(experiment="separator", init_from=str(tmp_path / "missing.pth")).validate()


def test_a_trained_unet_grows_bottleneck_blocks_without_changing_its_output(tmp_path):
    earlier = saved_separator(tmp_path / "earlier.pth", 8, seed=1)
    torch.nn.init.normal_(earlier.head.weight)  # a head that is not near zero
    save_atomic(model_record(earlier, {}), tmp_path / "earlier.pth")
    deeper = separation.build(
        Config(experiment="separator", width=8, bottleneck_blocks=2, seed=2), (3, 16, 16))
    assert shared.num_parameters(deeper) > shared.num_parameters(earlier)
    warm_start(deeper, tmp_path / "earlier.pth")
    m = torch.rand(4, 3, 16, 16)
    earlier.eval(), deeper.eval()
    with torch.no_grad():
        assert torch.allclose(deeper(m)[0], earlier(m)[0], atol=1e-5)
    save_atomic(model_record(deeper, {}), tmp_path / "deeper.pth")
    with pytest.raises(UserError, match="may only grow"):
        warm_start(earlier, tmp_path / "deeper.pth")
    with pytest.raises(UserError, match="--model unet"):
        Config(experiment="separator", model="resunet", bottleneck_blocks=1).validate()


def test_a_trained_unet_grows_wider_without_changing_its_output(tmp_path):
    config = Config(experiment="separator", width=8, bottleneck_blocks=1, class_weight=1.0,
                    seed=1)
    earlier = separation.build(config, (3, 16, 16), n_classes=4)
    for layer in (earlier.head, earlier.bottleneck[0].body[-1]):  # not near zero or identity
        torch.nn.init.normal_(layer.weight)
    m = torch.rand(6, 3, 16, 16)
    earlier(m)  # BatchNorm statistics that are not the init's
    save_atomic(model_record(earlier, {}), tmp_path / "earlier.pth")
    wider = separation.build(replace(config, width=12, bottleneck_blocks=2, seed=2),
                             (3, 16, 16), n_classes=4)
    warm_start(wider, tmp_path / "earlier.pth")
    assert shared.num_parameters(wider) > 2 * shared.num_parameters(earlier)
    for training in (False, True):  # running statistics, then the batch's own (float32)
        earlier.train(training), wider.train(training)
        with torch.no_grad():
            assert torch.allclose(wider(m)[0], earlier(m)[0], atol=1e-5)
            assert torch.allclose(wider.logits, earlier.logits, atol=1e-5)
    # the new channels start unread, but training reaches them: the weights that read them
    # get gradients at once
    first, second = wider.project(m, wider(m)[0])
    permutation_invariant_mse(first, second, torch.rand_like(m), torch.rand_like(m)).backward()
    assert torch.count_nonzero(wider.head.weight[:, 8:]) == 0
    assert wider.head.weight.grad[:, 8:].abs().sum() > 0
    merge = wider.merge[-1][0][0]  # reads cat([up (12 channels), skip (12 channels)])
    assert torch.count_nonzero(merge.weight[:, 8:12]) == 0
    assert torch.count_nonzero(merge.weight[:, 20:]) == 0
    assert torch.equal(merge.weight[:8, 12:20], earlier.merge[-1][0][0].weight[:, 8:])


def test_init_from_twice_records_the_training_since_the_first_run(tmp_path):
    saved_separator(tmp_path / "second.pth", 8, seed=1, train_seconds=50.0, epochs=2,
                    test_psnr=21.0, val_psnr_vs_time=[[20.0, 20.8], [50.0, 21.0]],
                    initialised_from={"train_seconds": 100.0, "epochs": 3,
                                      "val_psnr_vs_time": [[100.0, 20.0]]})
    model = separation.build(Config(experiment="separator", width=8), (3, 16, 16))
    record = warm_start(model, tmp_path / "second.pth")
    assert record["train_seconds"] == 150.0 and record["epochs"] == 5
    assert record["val_psnr_vs_time"] == [[100.0, 20.0], [120.0, 20.8], [150.0, 21.0]]


def test_class_head_learns_the_classes_of_the_two_images_and_leaves_the_rest_as_it_was():
    config = Config(experiment="separator", width=4, augmentation="none").validate()
    plain = separation.build(config, (3, 8, 8), n_classes=10)
    headed = separation.build(replace(config, class_weight=1.0), (3, 8, 8), n_classes=10)
    assert plain.class_head is None and headed.class_head is not None
    assert headed.hparams()["class_head"] == 10 and "class_head" not in plain.hparams()
    for name, weight in plain.state_dict().items():  # the same start but for the head
        assert torch.equal(weight, headed.state_dict()[name]), name
    images = torch.randint(0, 256, (64, 3, 8, 8), dtype=torch.uint8)
    labels = torch.arange(64) % 10
    train = MixturePairs(images, torch.arange(64).view(32, 2), labels=labels)
    hinted = replace(config, class_weight=1.0)
    step = separation.make_train_step(hinted, None, separation.training_views(hinted, "none"),
                                      train)
    index = torch.arange(32)
    logs = step(headed, train.mixtures(index), index)
    present = torch.zeros(32, 10).scatter_(1, labels.view(32, 2), 1.0)
    bce = torch.nn.functional.binary_cross_entropy_with_logits(headed.logits.float(), present)
    assert float(logs["class_bce"]) == pytest.approx(float(bce.detach()), rel=1e-5)
    assert float(logs["loss"].detach()) == pytest.approx(-float(logs["psnr"]) + float(bce.detach()),
                                                        rel=1e-4)
    logs["loss"].backward()
    assert headed.class_head.weight.grad.abs().sum() > 0
    assert "class_bce" not in separation.make_train_step(
        config, None, separation.training_views(config, "none"), train)(
        plain, train.mixtures(index), index)


@pytest.mark.parametrize("options, message", [
    ({"class_weight": -1.0}, "--class-weight must be 0 or more"),
    ({"class_weight": 1.0, "model": "resunet"}, "--class-weight is for --model unet"),
])
def test_class_weight_is_checked(options, message):
    with pytest.raises(UserError, match=message):
        Config(experiment="separator", **options).validate()


def test_class_weight_needs_labelled_classes():
    config = Config(experiment="separator", class_weight=1.0).validate()
    with pytest.raises(UserError, match="needs a dataset of two or more classes"):
        separation.build(config, (3, 8, 8), n_classes=1)
