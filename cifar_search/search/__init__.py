"""The search: everything that knows about Optuna.

The declarative space and the one function trial -> config (:mod:`.space`), budgets, the
objective that turns the trainer's hook into ``trial.report`` and pruning (:mod:`.objective`),
studies, storages, samplers and pruners, workers, the final retraining of a stored trial
(:mod:`.retrain`) and ``auto --time T`` (:mod:`.auto`). It trains only through
:mod:`cifar_search.train.recipe`.
"""
