"""Transport security between Custody services: X.509 issuing (certificates), who a verified client certificate
names (peer_identity), and gRPC credentials built from a certificate directory in cert-manager's layout
(credentials). Nothing else in the code base touches X.509."""
