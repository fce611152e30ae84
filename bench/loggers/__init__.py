"""Loggers that Lightning's own do not cover: ``wandb.WandbLogger`` — one wandb run per run
directory, across restarts, and a wandb failure never fails the training run."""
