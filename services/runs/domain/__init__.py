"""The runs use cases, independent of gRPC: one module each, behind the `Runs` facade in service.py. The store
persists; the servicer translates.

The caller and the call's request id are read here from the call context (services/common/call_context.py),
which call handling binds for each RPC: the servicer does not pass them in, and no request field supplies them.
"""
