"""diffax.tasks.segmentation: decoder features through Flax intermediates, labels, metrics."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import diffax
from diffax.models import UNet, UNetConfig
from diffax.tasks import segmentation as seg


def test_decoder_blocks_names_the_up_path():
    cfg = UNetConfig(image_size=8, ch_mult=(1, 2, 2), num_res_blocks=2, attn_resolutions=())
    names = seg.decoder_blocks(cfg)
    assert names[0] == "up_2_block_0" and names[-1] == "up_0_block_2" and len(names) == 9


def test_unet_features_shapes_and_values():
    model = UNet.from_variant("tiny", num_channels=1, nf=8, ch_mult=(1, 2),
                              attn_resolutions=(), dropout=0.0)
    params = model.init_params(jax.random.key(0))
    process = diffax.VP()
    x = jax.random.normal(jax.random.key(1), (2, 8, 8, 1))
    blocks = seg.decoder_blocks(model.config)  # 2 blocks of 16 channels at 4x4, 2 of 8 at 8x8
    f = seg.unet_features(model, params, x, process=process, times=(0.1, 0.5),
                          blocks=[blocks[0], blocks[-1]], key=jax.random.key(2))
    assert f.shape == (2, 8, 8, 2 * (16 + 8))
    # The full-resolution block is taken as it is: compare with a direct capture at t = 0.5.
    eps = jax.random.normal(jax.random.key(2), x.shape)
    t = jnp.full((2,), 0.5)
    x_t = process.alpha(t)[:, None, None, None] * x + process.sigma(t)[:, None, None, None] * eps
    _, state = model.apply(params, x_t, t, capture_intermediates=True)
    direct = state["intermediates"][blocks[-1]]["__call__"][0]
    np.testing.assert_allclose(f[..., -8:], direct, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="no module named"):
        seg.unet_features(model, params, x, process=process, times=(0.1,), blocks=["nope"],
                          key=jax.random.key(2))


def test_part_labels_and_metrics_by_hand():
    x = -np.ones((1, 5, 5, 1))
    x[0, 1:4, 1:4] = 1.0  # a 3x3 square: one interior pixel, eight edge pixels
    lab = seg.part_labels(x)[0]
    assert lab.sum() == 8 * 1 + 2 and lab[2, 2] == 2 and lab[0].sum() == 0
    m = seg.segmentation_metrics([[0, 2], [2, 2]], [[0, 2], [1, 2]], 3)
    assert m["accuracy"] == 0.75
    assert m["iou"] == [1.0, 0.0, 2 / 3]
    assert m["mean_iou"] == pytest.approx((1.0 + 0.0 + 2 / 3) / 3)
    assert np.isnan(seg.segmentation_metrics([0], [0], 2)["iou"][1])


def test_pixel_classifier_learns_a_linear_rule():
    clf = seg.PixelClassifier(num_classes=2, hidden=())
    f = jax.random.normal(jax.random.key(0), (256, 3))
    label = (f[:, 0] > 0).astype(jnp.int32)
    params = clf.init(jax.random.key(1), f[:1])
    res = diffax.tasks.fit(seg.pixel_loss(clf), params, jax.random.key(2),
                           {"f": f, "label": label}, num_steps=200, batch_size=64,
                           learning_rate=0.05, ema_decay=0.0, steps_per_call=200)
    pred = jnp.argmax(clf.apply(res.params, f), -1)
    assert float(jnp.mean(pred == label)) > 0.97


def test_class_labels_and_pixel_baselines_by_hand():
    x = -np.ones((2, 3, 3, 1))
    x[0, 0, 0], x[1, 2, 1] = 1.0, 0.5
    lab = seg.class_labels(x, np.array([0, 7]))
    assert lab[0].tolist() == [[1, 0, 0], [0, 0, 0], [0, 0, 0]]
    assert lab[1].tolist() == [[0, 0, 0], [0, 0, 0], [0, 8, 0]]
    with pytest.raises(ValueError, match="labels"):
        seg.class_labels(x, np.array([1]))
    f = seg.pixel_baselines(jnp.asarray(x))
    window, full = f["pixel_window"], f["pixel_window_global"]
    # The window of pixel (1, 1) of image 0 is the image itself, row by row.
    np.testing.assert_array_equal(window[0, 1, 1], x[0, :, :, 0].reshape(-1))
    # Pixel (0, 0) sees the padding (-1) above and left of it.
    assert window[1, 0, 0].tolist() == [-1.0] * 9
    np.testing.assert_array_equal(full[1, 0, 2, 9:18], x[1].reshape(-1))  # the whole image
    np.testing.assert_array_equal(full[0, 2, 0, -2:], [1.0, -1.0])  # (row, column) in [-1, 1]
