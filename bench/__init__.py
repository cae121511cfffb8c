"""`make bench`: end-to-end load against the pipeline, figures written to bench/results/latest.json."""
