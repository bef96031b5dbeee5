"""Arrow Flight SQL protobuf messages (``FlightSql.proto``) and their generated module.

``FlightSql_pb2.py`` is generated, committed, and never edited by hand. Regenerate it from the
repository root after changing ``FlightSql.proto``::

    .venv/bin/python -m grpc_tools.protoc -Iflightsrv/proto --python_out=flightsrv/proto \\
        flightsrv/proto/FlightSql.proto

The generated code checks the protobuf runtime version when imported: it needs a runtime at least
as new as the protoc bundled with the grpcio-tools that produced it (see the
``ValidateProtobufRuntimeVersion`` call at the top of ``FlightSql_pb2.py``).
"""
