"""Gray-release rollouts: an explicit state machine, step targets, analysis, rollback."""
