"""
IR definitions: the `graph`, `loop` and hardware (`simt`, `systolic`, `tsp`)
dialects, the device description every pass reads (`device`), and the
vocabulary passes and backends share (`vocabulary`).
"""
