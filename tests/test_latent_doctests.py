"""The docstring examples of diffax.latent, diffax.divae, diffax.lsgm and the autoencoder config
run as written (FrozenAutoencoder's and the Flax modules' compile networks: tests/test_latent.py
covers them)."""

import doctest

import pytest

from diffax import divae, latent, lsgm
from diffax.models import autoencoder

OBJECTS = [(latent.quantize, latent), (latent.vq_ema_update, latent),
           (latent.codebook_usage, latent), (latent.DiagonalGaussian, latent),
           (latent.measure_scale_factor, latent), (latent.IdentityAutoencoder, latent),
           (latent.Latent, latent), (latent.LatentLoss, latent),
           (latent.AutoencoderKLLoss, latent), (latent.AutoencoderVQLoss, latent),
           (lsgm, lsgm), (autoencoder.AutoencoderConfig, autoencoder),
           # issue #18's second part (latent_log_likelihood's example solves an ODE: its
           # truth is tests/test_latent_likelihood.py)
           (latent.CodebookEMA, latent), (latent.GaussianDecoder, latent),
           (latent.DiscretizedGaussianDecoder, latent), (divae.embed_codes, divae),
           (divae.DiVAE, divae), (divae.DiVAELoss, divae),
           # lsgm2: the one Gaussian likelihood (diffax.lsgm's examples run as the module)
           (latent.gaussian_nll, latent)]


@pytest.mark.parametrize("obj, module", OBJECTS, ids=[o.__name__ for o, _ in OBJECTS])
def test_docstring_examples(obj, module):
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    attempted = 0
    for test in doctest.DocTestFinder().find(obj, module=module, globs=vars(module).copy()):
        attempted += runner.run(test).attempted
    assert attempted > 0 and runner.failures == 0, obj
