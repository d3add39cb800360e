"""Field gateways: the edge side of SCADA integration, run outside Serve (DESIGN.md §10).

Each gateway speaks a field protocol and publishes WellPulse JSON (`schema.telemetry.Reading`) to NATS
``tele.<tenant>.<equipment>`` with a tenant's feed credentials, exactly like any other feed:

- `gateway.modbus`: polls Modbus TCP holding/input registers (``wellpulse gateway modbus --config poll.toml``).
- `gateway.opcua`: subscribes to OPC UA nodes (``wellpulse gateway opcua --config ua.toml``).
- `gateway.edge`: store-and-forward, a local JetStream that holds readings until the hub acknowledged them.
- `gateway.sparkplug`: the Sparkplug B host, central rather than at the edge: it decodes what edge nodes publish to
  the hub's MQTT listener (``wellpulse sparkplug bridge``; `sim.sparkplug` is its edge-node simulator).
- `gateway.publish`: the publishing and the Prometheus metrics they share; `gateway.config`: their TOML files.

Nothing here is imported by the app; the gateway imports `schema` and `store` (NATS credentials, the embedded
nats-server) only.
"""
