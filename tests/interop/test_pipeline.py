"""diffax.interop.pipeline and `diffax sample --pretrained`: a converted UNet sampled with a
diffusers scheduler config."""

import doctest
import json
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

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
    assert runner.tries > 0 and runner.failures == 0


def test_sample_pretrained_is_ddim_on_the_converted_unet():
    """diffax's sampler through the converted UNet equals DDIM written out with the module, on
    the scheduler's own grid (DDIMScheduler, leading spacing, set_alpha_to_one)."""
    pre = interop.load_pretrained(os.path.join(FIXTURES, "ddpm_unet"))
    sched = interop.load_scheduler({"_class_name": "DDIMScheduler", "clip_sample": False})
    key = jax.random.key(3)
    x, nfe = pipeline.sample_pretrained(key, pre, sched, num_steps=2, num_samples=2,
                                        batch_size=2)
    grid = sched.grid(2)
    p = sched.process
    k_init, _ = jax.random.split(jax.random.fold_in(key, 0))
    y = p.prior_sample(k_init, (2, 8, 8, 3))
    apply = jax.jit(pre.module.apply)
    for t, s in zip(grid[:-1], grid[1:]):
        k = jnp.full((2,), round(t * 1000) - 1, jnp.float32)  # diffusers' timestep of t
        eps = apply(pre.params, y, k)
        x0 = (y - p.sigma(t) * eps) / p.alpha(t)
        y = p.alpha(s) * x0 + p.sigma(s) * eps
    assert nfe == 2 and float(grid[-1]) == 0.0
    np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-4 * float(jnp.max(jnp.abs(y))))


def test_sample_pretrained_refuses_conditional_models():
    pre = interop.load_pretrained(os.path.join(FIXTURES, "sd_unet"))
    sched = interop.load_scheduler({"_class_name": "DDIMScheduler"})
    with pytest.raises(ValueError, match="needs conditioning"):
        pipeline.sample_pretrained(jax.random.key(0), pre, sched, num_steps=2, num_samples=1)
    with pytest.raises(ValueError, match="not a denoising network"):
        pipeline.unet_fn(interop.load_pretrained(os.path.join(FIXTURES, "vae")))


def test_cli_sample_pretrained(tmp_path, capsys):
    """A pipeline folder (unet/ + scheduler/): the scheduler config is the one used."""
    root = tmp_path / "pipe"
    shutil.copytree(os.path.join(FIXTURES, "ddpm_unet"), root / "unet")
    (root / "scheduler").mkdir()
    (root / "scheduler" / "scheduler_config.json").write_text(json.dumps(
        {"_class_name": "DDIMScheduler", "beta_schedule": "linear", "clip_sample": True}))
    rc = cli.main(["sample", "--pretrained", str(root), "--workdir", str(tmp_path / "out"),
                   "--config.sample.num_steps=2", "--config.sample.num_samples=3",
                   "--config.eval.batch_size=2"])
    assert rc == 0
    assert "DDIMScheduler with the config in" in capsys.readouterr().out
    out = np.load(tmp_path / "out" / "samples" / "pretrained_2steps_seed0.npz")
    assert out["x"].shape == (3, 8, 8, 3) and out["x"].dtype == np.uint8
    assert int(out["nfe"]) == 2 and tuple(out["range"]) == (0.0, 255.0)


def test_cli_sample_pretrained_errors(tmp_path, capsys):
    rc = cli.main(["sample", "--pretrained", str(tmp_path / "none"), "--workdir",
                   str(tmp_path)])
    assert rc == 2 and "is not a directory" in capsys.readouterr().err
    rc = cli.main(["sample", "--pretrained", os.path.join(FIXTURES, "ddpm_unet"), "--workdir",
                   str(tmp_path), "--config.sample.solver=nope"])
    assert rc == 2 and "solver" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "samples")
