"""User-facing tools on top of a bundle: verify, run, bench, tune, inspect."""
