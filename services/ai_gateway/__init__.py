"""AI gateway: the only process that talks to AI providers: safety policy, provenance envelopes, audit."""
