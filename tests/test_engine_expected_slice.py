"""Pins the demo pipeline's numbers, as diffusers' own tests do: a change anywhere in the
path (model loading, sampler, photo fitting, prompt encoding) that moves the picture fails here.

If a change is meant to move the picture, recompute EXPECTED with the code below and say why
in the commit.
"""

import numpy as np
from PIL import Image

from tests.engine_helpers import demo_engine
from tests.helpers import FIXTURES
from worker.engine import GenerationRequest

# The bottom-right 3x3 pixels of each channel (R, G, B), floats in 0..1, row by row.
EXPECTED = np.array([
    [0.622684, 0.558024, 0.568119, 0.577712, 0.497773, 0.498321, 0.579262, 0.535626, 0.493920],
    [0.335869, 0.440744, 0.450837, 0.341945, 0.390073, 0.487571, 0.516226, 0.444971, 0.471286],
    [0.491282, 0.447155, 0.470038, 0.457600, 0.460519, 0.470199, 0.387127, 0.406537, 0.457413],
])


def test_the_demo_pipeline_gives_the_pinned_pixels_for_a_fixed_seed():
    engine = demo_engine()
    # 4 steps at strength 0.5: two denoising steps, starting from the photo.
    request = GenerationRequest(images=[Image.open(FIXTURES / "portrait.jpg")],
                                prompt="portrait of a person, cinematic film still", negative_prompt="blurry",
                                seeds=[1234], steps=4, guidance=5.0, strength=0.5, width=64, height=64)
    [picture] = engine.generate_array(request)
    assert picture.shape == (64, 64, 3)
    corner = picture[-3:, -3:, :].transpose(2, 0, 1).reshape(3, 9)
    np.testing.assert_allclose(corner, EXPECTED, atol=1e-3)
    # generate() hands out the same numbers as 8-bit pictures.
    [as_image] = engine.generate(request)
    assert np.array_equal(np.asarray(as_image), (picture * 255).round().astype(np.uint8))
