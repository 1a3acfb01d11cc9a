"""The inbound-webhook inbox: vendor modules (`contract`), the endpoint (`receive`), the
normalizing job (`process`), the registry of vendor modules, and its API."""
