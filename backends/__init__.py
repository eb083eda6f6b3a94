"""Cost models per target, hardware spec data files and the autotuner."""
