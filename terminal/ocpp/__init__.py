"""The kiosk as an OCPP 2.1 charging station: the messages, their durable queue, the reporter
that turns the machine's actions into them, and the client that talks to the CSMS."""
