"""Media URLs, included at the site root: /images/<id>/file/ and /images/<id>/thumbnail/."""

from django.urls import path

from labeling import media_views

urlpatterns = [
    path("images/<int:image_id>/file/", media_views.image_file, name="image-file"),
    path("images/<int:image_id>/thumbnail/", media_views.image_thumbnail, name="image-thumbnail"),
]
