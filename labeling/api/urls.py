from django.urls import path

from . import views

urlpatterns = [
    path("auth/token/", views.TokenView.as_view(), name="api-token"),
    path("datasets/", views.DatasetListView.as_view(), name="dataset-list"),
    path("datasets/<int:dataset_id>/", views.DatasetDetailView.as_view(), name="dataset-detail"),
    path("datasets/<int:dataset_id>/members/", views.MemberListView.as_view(), name="member-list"),
    path("datasets/<int:dataset_id>/members/<int:user_id>/", views.MemberDetailView.as_view(), name="member-detail"),
    path("datasets/<int:dataset_id>/classes/", views.LabelClassListView.as_view(), name="class-list"),
    path(
        "datasets/<int:dataset_id>/classes/<int:class_id>/", views.LabelClassDetailView.as_view(), name="class-detail"
    ),
    path("datasets/<int:dataset_id>/images/", views.ImageListView.as_view(), name="image-list"),
    path("datasets/<int:dataset_id>/annotations/bulk/", views.BulkAnnotationView.as_view(), name="annotation-bulk"),
    path("datasets/<int:dataset_id>/actions/", views.ActionListView.as_view(), name="action-list"),
    path("datasets/<int:dataset_id>/actions/<int:action_id>/undo/", views.UndoView.as_view(), name="action-undo"),
    path("datasets/<int:dataset_id>/review/", views.ReviewQueueView.as_view(), name="review-queue"),
    path("datasets/<int:dataset_id>/review/resolve/", views.ReviewResolveView.as_view(), name="review-resolve"),
    path(
        "datasets/<int:dataset_id>/suggestions/accept/",
        views.SuggestionsAcceptView.as_view(),
        name="suggestions-accept",
    ),
    path("datasets/<int:dataset_id>/export/", views.ExportView.as_view(), name="export"),
    path("images/<int:image_id>/", views.ImageDetailView.as_view(), name="image-detail"),
    path("images/<int:image_id>/annotation/", views.AnnotationView.as_view(), name="image-annotation"),
    path("images/<int:image_id>/history/", views.ImageHistoryView.as_view(), name="image-history"),
]
