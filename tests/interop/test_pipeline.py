"""diffax.interop.pipeline and `diffax sample --pretrained`: the timestep map and a run."""

import doctest
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import diffax
from diffax import cli, interop
from diffax.interop import diffusers as dif
from diffax.interop import diffusers_models, pipeline

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")


@pytest.mark.parametrize("module", [interop, dif, diffusers_models, pipeline])
def test_docstring_examples(module):
    finder = doctest.DocTestFinder()
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    for test in finder.find(module, module=module, globs=vars(module).copy()):
        runner.run(test)
    assert runner.failures == 0


def _unet(config):
    return dif.Pretrained(dif.module_from_spec(dif.spec_from_config(config)), None, config)


def test_timestep_map_is_exact_on_the_ddpm_grid():
    """On DiscreteVP's grid t_n = n / T the network gets DDPM's integer step n - 1."""
    unet = _unet({"_class_name": "UNet2DModel", "block_out_channels": [8],
                  "norm_num_groups": 4, "down_block_types": ["DownBlock2D"],
                  "up_block_types": ["UpBlock2D"]})
    p = diffax.DiscreteVP.linear(num_steps=1000)
    n = np.arange(1, 1001)
    steps = pipeline.timestep_fn(unet, p)(jnp.asarray(n / 1000.0, jnp.float32))
    np.testing.assert_array_equal(np.asarray(steps), n - 1)
    with pytest.raises(ValueError, match="pass a diffax.DiscreteVP"):
        pipeline.timestep_fn(unet, diffax.VP())


def test_fourier_models_get_sigma():
    unet = _unet({"_class_name": "UNet2DModel", "block_out_channels": [8],
                  "norm_num_groups": 4, "down_block_types": ["DownBlock2D"],
                  "up_block_types": ["UpBlock2D"], "time_embedding_type": "fourier"})
    p = diffax.VE(sigma_min=0.01, sigma_max=50.0)
    t = jnp.array([0.0, 0.5, 1.0])
    np.testing.assert_allclose(pipeline.timestep_fn(unet, p)(t), p.sigma(t), rtol=1e-6)


def test_cli_sample_pretrained(tmp_path, capsys):
    rc = cli.main(["sample", "--pretrained", os.path.join(FIXTURES, "ddpm_unet"),
                   "--workdir", str(tmp_path), "--config.sample.num_steps=2",
                   "--config.sample.num_samples=3", "--config.eval.batch_size=2"])
    assert rc == 0
    out = np.load(tmp_path / "samples" / "pretrained_ddim_2_seed0.npz")
    assert out["x"].shape == (3, 8, 8, 3) and out["x"].dtype == np.uint8
    assert int(out["nfe"]) == 2 and tuple(out["range"]) == (0.0, 255.0)


def test_sample_pretrained_is_ddim_on_the_converted_unet():
    """diffax's DDIM through the converted UNet equals DDIM written out with the module."""
    pre = interop.load_pretrained(os.path.join(FIXTURES, "ddpm_unet"))
    p = diffax.DiscreteVP.linear(num_steps=1000)
    grid = jnp.array([1.0, 0.5, 0.001])
    key = jax.random.key(3)
    x, nfe = pipeline.sample_pretrained(key, pre, p, prediction="eps",
                                        solver=diffax.samplers.DDIM(), num_steps=2,
                                        schedule=grid, num_samples=2, batch_size=2)
    k_init, _ = jax.random.split(jax.random.fold_in(key, 0))
    y = p.prior_sample(k_init, (2, 8, 8, 3))
    apply = jax.jit(pre.module.apply)
    for t, s in zip(grid[:-1], grid[1:]):
        step = jnp.full((2,), p.index(t), jnp.float32)
        eps = apply(pre.params, y, step)
        x0 = (y - p.sigma(t) * eps) / p.alpha(t)
        y = p.alpha(s) * x0 + p.sigma(s) * eps
    assert nfe == 2
    np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-4 * float(jnp.max(jnp.abs(y))))


def test_cli_sample_pretrained_errors(tmp_path, capsys):
    rc = cli.main(["sample", "--pretrained", str(tmp_path / "none"), "--workdir",
                   str(tmp_path)])
    assert rc == 2 and "is not a directory" in capsys.readouterr().err
    rc = cli.main(["sample", "--pretrained", os.path.join(FIXTURES, "sd_unet"), "--workdir",
                   str(tmp_path)])
    assert rc == 2 and "needs conditioning" in capsys.readouterr().err
    rc = cli.main(["sample", "--pretrained", os.path.join(FIXTURES, "ddpm_unet"), "--workdir",
                   str(tmp_path), "--config.sample.solver=nope"])
    assert rc == 2 and "solver" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "samples")
