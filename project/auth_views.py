"""Sign-in views, each behind the one sign-in throttle (project.throttling)."""

from django.contrib import admin
from django.contrib.auth import views as auth_views

from project.throttling import login_throttled

login = login_throttled(auth_views.LoginView.as_view())
# Routed before admin.site.urls, so the admin's own login URL is this one.
admin_login = login_throttled(admin.site.login)
