"""``silverline``: the operator's command line (README, "Operations").

Reads over the REST API, acts over MQTT as a client, like any other client of
the protocol (docs/protocol.md 7). It is a short-lived process, so it uses
paho's own blocking loop; the service itself never does.
"""
