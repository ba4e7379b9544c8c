"""torch.export of each component and its import into Relax (with importer fixes and rewrites)."""
