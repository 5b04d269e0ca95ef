"""Model registry: models, semantic versions, aliases with audit history, bundle registration."""
