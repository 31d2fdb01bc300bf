"""The gateway's domain logic: pure (no grpc, no pydantic settings, no provider implementations).

The servicer translates proto to these types and back (services/ai_gateway/convert.py); main.py builds the
domain's GatewayConfig from the settings and hands it the providers, store and budgets.
"""
