"""The split of the built-in digits that training holds out and evaluation reads back.

``hybridnb train`` on ``digits`` splits scikit-learn's 1,797 images into train,
validation and test with a fixed, stratified split (the test rows never depend on the
training seed); ``hybridnb compress`` scores a bundle on the same test rows. Both call
:func:`digits_split` with the same defaults, which are here once
(:class:`hybridnb.train.spec.DataSpec` reads them).

>>> digits_split_sizes()
{'train': 1257, 'validation': 180, 'test': 360}
>>> images, labels, parts = digits_split()
>>> images.shape, {k: len(v) for k, v in parts.items()} == digits_split_sizes()
((1797, 8, 8), True)
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

#: Samples in scikit-learn's digits.
DIGITS_SAMPLES = 1797
#: The defaults of a training spec's data (``validation_fraction``, ``test_fraction``,
#: ``split_seed``).
VALIDATION_FRACTION = 0.1
TEST_FRACTION = 0.2
SPLIT_SEED = 0


def validation_share(validation_fraction: float, test_fraction: float) -> float:
    """The validation set's share of what the test split leaves."""
    return validation_fraction / (1 - test_fraction)


def digits_split_sizes(validation_fraction: float = VALIDATION_FRACTION,
                       test_fraction: float = TEST_FRACTION) -> dict[str, int]:
    """The sizes :func:`digits_split` gives, without loading anything (cheap checks).

    >>> digits_split_sizes(validation_fraction=0)
    {'train': 1437, 'test': 360}
    """
    # scikit-learn's train_test_split gives ceil(test_size * n) samples to the test side.
    test = math.ceil(test_fraction * DIGITS_SAMPLES)
    rest = DIGITS_SAMPLES - test
    if validation_fraction <= 0:
        return {"train": rest, "test": test}
    validation = math.ceil(validation_share(validation_fraction, test_fraction) * rest)
    return {"train": rest - validation, "validation": validation, "test": test}


def digits_split(validation_fraction: float = VALIDATION_FRACTION,
                 test_fraction: float = TEST_FRACTION, seed: int = SPLIT_SEED,
                 ) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """The digits' raw images (float32, N×8×8), labels (int64) and each split's rows.

    Stratified, seeded by ``seed`` only; ``validation`` is left out when
    ``validation_fraction`` is 0.
    """
    import numpy as np
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    images = np.asarray(bunch.images, dtype=np.float32)
    labels = np.asarray(bunch.target, dtype=np.int64)
    rest, test = train_test_split(np.arange(len(labels)), test_size=test_fraction,
                                  stratify=labels, random_state=seed)
    parts: dict[str, np.ndarray] = {"test": test}
    if validation_fraction > 0:
        train, val = train_test_split(rest, test_size=validation_share(validation_fraction,
                                                                       test_fraction),
                                      stratify=labels[rest], random_state=seed)
        parts.update(train=train, validation=val)
    else:
        parts["train"] = rest
    return images, labels, parts
