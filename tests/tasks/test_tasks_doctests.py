"""The docstring examples of diffax.tasks run as written (those that compile no UNet here)."""

import doctest

import pytest

import diffax.tasks as tasks
from diffax.tasks import (
    anomaly,
    classifier,
    defaults,
    inverse_problems,
    medical,
    purification,
    segmentation,
)
from diffax.tasks import super_resolution as sr


def _run(obj, module):
    finder = doctest.DocTestFinder()
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    attempted = 0
    for test in finder.find(obj, module=module, globs=vars(module).copy()):
        attempted += runner.run(test).attempted
    assert attempted > 0, obj
    assert runner.failures == 0, f"{runner.failures} docstring example(s) failed in {obj}"


@pytest.mark.parametrize("obj, module", [
    (anomaly.simplex2d, anomaly), (anomaly.octave_simplex, anomaly), (anomaly.auroc, anomaly),
    (anomaly.anomaly_scores, anomaly), (anomaly.partial_grid, anomaly),
    (anomaly.reconstruct, anomaly), (anomaly.baseline_scores, anomaly),
    (classifier.ClassifierLoss, classifier), (classifier.log_prob_fn, classifier),
    (classifier.accuracy, classifier), (sr.downsample, sr), (sr.upsample, sr), (sr.psnr, sr),
    (segmentation.decoder_blocks, segmentation), (segmentation.part_labels, segmentation),
    (segmentation.class_labels, segmentation), (segmentation.pixel_baselines, segmentation),
    (inverse_problems, inverse_problems), (inverse_problems.masks, inverse_problems),
    (medical, medical), (medical.operator_for, medical), (defaults.medical_config, defaults),
    (medical.operator_norm_squared, medical), (medical.gaussian_prior_denoiser, medical),
    (inverse_problems.masked_psnr, inverse_problems),
    (inverse_problems.nearest_neighbour_fill, inverse_problems),
    (segmentation.segmentation_metrics, segmentation), (segmentation.pixel_loss, segmentation),
    (segmentation.PixelClassifier, segmentation), (purification, purification),
    (purification.gaussian_perturbation, purification), (defaults, defaults),
    (tasks.fit, tasks), (tasks.denoising_loss, tasks)])
def test_docstring_examples(obj, module):
    _run(obj, module)


# These compile small UNets or the vmapped simplex noise (tens of seconds of CPU together).
@pytest.mark.slow
@pytest.mark.parametrize("obj, module", [
    (classifier, classifier), (classifier.NoisyClassifier, classifier), (sr, sr),
    (sr.ConditionalUNet, sr), (sr.apply_fn, sr), (segmentation, segmentation),
    (anomaly, anomaly), (anomaly.simplex_noise, anomaly), (anomaly.NoiseDenoisingLoss, anomaly)])
def test_docstring_examples_that_compile(obj, module):
    _run(obj, module)
