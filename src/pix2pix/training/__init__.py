"""Training: the loop (train.py), the run folder (run.py), the resumable state (checkpoint.py),
what a run writes for watching it (monitor.py, validation.py, report.py), and torchrun
(distributed.py)."""
