"""The code around a fit, each module one job: checkpoint files (atomic, checksummed) and
periodic saves, the fit's LightningCLI and its resume checks, Lightning fixes after a restart,
random state, run folders, checks before a run (preflight, step memory), the logger, the
throughput monitor, the precision choice, one-line errors and the command's environment."""
