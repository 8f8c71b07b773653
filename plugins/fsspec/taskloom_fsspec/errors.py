"""Backend errors turned into one sentence that names the URL and says what to check.

fsspec backends surface configuration mistakes in their own words: s3fs turns ``NoSuchBucket``
into a `FileNotFoundError` (which would otherwise read as a missing *key*), botocore raises
``NoCredentialsError``, google-auth ``DefaultCredentialsError``. A user who set a wrong bucket
or forgot a credential should learn that from the first line, not from a stack of async frames.
"""

from __future__ import annotations

from collections.abc import Iterator

__all__ = ["FsspecStorageError", "explain", "missing_backend", "unknown_protocol"]

# Exception class names (matched by name, so that no SDK is imported to check) that mean the
# credentials were missing, malformed or refused.
_CREDENTIAL_ERRORS = frozenset(
    {
        "NoCredentialsError",  # botocore: nothing found in options, environment or profiles
        "PartialCredentialsError",
        "NoAuthTokenError",
        "UnauthorizedSSOTokenError",
        "TokenRetrievalError",
        "ProfileNotFound",
        "DefaultCredentialsError",  # google-auth
        "RefreshError",
        "ClientAuthenticationError",  # azure-core
    }
)
_MISSING_BUCKET_CODES = frozenset({"NoSuchBucket", "ContainerNotFound"})
# The services' own wording (S3, GCS, Azure). Matched at the start of a message only: a
# missing *key* is reported with its path, which could contain any words.
_MISSING_BUCKET_WORDS = (
    "the specified bucket does not exist",
    "the specified container does not exist",
)
_UNREACHABLE_ERRORS = frozenset(
    {"EndpointConnectionError", "ConnectTimeoutError", "ClientConnectorError"}
)

#: The extra of taskloom-fsspec that brings each protocol's fsspec backend.
_EXTRAS = {"s3": "s3", "s3a": "s3", "gs": "gcs", "gcs": "gcs"}


class FsspecStorageError(OSError):
    """The storage's URL cannot be used as configured: credentials, bucket or endpoint."""


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _error_code(exc: BaseException) -> str | None:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        code = response.get("Error", {}).get("Code")
        return str(code) if code else None
    return None


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def explain(
    exc: BaseException, url: str, action: str, *, local: bool = False
) -> FsspecStorageError | None:
    """The one-sentence error for a configuration mistake behind ``exc``, else None.

    ``action`` is what was attempted ("write", "read"). ``local`` says the URL is a local
    path, where a `PermissionError` is about file permissions, not credentials.
    """
    for cause in _chain(exc):
        name = type(cause).__name__
        if local and isinstance(cause, PermissionError):
            return FsspecStorageError(
                f"Could not {action} {url!r}: permission denied ({_short(cause)}); check that "
                f"this user may {action} files in that directory."
            )
        if isinstance(cause, PermissionError) or name in _CREDENTIAL_ERRORS:
            return FsspecStorageError(
                f"Could not {action} {url!r}: the credentials were missing or refused "
                f"({_short(cause)}); check storage_options (key/secret, token, profile) or "
                "the environment (AWS_ACCESS_KEY_ID, AWS_PROFILE, "
                "GOOGLE_APPLICATION_CREDENTIALS) and that they grant access to this location."
            )
        message = str(cause).strip().lower()
        if _error_code(cause) in _MISSING_BUCKET_CODES or message.startswith(_MISSING_BUCKET_WORDS):
            return FsspecStorageError(
                f"Could not {action} {url!r}: its bucket does not exist; check the bucket name "
                "in the URL and the endpoint or region in storage_options, or create the bucket."
            )
        if name in _UNREACHABLE_ERRORS:
            return FsspecStorageError(
                f"Could not {action} {url!r}: the storage endpoint could not be reached "
                f"({_short(cause)}); check client_kwargs={{'endpoint_url': ...}} in "
                "storage_options and the network."
            )
    return None


def missing_backend(url: str, protocol: str, exc: ImportError) -> ImportError:
    """fsspec knows the protocol but its backend package is not installed."""
    extra = _EXTRAS.get(protocol)
    how = (
        f"pip install 'taskloom-fsspec[{extra}]'"
        if extra
        else f"install the package fsspec names for it ({exc})"
    )
    return ImportError(f"The result storage URL {url!r} needs the {protocol!r} backend: {how}.")


def unknown_protocol(url: str, exc: ValueError) -> ValueError:
    """fsspec does not know the URL's protocol at all."""
    return ValueError(
        f"The result storage URL {url!r} is not one fsspec can open ({exc}); use a URL such "
        "as 's3://bucket/prefix', 'gs://bucket/prefix', 'file:///shared/dir' or 'memory://name'."
    )
