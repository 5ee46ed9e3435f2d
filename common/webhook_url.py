"""The one rule for a user's alert webhook URL, read by the edge (a 422 naming the field) and by billing (which
stores the URL and POSTs to it), so the two cannot disagree.

An absolute `https` URL with a host, or `http` only to this machine (localhost, 127.0.0.0/8, ::1) for
development; no user name or password in it (they would be stored and logged as part of the URL), no
fragment, no whitespace or control characters, at most 2048 characters. A host given as an IP address must be
public (or this machine's): billing must not be pointed at a private network's or a cloud's metadata address
(169.254.169.254). A name that resolves to one is not caught here: outside development, route billing's
outbound requests through an egress proxy that refuses private addresses.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

MAX_LENGTH = 2048


class InvalidWebhookUrl(ValueError):
    """A URL outside the rule; the message says which part."""


def _is_local(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _is_private_address(host: str) -> bool:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False  # a name
    return not address.is_loopback and not address.is_global


def check_webhook_url(url: str) -> str:
    """The URL, or InvalidWebhookUrl."""
    if not url or len(url) > MAX_LENGTH:
        raise InvalidWebhookUrl(f"a webhook URL is 1-{MAX_LENGTH} characters")
    if not url.isascii() or not url.isprintable() or any(c.isspace() for c in url):
        raise InvalidWebhookUrl("a webhook URL is printable ASCII without spaces (percent-encode the rest)")
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        parts.port  # noqa: B018 - raises ValueError for a port out of range or not a number
    except ValueError as exc:
        raise InvalidWebhookUrl("a webhook URL must be a valid absolute URL") from exc
    if parts.scheme not in ("https", "http") or not host:
        raise InvalidWebhookUrl("a webhook URL must be an absolute https:// URL with a host")
    if parts.scheme == "http" and not _is_local(host):
        raise InvalidWebhookUrl("a webhook URL must use https (http only to localhost, for development)")
    if _is_private_address(host):
        raise InvalidWebhookUrl("a webhook URL must not point at a private, link-local or reserved address")
    if parts.username is not None or parts.password is not None:
        raise InvalidWebhookUrl("a webhook URL must not carry a user name or password")
    if parts.fragment or url.endswith("#"):
        raise InvalidWebhookUrl("a webhook URL must not have a fragment")
    return url
