"""dfbench's built-in datasets: the embedded ``shapes`` set, folders, and real SBIR benchmarks."""
