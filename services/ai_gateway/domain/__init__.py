"""The gateway's domain logic: pure (no grpc, no pydantic settings, no provider implementations).

The servicer translates proto to these types and back (services/ai_gateway/convert.py); main.py builds the
domain's GatewayConfig from the settings and hands it the providers, store and budgets.

The caller and the call's request id are read here from the call context (services/common/call_context.py),
which call handling binds for each RPC: the servicer does not pass them in, and no request field supplies them.
"""
