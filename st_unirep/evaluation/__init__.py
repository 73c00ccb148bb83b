"""Evaluation: metrics, readers for the shared data layouts, the evaluation run and its report."""
