"""Arrow Flight SQL protobuf messages (``FlightSql.proto``), the Flight action bodies the server
handles (``FlightActions.proto``: session options, CancelFlightInfo), and their generated modules.

The ``*_pb2.py`` modules are generated, committed, and never edited by hand. Regenerate them from
the repository root after changing a ``.proto``::

    .venv/bin/python -m grpc_tools.protoc -Iflightsrv/proto --python_out=flightsrv/proto \\
        --pyi_out=flightsrv/proto \\
        flightsrv/proto/FlightSql.proto flightsrv/proto/FlightActions.proto

The generated code checks the protobuf runtime version when imported: it needs a runtime at least
as new as the protoc bundled with the grpcio-tools that produced it (see the
``ValidateProtobufRuntimeVersion`` call at the top of each ``*_pb2.py``).
"""
