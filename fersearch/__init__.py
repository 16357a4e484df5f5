"""fersearch: hyperparameter search for facial-expression-recognition models, built on Optuna."""

__version__ = "0.1.0"
