"""Throughput/latency benchmarks of fastgen's backends (see README.md, "Benchmarks")."""
