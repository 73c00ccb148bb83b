"""Training: JSONL data, the gradient-vaccine sampler, schedules, component clipping, health monitoring."""
