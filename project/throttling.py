"""One sign-in throttle for every login path: /accounts/login/, /admin/login/ and POST /api/auth/token/.

Failed sign-ins are counted over SIMLABEL_LOGIN_FAILURE_WINDOW seconds, three ways:

- per (username, client address): after SIMLABEL_LOGIN_FAILURE_LIMIT failures that address
  may not try that username until the window ends: one guesser, one account;
- per client address: after SIMLABEL_LOGIN_ADDRESS_FAILURE_LIMIT failures, whatever the
  usernames, that address may not sign in at all: one guesser spraying many accounts;
- per username, from all addresses: after SIMLABEL_LOGIN_USER_FAILURE_LIMIT failures only
  addresses that signed in as that user within SIMLABEL_LOGIN_KNOWN_ADDRESS_DAYS may keep
  trying: many guessers, one account.

So a stranger's failures never lock the real user out of an address they have signed in
from; they slow only the stranger.  A throttled attempt is refused whatever the password,
so it tells a guesser nothing.

The client address is REMOTE_ADDR, or with SIMLABEL_NUM_PROXIES = N > 0 the N-th address
from the right of X-Forwarded-For (the one our own proxy appended), as DRF reads it with
NUM_PROXIES: a client cannot choose it by sending the header.  IPv6 addresses count per
/64, the block one subscriber usually gets.  Usernames are keyed as NFKC + casefold, so
look-alike spellings (`ｖｉｃｔｉｍ`, `VICTIM`) share the count of `victim`.
"""

from __future__ import annotations

import hashlib
import ipaddress
import unicodedata
from functools import wraps

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.template.loader import render_to_string

from project.resilient_cache import resilient_cache

PREFIX = "simlabel:login"


def login_client_address(request: HttpRequest) -> str:
    """The address the throttle counts: the client as our own proxies saw it."""
    address = request.META.get("REMOTE_ADDR") or ""
    proxies = settings.SIMLABEL_NUM_PROXIES
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR")
    if proxies > 0 and forwarded:
        hops = [hop.strip() for hop in forwarded.split(",")]
        address = hops[-min(proxies, len(hops))]
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address[:64] or "unknown"
    if ip.version == 6:
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


def login_username_key(username: str) -> str:
    """The username as the throttle counts it: NFKC (as Django's login form reads it) and casefolded."""
    return unicodedata.normalize("NFKC", username or "").strip().casefold()


def _digest(text: str) -> str:
    # Usernames and addresses are arbitrary text; keys stay short and printable.
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def _keys(request: HttpRequest, username: str) -> dict[str, str | None]:
    address = _digest(login_client_address(request))
    user = login_username_key(username)
    user = _digest(user) if user else None
    return {
        "address": f"{PREFIX}:addr:{address}",
        "pair": f"{PREFIX}:pair:{user}:{address}" if user else None,
        "user": f"{PREFIX}:user:{user}" if user else None,
        "known": f"{PREFIX}:known:{user}:{address}" if user else None,
    }


def login_wait_seconds(request: HttpRequest, username: str) -> int:
    """0 when this address may try this username now, else how long to wait (at most)."""
    keys = _keys(request, username)
    counted = [key for name, key in keys.items() if key and name != "known"]
    counts = resilient_cache.get_many(counted)
    window = settings.SIMLABEL_LOGIN_FAILURE_WINDOW
    if counts.get(keys["address"], 0) >= settings.SIMLABEL_LOGIN_ADDRESS_FAILURE_LIMIT:
        return window
    if keys["pair"] and counts.get(keys["pair"], 0) >= settings.SIMLABEL_LOGIN_FAILURE_LIMIT:
        return window
    if keys["user"] and counts.get(keys["user"], 0) >= settings.SIMLABEL_LOGIN_USER_FAILURE_LIMIT:
        if not resilient_cache.get(keys["known"]):
            return window
    return 0


def login_failed(request: HttpRequest, username: str) -> None:
    window = settings.SIMLABEL_LOGIN_FAILURE_WINDOW
    keys = _keys(request, username)
    for name in ("address", "pair", "user"):
        key = keys[name]
        if key is None:
            continue
        # The window runs from the first failure: add() sets the expiry, incr() keeps it.
        resilient_cache.add(key, 0, timeout=window)
        try:
            resilient_cache.incr(key)
        except ValueError:  # expired between add and incr
            resilient_cache.set(key, 1, timeout=window)


def login_succeeded(request: HttpRequest, username: str) -> None:
    """Forgets this address's typos for this user and remembers it as one the user signs in from.

    The per-address and per-username counts stay: signing in to one's own account must not
    reset a count that guesses at other accounts (or by other people) built up.
    """
    keys = _keys(request, username)
    if keys["pair"] is None:
        return
    resilient_cache.delete(keys["pair"])
    resilient_cache.set(keys["known"], 1, timeout=settings.SIMLABEL_LOGIN_KNOWN_ADDRESS_DAYS * 24 * 3600)


def throttled_response(request: HttpRequest, wait: int) -> HttpResponse:
    body = render_to_string(
        "registration/login_throttled.html",
        {"wait_minutes": max(1, -(-wait // 60))},
        request=request,
    )
    response = HttpResponse(body, status=429)
    response["Retry-After"] = str(wait)
    return response


def login_throttled(view):
    """Wraps a Django login view (a form POST that redirects on success and re-renders the
    form on failure) in the sign-in throttle."""

    @wraps(view)
    def wrapped(request: HttpRequest, *args, **kwargs):
        if request.method != "POST":
            return view(request, *args, **kwargs)
        username = request.POST.get("username", "")
        wait = login_wait_seconds(request, username)
        if wait:
            return throttled_response(request, wait)
        response = view(request, *args, **kwargs)
        if response.status_code in (301, 302, 303):
            login_succeeded(request, username)
        elif response.status_code == 200:  # the form again, with "didn't match"
            login_failed(request, username)
        return response

    return wrapped
