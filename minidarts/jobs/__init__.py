"""minidarts.jobs: what a user runs, and the files it writes.

idx.py, data.py          MNIST's IDX files and their checks; datasets, splits, batches
config.py                SearchConfig: every knob of a search, presets, TOML
search.py                the search loop and its run folder
train_config.py, train.py, train_cli.py   retraining a genotype from scratch
sweep.py                 a finished hypernet search walked over lambda
experiment.py            the paper's experiment
evaluate.py              loss and accuracy over a dataset
checkpoint.py            atomic, pickle-free checkpoints
plots.py, progress.py    figures and progress lines
cli.py                   what the search and train commands share
bench.py                 kernel and step timings
"""
