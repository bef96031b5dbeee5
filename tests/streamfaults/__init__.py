"""A DynamoDB Streams fault and topology layer: an HTTP proxy in front of the emulator that
gives its single never-closing shard an AWS-like lineage, expiry, trimming and faults.

    with StreamFaultProxy(emulator_url, seed=1, iterator_ttl=2.0) as proxy:
        ...  # point the runtime (or boto3) at proxy.url
        proxy.split("orders", children=2)
        proxy.set_fault_rates("GetRecords", throttling=0.1, http_500=0.05)
        assert proxy.fault_counts["throttling"] == runtime_metrics["throttled"]
"""

from __future__ import annotations

from .errors import StreamError
from .faults import STREAMS, FaultInjector, FaultRates
from .proxy import StreamFaultProxy
from .service import Settings

__all__ = ["STREAMS", "FaultInjector", "FaultRates", "Settings", "StreamError", "StreamFaultProxy"]
