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


# The dev metrics the console line of an evaluation shows (besides metric_for_best_model), by their key's ending.
CONSOLE_EVAL_ENDINGS = ("score", "spearman", "_ap", "r@1", "_ece")
CONSOLE_EVAL_MAX = 8  # at most this many dev metrics on the line (all of them go to the log history)


def format_eval_line(step: int, max_steps: int, logs: dict[str, float], best_metric: str | None = None) -> str:
    """``step 100/900 | dev ocr_t2i_r@1 0.5312 | ocr_i2t_r@1 0.5``: metric_for_best_model first, then the
    evaluation's metrics ending in :data:`CONSOLE_EVAL_ENDINGS`, without the ``eval_`` prefix."""
    metrics = {key.removeprefix("eval_"): v for key, v in logs.items() if key.startswith("eval_")}
    metrics = {key: v for key, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    best = (best_metric or "").removeprefix("eval_")
    keys = [best] if best in metrics else []
    keys += [key for key in metrics if key.endswith(CONSOLE_EVAL_ENDINGS) and key != best]
    shown = " | ".join(f"{key} {metrics[key]:.4g}" for key in keys[:CONSOLE_EVAL_MAX])
    return f"step {step}/{max_steps} | dev {shown}" if shown else f"step {step}/{max_steps} | dev (no metrics)"


class CompactProgressCallback(ProgressCallback):
    """transformers' progress bar, writing :func:`format_log_line` (a training row) or :func:`format_eval_line`
    (an evaluation) above it instead of the whole log dict."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not (state.is_world_process_zero and self.training_bar is not None and logs):
            return
        if "loss" in logs:
            self.training_bar.write(format_log_line(state.global_step, state.max_steps, logs))
        elif any(key.startswith("eval_") for key in logs):
            best = getattr(args, "metric_for_best_model", None)
            self.training_bar.write(format_eval_line(state.global_step, state.max_steps, logs, best))
