"""What keeps a run alive and exact: resume, divergence and healing, out-of-memory recovery, preemption."""
