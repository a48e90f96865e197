"""Browser login with throttling, so passwords cannot be guessed at speed.

The API's token endpoint has DRF's throttle; this covers the HTML form.
Failures are counted per client address and per username, in the cache.
"""
from django.conf import settings
from django.contrib.auth import views as auth_views
from django.core.cache import cache
from django.http import HttpResponse
from django.template.loader import render_to_string


def _keys(request) -> list[str]:
    address = request.META.get("REMOTE_ADDR", "unknown")
    username = (request.POST.get("username") or "").strip().lower()[:150]
    keys = [f"login-fail:addr:{address}"]
    if username:
        keys.append(f"login-fail:user:{username}")
    return keys


class ThrottledLoginView(auth_views.LoginView):
    def post(self, request, *args, **kwargs):
        limit = settings.SIMLABEL_LOGIN_FAILURE_LIMIT
        keys = _keys(request)
        if any((cache.get(key) or 0) >= limit for key in keys):
            body = render_to_string(
                "registration/login_throttled.html",
                {"window_minutes": settings.SIMLABEL_LOGIN_FAILURE_WINDOW // 60},
                request=request,
            )
            response = HttpResponse(body, status=429)
            response["Retry-After"] = str(settings.SIMLABEL_LOGIN_FAILURE_WINDOW)
            return response
        return super().post(request, *args, **kwargs)

    def form_invalid(self, form):
        window = settings.SIMLABEL_LOGIN_FAILURE_WINDOW
        for key in _keys(self.request):
            cache.add(key, 0, timeout=window)
            try:
                cache.incr(key)
            except ValueError:  # expired between add and incr
                cache.set(key, 1, timeout=window)
        return super().form_invalid(form)
