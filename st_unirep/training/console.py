"""One readable console line per logging step instead of transformers' dict dump."""

from __future__ import annotations

from transformers.trainer_callback import ProgressCallback

# The keys the console line shows, in order (every key still goes to the log history and the reporters).
CONSOLE_KEYS = ("loss", "learning_rate", "grad_norm/backbone", "health/sim_p95", "vaccine/p_image")


def format_log_line(step: int, max_steps: int, logs: dict[str, float]) -> str:
    """``step 40/900 | loss 1.234 | lr 1.0e-04 | …``: the :data:`CONSOLE_KEYS` present in ``logs``."""
    parts = [f"step {step}/{max_steps}"]
    for key in CONSOLE_KEYS:
        value = logs.get(key)
        if isinstance(value, (int, float)):
            label = "lr" if key == "learning_rate" else key
            parts.append(f"{label} {value:.1e}" if key == "learning_rate" else f"{label} {value:.4g}")
    return " | ".join(parts)


class CompactProgressCallback(ProgressCallback):
    """transformers' progress bar, writing :func:`format_log_line` above it instead of the whole log dict."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and self.training_bar is not None and logs and "loss" in logs:
            self.training_bar.write(format_log_line(state.global_step, state.max_steps, logs))
