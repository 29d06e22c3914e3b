"""rebalance-stream: executes RebalancePlanned events from Kafka, each plan at most once.

The code lives in the repository's top-level folders, linked in here:
``contracts`` (events), ``operators`` (pure Rx operators), ``brokers`` (paper and Alpaca),
``sinks`` (output routing and Kafka sinks) and ``streams`` (sources, pipeline, CLI).
"""

__version__ = "0.1.0"
