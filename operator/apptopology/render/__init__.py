"""What to enforce: the renderer, the cluster facts it reads and the platform guardrails that narrow it."""
