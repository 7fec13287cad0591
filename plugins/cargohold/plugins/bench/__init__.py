"""``cargohold bench``: the command, its targets (served drivers, Docker plugins), the
protocol workload, the JSON results and the HTML report. The workloads and floors
themselves are in `cargohold.core.testing.bench`."""
