"""End-to-end calls over loopback: the agents against the simulated phone."""
