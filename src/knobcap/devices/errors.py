"""The error a device raises when it cannot render: the message names the device, the take and the fix."""

from __future__ import annotations


class DeviceError(ValueError):
    """A device is missing, misconfigured or failed on a setting; the message says what to do."""
