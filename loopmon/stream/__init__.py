"""What carries measurements out of a process: the telemetry publisher and its client."""
