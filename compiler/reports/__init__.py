"""Reports for people and programs: cost tables, JSON, rooflines (`report`) and model statistics (`stats`)."""
