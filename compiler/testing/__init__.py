"""
Tools for testing passes by property: `random_models` (hypothesis strategies
that draw valid models), `properties` (the checks) and `fuzz` (`strata fuzz`).
"""
