"""Writing a bundle (compile every component, manifest, weights) and running one from Python."""
