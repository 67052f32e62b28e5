"""bench: the benchmark: plan, runs through real iperf3 and ping, statistics,
report, plots, comparison, and the baselines it measures against."""
