from django.contrib import admin
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from core.api.errors import api_not_found

from . import auth_views, views

urlpatterns = [
    path("admin/login/", auth_views.admin_login),  # the sign-in throttle in front of the admin's form
    path("admin/", admin.site.urls),
    path("accounts/login/", auth_views.login, name="login"),
    path("accounts/", include("django.contrib.auth.urls")),
    path("healthz/", views.healthz, name="healthz"),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="api-schema"), name="api-docs"),
    path("api/", include("labeling.api.urls")),
    path("api/", include("embeddings.api.urls")),
    re_path(r"^api/", api_not_found),  # any other /api/ URL: a JSON 404, not Django's HTML page
    path("", include("labeling.media_urls")),
    path("", include("labeling.urls")),
    path("", include("embeddings.urls")),
]

handler404 = "core.api.errors.not_found"  # JSON under /api/, Django's page elsewhere
