"""Training: one config in, one trained model out. Knows nothing of Optuna or of the search.

Configs (:mod:`.config`), CIFAR-10 arrays and the fixed split (:mod:`.data`), device-resident
batches (:mod:`.loader`, :mod:`.augment`), the model registry (:mod:`.models`), optimisers and
schedules, the trainer with its ``on_epoch_end`` hook (:mod:`.trainer`), evaluation and TTA,
checkpoints and exports, and :mod:`.recipe`, the one place where data, loaders and model are
put together for a training. ``tests/test_imports.py`` keeps Optuna and
:mod:`cifar_search.search` out of this package.
"""
