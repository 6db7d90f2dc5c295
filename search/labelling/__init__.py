"""Labels the library proposes for its own images: suggestions with a calibrated confidence
(CLIP's zero-shot score against the library's vocabulary, calibrated on the images that already
carry each label) and likely mislabels (an image far from its label's other images, by that
label's own spread). ``scoring`` holds the arithmetic, ``passes`` the worker's pass, ``review``
what staff do with the results."""
