from django.urls import path

from . import predictions, storages, views, webhooks

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
    path("datasets/<int:dataset_id>/annotations/import/", views.LabelImportView.as_view(), name="annotation-import"),
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
    path("datasets/<int:dataset_id>/storages/", storages.StorageListView.as_view(), name="storage-list"),
    path(
        "datasets/<int:dataset_id>/storages/<int:storage_id>/",
        storages.StorageDetailView.as_view(),
        name="storage-detail",
    ),
    path(
        "datasets/<int:dataset_id>/storages/<int:storage_id>/sync/",
        storages.StorageSyncView.as_view(),
        name="storage-sync",
    ),
    path("datasets/<int:dataset_id>/webhooks/", webhooks.WebhookListView.as_view(), name="webhook-list"),
    path(
        "datasets/<int:dataset_id>/webhooks/<int:webhook_id>/",
        webhooks.WebhookDetailView.as_view(),
        name="webhook-detail",
    ),
    path("datasets/<int:dataset_id>/predictions/", predictions.PredictionListView.as_view(), name="prediction-list"),
    path(
        "datasets/<int:dataset_id>/predictions/<str:model>/",
        predictions.PredictionDetailView.as_view(),
        name="prediction-detail",
    ),
    path("images/<int:image_id>/", views.ImageDetailView.as_view(), name="image-detail"),
    path("images/<int:image_id>/annotation/", views.AnnotationView.as_view(), name="image-annotation"),
    path("images/<int:image_id>/history/", views.ImageHistoryView.as_view(), name="image-history"),
]
