"""IR definitions: the `graph` dialect, and later `loop` and the hardware dialects."""
