"""Content credentials (C2PA) on the images Custody generates: signed by runs as they are attached
(services/runs/domain/credentials.py), checked offline by anyone holding the deployment's trust anchors
(`custody evidence c2pa`). Built on c2pa-python, the bindings of the C2PA reference implementation: Custody only
says what the manifest holds and what a Custody credential must hold."""

from services.common.content_credentials.errors import CredentialsError, CredentialsUnavailable
from services.common.content_credentials.manifest import Credentials, CustodyAssertion, Generator, SourceType
from services.common.content_credentials.media import SUPPORTED_MEDIA_TYPES, media_type_of
from services.common.content_credentials.reading import CredentialReport, read_credentials
from services.common.content_credentials.signing import CredentialSigner

__all__ = [
    "SUPPORTED_MEDIA_TYPES",
    "CredentialReport",
    "CredentialSigner",
    "Credentials",
    "CredentialsError",
    "CredentialsUnavailable",
    "CustodyAssertion",
    "Generator",
    "SourceType",
    "media_type_of",
    "read_credentials",
]
