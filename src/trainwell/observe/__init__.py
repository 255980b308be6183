"""What a run tells: logs, its records read back, learning curves, the report, the doctor, the monitor of a metric."""
