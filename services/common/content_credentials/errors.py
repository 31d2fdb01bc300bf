"""What content-credential code raises (no grpc here: services map these to statuses)."""


class CredentialsError(Exception):
    """Bad input to signing or reading: an unsupported or malformed asset, a malformed Custody assertion."""


class CredentialsUnavailable(Exception):
    """The signer's files are missing, unreadable or unsafe; the message names the file and what to do."""
