"""The runs use cases, independent of gRPC: one module each, behind the `Runs` facade in service.py. The store
persists; the servicer translates."""
