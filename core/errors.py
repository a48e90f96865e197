"""Errors that services raise; the API and pages turn them into 4xx answers."""


class ServiceError(Exception):
    status_code = 400
    code = "invalid"

    def __init__(self, message: str, **details):
        super().__init__(message)
        self.message = message
        self.details = details


class ValidationFailed(ServiceError):
    status_code = 400
    code = "invalid"


class PermissionRefused(ServiceError):
    status_code = 403
    code = "permission_denied"


class NotFound(ServiceError):
    status_code = 404
    code = "not_found"


class Conflict(ServiceError):
    status_code = 409
    code = "conflict"


class VersionConflict(Conflict):
    code = "stale_version"


class StaleVersions(Conflict):
    """A bulk write's `expected` versions no longer hold for some images; nothing was changed."""

    code = "stale_versions"


class RunAlreadyActive(Conflict):
    code = "run_active"


class PayloadTooLarge(ServiceError):
    status_code = 413
    code = "too_large"


class ServiceUnavailable(ServiceError):
    status_code = 503
    code = "unavailable"
