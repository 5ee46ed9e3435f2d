"""`make bench` (`python -m bench`): edge vs direct-to-simulator throughput and latency. See README.md."""
