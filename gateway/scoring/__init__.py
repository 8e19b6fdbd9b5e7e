"""Lead scoring: a tenant's rules (JSONata booleans, each worth points) and tiers, every lead's
score computed by the gateway before each write, and the background rescore after a change."""
