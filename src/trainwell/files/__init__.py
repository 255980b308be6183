"""Bytes on disk: atomic writes, retries, checkpoint files and manifests, the run directory's layout."""
