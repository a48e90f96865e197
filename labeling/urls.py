from django.urls import path
from django.views.generic import RedirectView

from . import views

app_name = "labeling"

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="labeling:dataset-list", permanent=False), name="home"),
    path("datasets/", views.dataset_list, name="dataset-list"),
    path("datasets/<int:dataset_id>/", views.dataset_detail, name="dataset-detail"),
    path("datasets/<int:dataset_id>/edit/", views.dataset_edit, name="dataset-edit"),
    path("datasets/<int:dataset_id>/delete/", views.dataset_delete_view, name="dataset-delete"),
    path("datasets/<int:dataset_id>/members/add/", views.member_add_view, name="member-add"),
    path("datasets/<int:dataset_id>/members/<int:user_id>/role/", views.member_role_view, name="member-role"),
    path("datasets/<int:dataset_id>/members/<int:user_id>/remove/", views.member_remove_view, name="member-remove"),
    path("datasets/<int:dataset_id>/classes/add/", views.class_add_view, name="class-add"),
    path("datasets/<int:dataset_id>/classes/<int:class_id>/edit/", views.class_edit_view, name="class-edit"),
    path("datasets/<int:dataset_id>/classes/<int:class_id>/delete/", views.class_delete_view, name="class-delete"),
    path("datasets/<int:dataset_id>/upload/", views.dataset_upload, name="dataset-upload"),
    path("datasets/<int:dataset_id>/label/", views.dataset_label, name="dataset-label"),
    path("datasets/<int:dataset_id>/review/", views.dataset_review, name="dataset-review"),
    path("images/<int:image_id>/", views.image_detail, name="image-detail"),
]
