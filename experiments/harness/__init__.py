"""p2ptrain's experiment harness: declarative sweeps of `p2ptrain` runs, on loopback or on
simulated hosts (network namespaces), with a tidy CSV, figures and a report. docs/experiments.md."""
