"""A team's own rules for the training-run auditor: one module per rule, each with `RULE = ...`, as the
built-in catalogue is written."""
