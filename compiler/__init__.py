"""The strata driver: model-language frontend, CLI, pipelines and reference execution."""
