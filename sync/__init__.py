"""Everything that moves data: DynamoDB (scan + streams) into SQL accelerators.

``sync`` knows nothing of Flight; ``flightsrv`` imports it, never the other way round.
"""
